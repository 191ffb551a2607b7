"""Reading COCO-format JSON fast and checking it column by column, naming the first bad entry.

Files are parsed with orjson (the standard library's parser where orjson refuses, so that NaN written
by `json.dump` still gives a per-entry error) with the garbage collector paused; every field becomes
one array in one numpy call and the checks are vectorised. Only when a check fails is the input walked
in Python, to name the first bad entry. Errors are ValueErrors naming the file (`source`) and entry.
"""

import collections
import contextlib
import gc
import json
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

# What a list of numbers (keypoints, a bbox) may be: JSON gives lists, callers may pass arrays.
ROW = (list, tuple, np.ndarray)


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


def keypoint_lengths(records: Any, field: str) -> list[int]:
    """Lengths of the well-formed `field` lists of the records (a list of dicts), in order."""
    if not isinstance(records, list | tuple):
        return []
    return [
        len(r[field]) for r in records if isinstance(r, Mapping) and isinstance(r.get(field), ROW)
    ]


def infer_num_keypoints(gt: Any, results: Any) -> int | None:
    """K from the ground-truth annotations, else the results, else the first category's keypoint
    names; None when nothing says. The most common list length decides (the first of equals), so
    that one malformed entry is reported as such rather than setting K.

    Shapes: -> K.
    """
    gt = gt if isinstance(gt, Mapping) else {}
    lengths = keypoint_lengths(gt.get("annotations"), "keypoints")
    lengths = lengths or keypoint_lengths(results, "keypoints")
    if lengths:
        return collections.Counter(lengths).most_common(1)[0][0] // 3
    lengths = keypoint_lengths(gt.get("categories"), "keypoints")
    return lengths[0] if lengths else None


def fail(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: {message}" if source else message)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def list_field(gt: Any, field: str, source: str) -> list:
    """gt[field] of a COCO-format dict, which must be a list."""
    if not isinstance(gt, Mapping):
        raise fail(source, f"ground truth must be a COCO-format object, got {type(gt).__name__}")
    if field not in gt:
        raise fail(
            source,
            f"ground truth lacks '{field}': a COCO-format object needs 'images', 'annotations' "
            "and 'categories'",
        )
    value = gt[field]
    if not isinstance(value, list | tuple):
        raise fail(source, f"ground truth '{field}' must be a list, got {type(value).__name__}")
    return list(value)


def columns(records: Sequence, fields: Sequence[str], what: str, source: str) -> list[list]:
    """One list per field, `[r[field] for r in records]`; an error names the first record that
    is not an object or lacks a field. Shapes: N records -> len(fields) lists of N values."""
    try:
        # One pass per field: list comprehensions allocate no containers, so no GC pauses.
        return [[r[f] for r in records] for f in fields]
    except (KeyError, TypeError, IndexError):
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise fail(source, f"{what} {i} is not an object: {short(r)}") from None
            missing = [f for f in fields if f not in r]
            if missing:
                raise fail(source, f"{what} {i} lacks {missing}") from None
        raise


def ids(values: list, field: str, what: str, source: str) -> list:
    """`values` when each is a number or a string (an id), else an error naming the first."""
    if not set(map(type, values)) <= {int, str, float}:
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, numbers.Real | str):
                raise fail(
                    source, f"{what} {i}: {field} must be a number or a string, got {short(v)}"
                )
    return values


def sorted_unique(values: list, what: str, source: str) -> list:
    try:
        return sorted(set(values))
    except TypeError:
        raise fail(source, f"{what} ids mix numbers and strings") from None


def number_table(values: list, width: int | None, field: str, what: str, source: str) -> np.ndarray:
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
        raise_first_bad(values, width, field, what, source)
        table = np.array(values, dtype=np.float64)  # e.g. integers beyond 64 bits
    return table.astype(np.float64, copy=False)


def raise_first_bad(values: list, width: int | None, field: str, what: str, source: str) -> None:
    for i, v in enumerate(values):
        if width is None:
            if not isinstance(v, numbers.Real):
                raise fail(source, f"{what} {i}: {field} is not a number: {short(v)}")
            continue
        if not isinstance(v, ROW):
            raise fail(
                source, f"{what} {i}: {field} must be a list of {width} numbers, got {short(v)}"
            )
        if len(v) != width:
            raise fail(source, f"{what} {i}: {field} has {len(v)} values, expected {width}")
        for j, x in enumerate(v):
            if not isinstance(x, numbers.Real):
                raise fail(source, f"{what} {i}: {field} value {j} is not a number: {short(x)}")


def keypoint_table(rows: list, num_keypoints: int, what: str, source: str) -> np.ndarray:
    """(N, K, 3) float64 from N flat [x, y, v] * K lists; errors name the first bad row."""
    try:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    except TypeError:
        lengths = np.array([len(r) if isinstance(r, ROW) else -1 for r in rows], np.int64)
    bad = np.flatnonzero(lengths != 3 * num_keypoints)
    if bad.size:
        i = int(bad[0])
        if not isinstance(rows[i], ROW):
            raise fail(source, f"{what} {i}: keypoints must be a list, got {short(rows[i])}")
        raise fail(
            source,
            f"{what} {i} has {lengths[i]} keypoint values, expected {3 * num_keypoints} "
            f"({num_keypoints} keypoints x [x, y, v])",
        )
    table = number_table(rows, 3 * num_keypoints, "keypoints", what, source)
    return table.reshape(len(rows), num_keypoints, 3)


def positions(values: list, sorted_ids: list) -> np.ndarray:
    """(N,) int64 index of each value in sorted_ids, -1 where absent; vectorised for integer ids."""
    v, ids = np.asarray(values), np.asarray(sorted_ids)
    if v.ndim == 1 and ids.size and v.dtype.kind in "iu" and ids.dtype.kind in "iu":
        pos = np.minimum(np.searchsorted(ids, v), ids.size - 1)
        return np.where(ids[pos] == v, pos, -1).astype(np.int64)
    index = {x: i for i, x in enumerate(sorted_ids)}
    return np.array([index.get(x, -1) for x in values], dtype=np.int64).reshape(len(values))
