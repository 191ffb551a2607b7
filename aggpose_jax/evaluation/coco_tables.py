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

import collections
import contextlib
import dataclasses
import gc
import json
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

GroundTruthLike = str | os.PathLike | Mapping[str, Any]
ResultsLike = str | os.PathLike | Sequence[Mapping[str, Any]]
# What a list of numbers (keypoints, a bbox) may be: JSON gives lists, callers may pass arrays.
_ROW = (list, tuple, np.ndarray)


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


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (nests; restores what it found). Shapes: none.

    Parsing a results file creates a dict and a list per result: without the pause, the collector
    walks that growing heap again and again (half the parse time on COCO val), and twice
    more before the parsed objects are freed. They hold no cycles, so nothing is lost.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file with orjson; invalid JSON is a ValueError naming the file.

    What orjson refuses goes to the standard library's parser, which also reads the NaN and
    Infinity that Python's `json.dump` writes (the checks then name the entry holding them) and
    words the error when the file is not JSON at all.

    Shapes: no arrays.
    """
    with open(path, "rb") as f:
        text = f.read()
    with paused_gc():
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(text)
        except ValueError as err:  # JSONDecodeError, or UnicodeDecodeError for non-UTF text
            raise ValueError(f"{os.fspath(path)}: not valid JSON ({err})") from None


def load_json(obj: Any) -> Any:
    """A path is read as JSON (`read_json`); anything else is returned as is. Shapes: no arrays."""
    if isinstance(obj, str | os.PathLike):
        return read_json(obj)
    return obj


def source_of(obj: Any) -> str:
    """The file name that errors about `obj` start with: its path, or "" for a loaded object."""
    return os.fspath(obj) if isinstance(obj, str | os.PathLike) else ""


def _keypoint_lengths(records: Any, field: str) -> list[int]:
    """Lengths of the well-formed `field` lists of the records (a list of dicts), in order."""
    if not isinstance(records, list | tuple):
        return []
    return [
        len(r[field]) for r in records if isinstance(r, Mapping) and isinstance(r.get(field), _ROW)
    ]


def infer_num_keypoints(gt: Any, results: Any) -> int | None:
    """K from the ground-truth annotations, else the results, else the first category's keypoint
    names; None when nothing says. The most common list length decides (the first of equals), so
    that one malformed entry is reported as such rather than setting K.

    Shapes: -> K.
    """
    gt = gt if isinstance(gt, Mapping) else {}
    lengths = _keypoint_lengths(gt.get("annotations"), "keypoints")
    lengths = lengths or _keypoint_lengths(results, "keypoints")
    if lengths:
        return collections.Counter(lengths).most_common(1)[0][0] // 3
    lengths = _keypoint_lengths(gt.get("categories"), "keypoints")
    return lengths[0] if lengths else None


def _fail(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: {message}" if source else message)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _list_field(gt: Any, field: str, source: str) -> list:
    """gt[field] of a COCO-format dict, which must be a list."""
    if not isinstance(gt, Mapping):
        raise _fail(source, f"ground truth must be a COCO-format object, got {type(gt).__name__}")
    if field not in gt:
        raise _fail(
            source,
            f"ground truth lacks '{field}': a COCO-format object needs 'images', 'annotations' "
            "and 'categories'",
        )
    value = gt[field]
    if not isinstance(value, list | tuple):
        raise _fail(source, f"ground truth '{field}' must be a list, got {type(value).__name__}")
    return list(value)


def _columns(records: Sequence, fields: Sequence[str], what: str, source: str) -> list[list]:
    """One list per field, `[r[field] for r in records]`; an error names the first record that
    is not an object or lacks a field. Shapes: N records -> len(fields) lists of N values."""
    try:
        # One pass per field: list comprehensions allocate no containers, so no GC pauses.
        return [[r[f] for r in records] for f in fields]
    except (KeyError, TypeError, IndexError):
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise _fail(source, f"{what} {i} is not an object: {_short(r)}") from None
            missing = [f for f in fields if f not in r]
            if missing:
                raise _fail(source, f"{what} {i} lacks {missing}") from None
        raise


def _ids(values: list, field: str, what: str, source: str) -> list:
    """`values` when each is a number or a string (an id), else an error naming the first."""
    if not set(map(type, values)) <= {int, str, float}:
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, numbers.Real | str):
                raise _fail(
                    source, f"{what} {i}: {field} must be a number or a string, got {_short(v)}"
                )
    return values


def _sorted_unique(values: list, what: str, source: str) -> list:
    try:
        return sorted(set(values))
    except TypeError:
        raise _fail(source, f"{what} ids mix numbers and strings") from None


def _number_table(
    values: list, width: int | None, field: str, what: str, source: str
) -> np.ndarray:
    """Shapes: N numbers (width None) or N lists of `width` numbers -> (N,) or (N, width) float64.

    numpy infers a numeric dtype of that shape only when every value is a number (a string, null,
    object or list of another length gives another dtype, another shape or a ragged error); only
    then are the values walked in Python, to name the first bad one. true/false count as 1/0, as in
    pycocotools.
    """
    shape = (len(values),) if width is None else (len(values), width)
    if not values:
        return np.zeros(shape)
    try:
        table = np.array(values)
    except (ValueError, TypeError):
        table = None
    if table is None or table.dtype.kind not in "biuf" or table.shape != shape:
        _raise_first_bad(values, width, field, what, source)
        table = np.array(values, dtype=np.float64)  # e.g. integers beyond 64 bits
    return table.astype(np.float64, copy=False)


def _raise_first_bad(values: list, width: int | None, field: str, what: str, source: str) -> None:
    for i, v in enumerate(values):
        if width is None:
            if not isinstance(v, numbers.Real):
                raise _fail(source, f"{what} {i}: {field} is not a number: {_short(v)}")
            continue
        if not isinstance(v, _ROW):
            raise _fail(
                source, f"{what} {i}: {field} must be a list of {width} numbers, got {_short(v)}"
            )
        if len(v) != width:
            raise _fail(source, f"{what} {i}: {field} has {len(v)} values, expected {width}")
        for j, x in enumerate(v):
            if not isinstance(x, numbers.Real):
                raise _fail(source, f"{what} {i}: {field} value {j} is not a number: {_short(x)}")


def _keypoint_table(rows: list, num_keypoints: int, what: str, source: str) -> np.ndarray:
    """(N, K, 3) float64 from N flat [x, y, v] * K lists; errors name the first bad row."""
    try:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    except TypeError:
        lengths = np.array([len(r) if isinstance(r, _ROW) else -1 for r in rows], np.int64)
    bad = np.flatnonzero(lengths != 3 * num_keypoints)
    if bad.size:
        i = int(bad[0])
        if not isinstance(rows[i], _ROW):
            raise _fail(source, f"{what} {i}: keypoints must be a list, got {_short(rows[i])}")
        raise _fail(
            source,
            f"{what} {i} has {lengths[i]} keypoint values, expected {3 * num_keypoints} "
            f"({num_keypoints} keypoints x [x, y, v])",
        )
    table = _number_table(rows, 3 * num_keypoints, "keypoints", what, source)
    return table.reshape(len(rows), num_keypoints, 3)


def _positions(values: list, sorted_ids: list) -> np.ndarray:
    """(N,) int64 index of each value in sorted_ids, -1 where absent; vectorised for integer ids."""
    v, ids = np.asarray(values), np.asarray(sorted_ids)
    if v.ndim == 1 and ids.size and v.dtype.kind in "iu" and ids.dtype.kind in "iu":
        pos = np.minimum(np.searchsorted(ids, v), ids.size - 1)
        return np.where(ids[pos] == v, pos, -1).astype(np.int64)
    index = {x: i for i, x in enumerate(sorted_ids)}
    return np.array([index.get(x, -1) for x in values], dtype=np.int64).reshape(len(values))


def load_ground_truth(
    gt: Mapping[str, Any], num_keypoints: int, *, strict: bool, source: str = ""
) -> GroundTruth:
    """The evaluated ground truth of a COCO-format dict; `source` (its file) starts the errors.

    Shapes: K = num_keypoints; the output holds the G annotations on listed images and categories.
    """
    images, anns, cats = (
        _list_field(gt, f, source) for f in ("images", "annotations", "categories")
    )
    (image_of,) = _columns(images, ("id",), "image", source)
    (category_of,) = _columns(cats, ("id",), "category", source)
    image_ids = _sorted_unique(_ids(image_of, "id", "image", source), "image", source)
    category_ids = _sorted_unique(_ids(category_of, "id", "category", source), "category", source)
    what = "ground-truth annotation"
    fields = ("id", "image_id", "category_id", "bbox", "area")
    ann_ids, ann_image, ann_category, boxes, areas = _columns(anns, fields, what, source)
    _ids(ann_ids, "id", what, source)
    img_pos = _positions(_ids(ann_image, "image_id", what, source), image_ids)
    cat_pos = _positions(_ids(ann_category, "category_id", what, source), category_ids)
    # An annotation without keypoints (another category's, say) reads as K unlabelled ones.
    unlabelled = [0.0] * (3 * num_keypoints)
    kpts = _keypoint_table(
        [a.get("keypoints", unlabelled) for a in anns], num_keypoints, what, source
    )
    bbox = _number_table(boxes, 4, "bbox", what, source)
    area = _number_table(areas, None, "area", what, source)
    visible = np.count_nonzero(kpts[:, :, 2] > 0, axis=1)
    iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    if strict:
        # The `ignore` field is overwritten by pycocotools and the stored num_keypoints decides.
        stored = [a.get("num_keypoints", v) for a, v in zip(anns, visible.tolist(), strict=True)]
        ignore = iscrowd | (_number_table(stored, None, "num_keypoints", what, source) == 0)
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
        raise _fail(source, f"results must be a list of objects, got {type(results).__name__}")
    fields = ("image_id", "category_id", "keypoints", "score")
    image_of, cat_of, rows, scores = _columns(results, fields, "result", source)
    score = _number_table(scores, None, "score", "result", source)
    bad = np.flatnonzero(~np.isfinite(score))
    if bad.size:
        raise _fail(source, f"result {bad[0]} has a non-finite score {score[bad[0]]}")
    img_pos = _positions(_ids(image_of, "image_id", "result", source), gt.image_ids)
    unknown = np.flatnonzero(img_pos < 0)
    if unknown.size:
        # pycocotools asserts "Results do not correspond to current coco set".
        i = int(unknown[0])
        raise _fail(
            source,
            f"result {i} references image_id {image_of[i]!r}, which is not in the ground truth "
            f"images ({unknown.size} results in all reference unknown images)",
        )
    cat_pos = _positions(_ids(cat_of, "category_id", "result", source), gt.category_ids)
    kpts = _keypoint_table(rows, num_keypoints, "result", source)
    bad = np.flatnonzero(~np.isfinite(kpts[:, :, :2]).all(axis=(1, 2)))
    if bad.size:
        # pycocotools would let NaN through its "<" tests and match anything; refuse instead.
        raise _fail(source, f"result {bad[0]} has non-finite keypoint coordinates")
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
            raise _fail(
                source,
                f"result 0 has a 'bbox' so all results need one (as in pycocotools); "
                f"result {no_box[0]} has none",
            )
        boxes = _number_table([r["bbox"] for r in results], 4, "bbox", "result", source)[keep]
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
