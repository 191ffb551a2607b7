"""COCO-format keypoint ground truth and results as flat numpy tables.

This is the part of pycocotools (`COCO`, `COCO.loadRes`, `COCOeval._prepare`) that runs before
scoring, rewritten to produce one array per field instead of per-annotation dicts. The inputs are
never modified (pycocotools writes `id`, `area`, `bbox` and `ignore` into the caller's dicts).

Every annotation belongs to one (image, category) "group", keyed by
`key = image_index * num_categories + category_index` over the sorted image and category ids,
which is also the order in which pycocotools walks them. See docs/evaluation.md for the quirks
reproduced here when `strict` is true.
"""

import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GroundTruthLike = str | os.PathLike | Mapping[str, Any]
ResultsLike = str | os.PathLike | Sequence[Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """Evaluated ground truth, sorted by group. G annotations, K keypoints.

    Attributes:
      image_ids: (I,) sorted unique image ids of the `images` list.
      category_ids: (C,) sorted unique category ids of the `categories` list.
      key: (G,) int64 group key, ascending; within a group the pycocotools order.
      ann_id: (G,) the annotation ids.
      ann_id_is_zero: (G,) bool, the annotation's id is 0 (see the id-0 quirk).
      keypoints: (G, K, 3) float64 x, y, visibility.
      bbox: (G, 4) float64 x, y, w, h.
      area: (G,) float64.
      iscrowd: (G,) bool.
      ignore: (G,) bool, ignored before any area range is applied.
    """

    image_ids: list
    category_ids: list
    key: np.ndarray
    ann_id: np.ndarray
    ann_id_is_zero: np.ndarray
    keypoints: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    ignore: np.ndarray


@dataclasses.dataclass(frozen=True)
class Results:
    """Evaluated results: sorted by group, then score (descending), then input order; cut at
    `max_dets` per group. D results.

    Attributes:
      key: (D,) int64 group key, ascending.
      rank: (D,) int64 position within the group (0 = highest score).
      index: (D,) int64 position in the input list (pycocotools' result id minus one).
      xy: (D, K, 2) float64 keypoint coordinates (the per-keypoint scores are not used by OKS).
      score: (D,) float64.
      area: (D,) float64, used only to ignore unmatched results outside an area range.
    """

    key: np.ndarray
    rank: np.ndarray
    index: np.ndarray
    xy: np.ndarray
    score: np.ndarray
    area: np.ndarray


def load_json(obj: Any) -> Any:
    """A path is read as JSON; anything else is returned as is. Shapes: no arrays."""
    if isinstance(obj, str | os.PathLike):
        with open(obj) as f:
            return json.load(f)
    return obj


def infer_num_keypoints(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> int | None:
    """K from the first ground-truth annotation, else the first result, else the first category's
    keypoint names; None when nothing says.

    Shapes: -> K.
    """
    for ann in gt.get("annotations", []):
        if "keypoints" in ann:
            return len(ann["keypoints"]) // 3
    for res in results:
        if "keypoints" in res:
            return len(res["keypoints"]) // 3
    for cat in gt.get("categories", []):
        if "keypoints" in cat:
            return len(cat["keypoints"])
    return None


def _check_lengths(rows: list, num_keypoints: int, what: str) -> None:
    """Every row holds 3K numbers, else an error naming the first that does not."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lengths != 3 * num_keypoints)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{what} {i} has {lengths[i]} keypoint values, expected {3 * num_keypoints} "
            f"({num_keypoints} keypoints x [x, y, v])"
        )


def _to_array(rows: list, num_keypoints: int) -> np.ndarray:
    """(N, K, 3) float64 from N checked flat [x, y, v] * K lists."""
    flat = np.fromiter(
        itertools.chain.from_iterable(rows), np.float64, len(rows) * 3 * num_keypoints
    )
    return flat.reshape(len(rows), num_keypoints, 3)


def _index_of(ids: list) -> dict:
    return {v: i for i, v in enumerate(ids)}


def _positions(values: list, sorted_ids: list) -> np.ndarray:
    """(N,) int64 index of each value in sorted_ids, -1 where absent; vectorised for integer ids."""
    v, ids = np.asarray(values), np.asarray(sorted_ids)
    if v.ndim == 1 and ids.size and v.dtype.kind in "iu" and ids.dtype.kind in "iu":
        pos = np.minimum(np.searchsorted(ids, v), ids.size - 1)
        return np.where(ids[pos] == v, pos, -1).astype(np.int64)
    index = _index_of(sorted_ids)
    return np.array([index.get(x, -1) for x in values], dtype=np.int64).reshape(len(values))


def load_ground_truth(gt: Mapping[str, Any], num_keypoints: int, *, strict: bool) -> GroundTruth:
    """The evaluated ground truth of a COCO-format dict.

    Shapes: K = num_keypoints; the output holds the G annotations on listed images and categories.
    """
    if not isinstance(gt, Mapping) or "images" not in gt or "categories" not in gt:
        raise ValueError("ground truth must be a COCO-format dict with 'images' and 'categories'")
    image_ids = sorted({img["id"] for img in gt["images"]})
    category_ids = sorted({cat["id"] for cat in gt["categories"]})
    img_index, cat_index = _index_of(image_ids), _index_of(category_ids)
    anns = list(gt.get("annotations", []))
    for i, ann in enumerate(anns):
        missing = [f for f in ("id", "image_id", "category_id", "bbox", "area") if f not in ann]
        if missing:
            raise ValueError(f"ground-truth annotation {i} lacks {missing}")
    # An annotation without keypoints (another category's, say) reads as K unlabelled ones.
    unlabelled = [0.0] * (3 * num_keypoints)
    _check_lengths(
        [a.get("keypoints", unlabelled) for a in anns], num_keypoints, "ground-truth annotation"
    )

    # pycocotools' getAnnIds walks the sorted image ids, each image's annotations in file order.
    picked = [
        i
        for i, a in enumerate(anns)
        if a["image_id"] in img_index and a["category_id"] in cat_index
    ]
    picked.sort(key=lambda i: img_index[anns[i]["image_id"]])
    if strict:
        # loadAnns looks annotations up by id: of several sharing an id, the last one wins.
        last = {a["id"]: i for i, a in enumerate(anns)}
        picked = [last[anns[i]["id"]] for i in picked]
        picked = [
            i
            for i in picked
            if anns[i]["image_id"] in img_index and anns[i]["category_id"] in cat_index
        ]
    sel = [anns[i] for i in picked]
    n_cat = len(category_ids)
    key = np.array(
        [img_index[a["image_id"]] * n_cat + cat_index[a["category_id"]] for a in sel],
        dtype=np.int64,
    )
    kpts = _to_array([a.get("keypoints", unlabelled) for a in sel], num_keypoints)
    visible = np.count_nonzero(kpts[:, :, 2] > 0, axis=1)
    iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in sel], dtype=bool)
    if strict:
        # The `ignore` field is overwritten by pycocotools and the stored num_keypoints decides.
        num_kp = np.array(
            [a.get("num_keypoints", v) for a, v in zip(sel, visible, strict=True)], dtype=np.int64
        )
        ignore = iscrowd | (num_kp == 0)
    else:
        own = np.array([bool(a.get("ignore", 0)) for a in sel], dtype=bool)
        ignore = iscrowd | (visible == 0) | own
    order = np.argsort(key, kind="stable")
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        key=key[order],
        ann_id=np.array([a["id"] for a in sel])[order],
        ann_id_is_zero=np.array([a["id"] == 0 for a in sel], dtype=bool)[order],
        keypoints=kpts[order],
        bbox=np.array([a["bbox"] for a in sel], dtype=np.float64).reshape(-1, 4)[order],
        area=np.array([a["area"] for a in sel], dtype=np.float64)[order],
        iscrowd=iscrowd[order],
        ignore=ignore[order],
    )


def load_results(
    results: Sequence[Mapping[str, Any]],
    gt: GroundTruth,
    num_keypoints: int,
    max_dets: int,
    *,
    strict: bool,
) -> Results:
    """The evaluated results: those of known categories, top `max_dets` per (image, category).

    Shapes: K = num_keypoints; D <= len(results) rows out.
    """
    if not isinstance(results, Sequence) or isinstance(results, str | bytes):
        raise ValueError("results must be a list of dicts (or a path to a JSON list)")
    try:
        # One pass per field: list comprehensions allocate no containers, so no GC pauses.
        image_of = [r["image_id"] for r in results]
        cat_of = [r["category_id"] for r in results]
        score = np.array([r["score"] for r in results], dtype=np.float64).reshape(len(results))
        rows = [r["keypoints"] for r in results]
    except (KeyError, TypeError):
        for i, r in enumerate(results):
            fields = ("image_id", "category_id", "keypoints", "score")
            missing = [f for f in fields if not isinstance(r, Mapping) or f not in r]
            if missing:
                raise ValueError(f"result {i} lacks {missing}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(score))
    if bad.size:
        raise ValueError(f"result {bad[0]} has a non-finite score {score[bad[0]]}")
    img_pos = _positions(image_of, gt.image_ids)
    unknown = np.flatnonzero(img_pos < 0)
    if unknown.size:
        # pycocotools asserts "Results do not correspond to current coco set".
        i = int(unknown[0])
        raise ValueError(
            f"result {i} references image_id {image_of[i]!r}, which is not in the ground truth "
            f"images ({unknown.size} results in all reference unknown images)"
        )
    _check_lengths(rows, num_keypoints, "result")
    cat_pos = _positions(cat_of, gt.category_ids)
    key = img_pos * len(gt.category_ids) + cat_pos
    # Results of categories absent from the ground truth are dropped without a word, as there.
    keep = np.flatnonzero(cat_pos >= 0)
    # Group, then score descending (stable: ties keep the input order, pycocotools' mergesort).
    keep = keep[np.lexsort((keep, -score[keep], key[keep]))]
    k = key[keep]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if k.size else np.zeros(0, np.int64)
    rank = np.arange(k.size) - np.repeat(starts, np.diff(np.r_[starts, k.size]))
    top = rank < max_dets
    keep, rank = keep[top], rank[top]
    # Only the kept results are converted: the rest never reach the scorer.
    kpts = _to_array([rows[i] for i in keep], num_keypoints)
    xy = np.ascontiguousarray(kpts[:, :, :2])
    bad = np.flatnonzero(~np.isfinite(xy).all(axis=(1, 2)))
    if bad.size:
        # pycocotools would let NaN through its "<" tests and match anything; refuse instead.
        raise ValueError(f"result {keep[bad[0]]} has non-finite keypoint coordinates")
    if strict and results and results[0].get("bbox", []) != []:
        # loadRes picks its branch from the first result only: with a bbox there, every result's
        # area is its box area.
        no_box = [i for i, r in enumerate(results) if "bbox" not in r]
        if no_box:
            raise ValueError(
                f"result 0 has a 'bbox' so all results need one (as in pycocotools); "
                f"result {no_box[0]} has none"
            )
        boxes = np.array([results[i]["bbox"] for i in keep], dtype=np.float64).reshape(-1, 4)
        area = boxes[:, 2] * boxes[:, 3]
    else:
        # The keypoints' extent, all K of them whatever their score (reduced along a contiguous
        # axis: a strided reduction here costs more than the rest of loading).
        coords = np.ascontiguousarray(kpts[:, :, :2].transpose(0, 2, 1))  # (D, 2, K)
        extent = coords.max(axis=2) - coords.min(axis=2)
        area = extent[:, 0] * extent[:, 1]
    return Results(
        key=key[keep],
        rank=rank.astype(np.int64),
        index=keep.astype(np.int64),
        xy=xy,
        score=score[keep],
        area=area,
    )
