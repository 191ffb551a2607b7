"""Person boxes for each frame: a COCO detection results file, the whole frame, or tracking.

Boxes are COCO (x, y, w, h) in image pixels. Image ids: an image named by digits only (COCO's
`000000397133.jpg`) has that number as its id, any other image or video frame the next free id, so a
detection file made for COCO images matches them by `image_id`; an entry may name its image by
`file_name` instead.
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np

from aggpose_jax.inference.frames import InputError

TRACK_SCORE = 0.3  # a tracked pose with fewer than TRACK_MIN_JOINTS joints above this is lost
TRACK_MIN_JOINTS = 4
TRACK_MARGIN = 0.15  # the tracked box grows by this share of the joints' extent on each side


def coco_id(path: pathlib.Path) -> int | None:
    """The COCO image id of a file named by digits only, else None."""
    return int(path.stem) if path.stem.isdigit() else None


def read_detections(
    path: str | pathlib.Path, image_ids: dict[str, int], score_threshold: float = 0.0
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """A COCO detection results file -> {image id: (boxes (N, 4), scores (N,))} for category 1.

    `image_ids` maps each input image's file name to its id. Raises InputError naming the file for a
    malformed file, and listing a few entries whose image is not among the inputs.
    """
    try:
        entries = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a COCO detection results file ({e})") from None
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a list of detections")
    known = set(image_ids.values())
    out: dict[int, list] = {}
    unknown = []
    for i, det in enumerate(entries):
        if not isinstance(det, dict) or "bbox" not in det or len(det["bbox"]) != 4:
            raise InputError(f"{path}: detection [{i}] has no 4-number 'bbox'")
        if int(det.get("category_id", 1)) != 1 or float(det.get("score", 1.0)) < score_threshold:
            continue
        if "file_name" in det:
            image_id = image_ids.get(pathlib.Path(det["file_name"]).name)
        else:
            image_id = int(det["image_id"]) if "image_id" in det else None
        if image_id is None or image_id not in known:
            unknown.append(str(det.get("file_name", det.get("image_id"))))
            continue
        out.setdefault(image_id, []).append((det["bbox"], float(det.get("score", 1.0))))
    if unknown:
        few = ", ".join(sorted(set(unknown))[:5])
        raise InputError(
            f"{path}: {len(unknown)} detections name images that are not among the inputs "
            f"(e.g. {few})"
        )
    return {
        k: (np.asarray([b for b, _ in v], np.float64), np.asarray([s for _, s in v]))
        for k, v in out.items()
    }


def box_from_pose(
    keypoints: np.ndarray, scores: np.ndarray, image_hw: tuple[int, int]
) -> np.ndarray | None:
    """The next frame's box from a pose, or None when the pose is lost.

    Shapes: keypoints (K, 2) image pixels, scores (K,) -> (4,) COCO box clipped to the image. The box
    spans the joints scored above TRACK_SCORE, grown by TRACK_MARGIN of its size on each side.
    """
    good = scores > TRACK_SCORE
    if good.sum() < TRACK_MIN_JOINTS:
        return None
    lo, hi = keypoints[good].min(axis=0), keypoints[good].max(axis=0)
    margin = TRACK_MARGIN * (hi - lo)
    lo = np.maximum(lo - margin, 0.0)
    hi = np.minimum(hi + margin, [image_hw[1], image_hw[0]])
    if np.any(hi - lo < 2.0):
        return None
    return np.concatenate([lo, hi - lo])


def track_boxes(
    last_keypoints: Sequence[np.ndarray], last_scores: Sequence[np.ndarray], image_hw
) -> np.ndarray:
    """Boxes for the next frame: each tracked person's from its last pose, the whole frame when
    every track is lost. Shapes: N poses (K, 2) and scores (K,) -> (M, 4), M >= 1."""
    boxes = [
        box_from_pose(k, s, image_hw) for k, s in zip(last_keypoints, last_scores, strict=True)
    ]
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return np.array([[0.0, 0.0, float(image_hw[1]), float(image_hw[0])]])
    return np.stack(boxes)
