"""COCO-format keypoint ground truth and results as flat numpy tables.

This is the part of pycocotools (`COCO`, `COCO.loadRes`, `COCOeval._prepare`) that runs before
scoring, rewritten to produce one array per field instead of per-annotation dicts. The inputs are
never modified (pycocotools writes `id`, `area`, `bbox` and `ignore` into the caller's dicts).

Every annotation belongs to one (image, category) "group", keyed by
`key = image_index * num_categories + category_index` over the sorted image and category ids,
which is also the order in which pycocotools walks them. See docs/evaluation.md for the quirks
reproduced here when `strict` is true.

Files are parsed with orjson and every field becomes one array in a single numpy call; the checks
are vectorised, and only when one fails is the input walked in Python to name the first bad entry.
Errors are ValueErrors that name the file (`source`, when the input came from one) and the entry.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aggpose_jax.evaluation import coco_json

GroundTruthLike = str | os.PathLike | Mapping[str, Any]
ResultsLike = str | os.PathLike | Sequence[Mapping[str, Any]]
# What a list of numbers (keypoints, a bbox) may be: JSON gives lists, callers may pass arrays.


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


def load_ground_truth(
    gt: Mapping[str, Any], num_keypoints: int, *, strict: bool, source: str = ""
) -> GroundTruth:
    """The evaluated ground truth of a COCO-format dict; `source` (its file) starts the errors.

    Shapes: K = num_keypoints; the output holds the G annotations on listed images and categories.
    """
    images, anns, cats = (
        coco_json.list_field(gt, f, source) for f in ("images", "annotations", "categories")
    )
    (image_of,) = coco_json.columns(images, ("id",), "image", source)
    (category_of,) = coco_json.columns(cats, ("id",), "category", source)
    image_ids = coco_json.sorted_unique(
        coco_json.ids(image_of, "id", "image", source), "image", source
    )
    category_ids = coco_json.sorted_unique(
        coco_json.ids(category_of, "id", "category", source), "category", source
    )
    what = "ground-truth annotation"
    fields = ("id", "image_id", "category_id", "bbox", "area")
    ann_ids, ann_image, ann_category, boxes, areas = coco_json.columns(anns, fields, what, source)
    coco_json.ids(ann_ids, "id", what, source)
    img_pos = coco_json.positions(coco_json.ids(ann_image, "image_id", what, source), image_ids)
    cat_pos = coco_json.positions(
        coco_json.ids(ann_category, "category_id", what, source), category_ids
    )
    # An annotation without keypoints (another category's, say) reads as K unlabelled ones.
    unlabelled = [0.0] * (3 * num_keypoints)
    kpts = coco_json.keypoint_table(
        [a.get("keypoints", unlabelled) for a in anns], num_keypoints, what, source
    )
    bbox = coco_json.number_table(boxes, 4, "bbox", what, source)
    area = coco_json.number_table(areas, None, "area", what, source)
    visible = np.count_nonzero(kpts[:, :, 2] > 0, axis=1)
    iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    if strict:
        # The `ignore` field is overwritten by pycocotools and the stored num_keypoints decides.
        stored = [a.get("num_keypoints", v) for a, v in zip(anns, visible.tolist(), strict=True)]
        ignore = iscrowd | (
            coco_json.number_table(stored, None, "num_keypoints", what, source) == 0
        )
    else:
        own = np.array([bool(a.get("ignore", 0)) for a in anns], dtype=bool)
        ignore = iscrowd | (visible == 0) | own

    # pycocotools' getAnnIds walks the sorted image ids, each image's annotations in file order.
    picked = np.flatnonzero((img_pos >= 0) & (cat_pos >= 0))
    picked = picked[np.argsort(img_pos[picked], kind="stable")]
    if strict:
        # loadAnns looks annotations up by id: of several sharing an id, the last one wins.
        last = {v: i for i, v in enumerate(ann_ids)}
        picked = np.array([last[ann_ids[i]] for i in picked], dtype=np.int64)
        picked = picked[(img_pos[picked] >= 0) & (cat_pos[picked] >= 0)]
    key = img_pos[picked] * len(category_ids) + cat_pos[picked]
    order = picked[np.argsort(key, kind="stable")]
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        key=np.sort(key, kind="stable"),
        ann_id=np.array([ann_ids[i] for i in order]),
        ann_id_is_zero=np.array([ann_ids[i] == 0 for i in order], dtype=bool),
        keypoints=kpts[order],
        bbox=bbox[order],
        area=area[order],
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
    source: str = "",
) -> Results:
    """The evaluated results: those of known categories, top `max_dets` per (image, category);
    `source` (their file) starts the errors.

    Shapes: K = num_keypoints; D <= len(results) rows out.
    """
    if not isinstance(results, list | tuple):
        raise coco_json.fail(
            source, f"results must be a list of objects, got {type(results).__name__}"
        )
    fields = ("image_id", "category_id", "keypoints", "score")
    image_of, cat_of, rows, scores = coco_json.columns(results, fields, "result", source)
    score = coco_json.number_table(scores, None, "score", "result", source)
    bad = np.flatnonzero(~np.isfinite(score))
    if bad.size:
        raise coco_json.fail(source, f"result {bad[0]} has a non-finite score {score[bad[0]]}")
    img_pos = coco_json.positions(
        coco_json.ids(image_of, "image_id", "result", source), gt.image_ids
    )
    unknown = np.flatnonzero(img_pos < 0)
    if unknown.size:
        # pycocotools asserts "Results do not correspond to current coco set".
        i = int(unknown[0])
        raise coco_json.fail(
            source,
            f"result {i} references image_id {image_of[i]!r}, which is not in the ground truth "
            f"images ({unknown.size} results in all reference unknown images)",
        )
    cat_pos = coco_json.positions(
        coco_json.ids(cat_of, "category_id", "result", source), gt.category_ids
    )
    kpts = coco_json.keypoint_table(rows, num_keypoints, "result", source)
    bad = np.flatnonzero(~np.isfinite(kpts[:, :, :2]).all(axis=(1, 2)))
    if bad.size:
        # pycocotools would let NaN through its "<" tests and match anything; refuse instead.
        raise coco_json.fail(source, f"result {bad[0]} has non-finite keypoint coordinates")
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
    xy = np.ascontiguousarray(kpts[keep, :, :2])
    if strict and results and results[0].get("bbox", []) != []:
        # loadRes picks its branch from the first result only: with a bbox there, every result's
        # area is its box area.
        no_box = [i for i, r in enumerate(results) if "bbox" not in r]
        if no_box:
            raise coco_json.fail(
                source,
                f"result 0 has a 'bbox' so all results need one (as in pycocotools); "
                f"result {no_box[0]} has none",
            )
        boxes = coco_json.number_table([r["bbox"] for r in results], 4, "bbox", "result", source)[
            keep
        ]
        area = boxes[:, 2] * boxes[:, 3]
    else:
        # The keypoints' extent, all K of them whatever their score (reduced along a contiguous
        # axis: a strided reduction here costs more than the rest of loading).
        coords = np.ascontiguousarray(xy.transpose(0, 2, 1))  # (D, 2, K)
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
