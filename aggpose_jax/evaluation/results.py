"""COCO keypoint results: building the per-person entries, writing and reading the JSON file.

One entry per kept person, as the official release writes them for COCOeval:
{"image_id", "category_id", "keypoints": [x1, y1, s1, ..., xK, yK, sK], "score", "center", "scale"}.
"""

import itertools
import json
import math
import os
from collections.abc import Sequence

import numpy as np

from aggpose_jax.evaluation import coco_json

REQUIRED_KEYS = ("image_id", "category_id", "keypoints", "score")


def make_results(
    coords: np.ndarray,
    maxvals: np.ndarray,
    scores: np.ndarray,
    image_ids: np.ndarray,
    centers: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    category_id: int = 1,
) -> list[dict]:
    """Per-person result entries with plain Python numbers (JSON-ready).

    Shapes: coords (N, K, 2) image pixels, maxvals (N, K) joint confidences, scores (N,) person
    scores, image_ids (N,), centers (N, 2), scales (N, 2) -> N dicts. The joint confidence is the
    third number of each keypoint triple.
    """
    coords = np.asarray(coords, dtype=np.float64)
    triples = np.concatenate([coords, np.asarray(maxvals, np.float64)[..., None]], axis=-1)
    flat = triples.reshape(len(coords), triples.shape[1] * 3)
    out = []
    for n in range(len(coords)):
        entry = {
            "image_id": int(image_ids[n]),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in flat[n]],
            "score": float(scores[n]),
        }
        if centers is not None:
            entry["center"] = [float(v) for v in centers[n]]
        if scales is not None:
            entry["scale"] = [float(v) for v in scales[n]]
        out.append(entry)
    return out


def write_results(results: Sequence[dict], path: str | os.PathLike) -> None:
    """Write result entries to a COCO results JSON file (a list of entries), creating its folder.

    Shapes: results (N,) entries, each checked as `read_results` checks them.
    """
    _check_entries(results, path, None)
    dirname = os.path.dirname(os.fspath(path))
    if dirname:
        os.makedirs(dirname, exist_ok=True)
    with open(path, "w") as f:
        json.dump(list(results), f)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_entry(entry, i: int, path, num_keypoints: int | None) -> None:
    where = f"{os.fspath(path)}: entry {i}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing}; every entry needs {list(REQUIRED_KEYS)}"
        )
    for key in ("image_id", "category_id"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    if not _is_number(entry["score"]):
        raise ValueError(f"{where}: score must be a finite number, got {entry['score']!r}")
    kps = entry["keypoints"]
    if not isinstance(kps, list) or len(kps) == 0 or len(kps) % 3:
        size = len(kps) if isinstance(kps, list) else type(kps).__name__
        raise ValueError(
            f"{where}: keypoints must be a flat list [x, y, score] * K, got {size} values"
        )
    if num_keypoints is not None and len(kps) != 3 * num_keypoints:
        raise ValueError(
            f"{where}: keypoints has {len(kps)} values, expected {3 * num_keypoints} "
            f"({num_keypoints} keypoints)"
        )
    bad = [j for j, v in enumerate(kps) if not _is_number(v)]
    if bad:
        raise ValueError(
            f"{where}: keypoints value {bad[0]} is not a finite number: {kps[bad[0]]!r}"
        )
    for key in ("center", "scale"):
        if key in entry:
            v = entry[key]
            if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)):
                raise ValueError(f"{where}: {key} must be two finite numbers, got {v!r}")


def _all_valid(entries: Sequence, num_keypoints: int | None) -> bool:
    """True only when every entry passes `_check_entry`, tested field by field on whole columns.

    Exact Python types are compared (bool is not int), so a True here is never wrong; an entry
    with other number types (numpy scalars) reads False and goes through `_check_entry`.
    """
    if not entries:
        return True
    if set(map(type, entries)) != {dict}:
        return False
    try:
        image_ids, category_ids, rows, scores = ([e[key] for e in entries] for key in REQUIRED_KEYS)
    except KeyError:
        return False
    if not set(map(type, image_ids)) | set(map(type, category_ids)) <= {int}:
        return False
    if not set(map(type, scores)) <= {int, float} or not np.isfinite(np.array(scores, float)).all():
        return False
    if set(map(type, rows)) != {list}:
        return False
    size = 3 * num_keypoints if num_keypoints is not None else len(rows[0])
    if size == 0 or size % 3 or any(len(r) != size for r in rows):
        return False
    if not set(map(type, itertools.chain.from_iterable(rows))) <= {int, float}:
        return False
    if not np.isfinite(np.array(rows, dtype=np.float64)).all():
        return False
    for key in ("center", "scale"):
        pairs = [e[key] for e in entries if key in e]
        if pairs and (
            set(map(type, pairs)) != {list}
            or any(len(p) != 2 for p in pairs)
            or not set(map(type, itertools.chain.from_iterable(pairs))) <= {int, float}
            or not np.isfinite(np.array(pairs, dtype=np.float64)).all()
        ):
            return False
    return True


def _check_entries(entries, path, num_keypoints: int | None) -> None:
    """Check every entry; without `num_keypoints` the first entry's K must hold for all.

    The columns are checked at once (`_all_valid`); only when that fails is each entry checked in
    turn, so that the error names the first bad entry and what is wrong with it.
    """
    if _all_valid(entries, num_keypoints):
        return
    for i, entry in enumerate(entries):
        _check_entry(entry, i, path, num_keypoints)
        if num_keypoints is None:
            num_keypoints = len(entry["keypoints"]) // 3


def read_results(path: str | os.PathLike, num_keypoints: int | None = None) -> list[dict]:
    """Read and validate a COCO keypoint results JSON file (parsed with orjson).

    Shapes: -> N entries. Errors name the file and the entry: not JSON, not a list, a missing key, a
    non-integer id, a keypoints list that is not [x, y, score] * K (K = `num_keypoints` when given, and
    the same K for every entry), non-finite numbers, a malformed center/scale.
    """
    data = coco_json.read_json(path)
    if not isinstance(data, list):
        raise ValueError(
            f"{os.fspath(path)}: expected a list of result entries, got {type(data).__name__}"
        )
    _check_entries(data, path, num_keypoints)
    return data
