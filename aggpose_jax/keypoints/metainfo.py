"""Keypoint formats as data: names, flip partners, body halves, skeleton, OKS sigmas, joint weights.

Flip indices and flip pairs are derived from the per-keypoint swap partners, never typed twice
(the mmpose `dataset_info` habit). Formats: COCO-17, the AggPose infant-21 set, and user formats built
from a COCO-format `categories` entry plus sigmas.
"""

import dataclasses
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class KeypointFormat:
    """One keypoint layout. K = number of keypoints.

    Attributes:
      name: format name ("coco", "infant", or the category name).
      keypoint_names: (K,) names in index order.
      swap_names: (K,) the name of each keypoint's mirror partner (itself when unpaired).
      upper_body_ids: indices used by the half-body augmentation's upper set.
      lower_body_ids: indices of the lower set.
      skeleton: 0-based (a, b) index pairs to draw.
      sigmas: (K,) OKS sigmas.
      joint_weights: (K,) per-joint loss weights (unused by the official recipe, kept as data).
      half_body_min_joints: the half-body augmentation needs more than this many visible joints.
    """

    name: str
    keypoint_names: tuple[str, ...]
    swap_names: tuple[str, ...]
    upper_body_ids: tuple[int, ...]
    lower_body_ids: tuple[int, ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    joint_weights: tuple[float, ...]
    half_body_min_joints: int

    def __post_init__(self):
        k = len(self.keypoint_names)
        for field in ("swap_names", "sigmas", "joint_weights"):
            if len(getattr(self, field)) != k:
                raise ValueError(
                    f"keypoint format {self.name!r}: {field} has "
                    f"{len(getattr(self, field))} entries, expected {k}"
                )
        unknown = set(self.swap_names) - set(self.keypoint_names)
        if unknown:
            raise ValueError(
                f"keypoint format {self.name!r}: unknown swap partners {sorted(unknown)}"
            )

    @property
    def num_keypoints(self) -> int:
        """K."""
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> np.ndarray:
        """(K,) int: the index each keypoint moves to under a horizontal flip."""
        index = {n: i for i, n in enumerate(self.keypoint_names)}
        return np.array([index[n] for n in self.swap_names], dtype=np.int64)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """The (left, right) index pairs swapped by a flip, each pair once, smaller index first."""
        flip = self.flip_indices
        return tuple((i, int(j)) for i, j in enumerate(flip) if i < j)

    @property
    def sigmas_array(self) -> np.ndarray:
        """(K,) float64 OKS sigmas."""
        return np.asarray(self.sigmas, dtype=np.float64)


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


def _mirror_name(name: str) -> str:
    """The left/right partner of a keypoint name ("left_eye" <-> "right_eye", "L3" <-> "R3")."""
    for a, b in (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT")):
        if a in name:
            return name.replace(a, b)
        if b in name:
            return name.replace(b, a)
    m = re.fullmatch(r"([LRlr])([_\d].*)", name)
    if m:
        return {"L": "R", "R": "L", "l": "r", "r": "l"}[m.group(1)] + m.group(2)
    return name


def derive_swap_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Flip partners from left/right naming; a keypoint whose mirror name is absent is unpaired.

    Shapes: names (K,) -> (K,).
    """
    known = set(names)
    return tuple(m if (m := _mirror_name(n)) in known else n for n in names)


COCO = KeypointFormat(
    name="coco",
    keypoint_names=_COCO_NAMES,
    swap_names=derive_swap_names(_COCO_NAMES),
    upper_body_ids=tuple(range(11)),
    lower_body_ids=tuple(range(11, 17)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=(
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
        0.107, 0.087, 0.087, 0.089, 0.089,
    ),
    joint_weights=(1.0,) * 7 + (1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5),
    half_body_min_joints=8,
)  # fmt: skip

# AggPose infant set: R1..R9 right side (eye, shoulder, elbow, wrist, middle finger, hip, knee, ankle,
# toe), L1..L9 the left side in the same order, then chin, chest, navel.
_INFANT_NAMES = tuple(f"R{i}" for i in range(1, 10)) + tuple(f"L{i}" for i in range(1, 10)) + (
    "M1", "M2", "M3",
)  # fmt: skip

INFANT = KeypointFormat(
    name="infant",
    keypoint_names=_INFANT_NAMES,
    swap_names=derive_swap_names(_INFANT_NAMES),
    upper_body_ids=(0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 18, 19),
    lower_body_ids=(5, 6, 7, 8, 14, 15, 16, 17, 20),
    skeleton=(
        (0, 18), (9, 18), (18, 19), (19, 1), (1, 2), (2, 3), (3, 4), (19, 10), (10, 11), (11, 12),
        (12, 13), (19, 20), (20, 5), (5, 6), (6, 7), (7, 8), (20, 14), (14, 15), (15, 16), (16, 17),
    ),
    sigmas=(0.05,) * 21,
    joint_weights=(1.0,) * 21,
    half_body_min_joints=9,
)  # fmt: skip

INFANT_DESCRIPTIONS = (
    "right eye", "right shoulder", "right elbow", "right wrist", "right middle finger", "right hip",
    "right knee", "right ankle", "right toe", "left eye", "left shoulder", "left elbow", "left wrist",
    "left middle finger", "left hip", "left knee", "left ankle", "left toe", "chin", "chest", "navel",
)  # fmt: skip

FORMATS = {"coco": COCO, "infant": INFANT}


def get_format(name: str) -> KeypointFormat:
    """The named built-in format ("coco" or "infant"); a clear error lists the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown keypoint format {name!r}; known: {sorted(FORMATS)}") from None


def format_from_coco_category(
    category: dict,
    sigmas: tuple[float, ...] | np.ndarray,
    upper_body_ids: tuple[int, ...] | None = None,
) -> KeypointFormat:
    """A user format from a COCO-format `categories` entry ("keypoints", 1-based "skeleton") plus sigmas.

    Shapes: category["keypoints"] (K,), sigmas (K,). Flip partners come from left/right naming; the
    upper body defaults to the first half of the keypoints when not given.
    """
    if "keypoints" not in category:
        raise KeyError(f"category {category.get('name', '?')!r} has no 'keypoints' list")
    names = tuple(category["keypoints"])
    k = len(names)
    upper = tuple(upper_body_ids) if upper_body_ids is not None else tuple(range(k // 2))
    return KeypointFormat(
        name=str(category.get("name", "custom")),
        keypoint_names=names,
        swap_names=derive_swap_names(names),
        upper_body_ids=upper,
        lower_body_ids=tuple(i for i in range(k) if i not in upper),
        skeleton=tuple((a - 1, b - 1) for a, b in category.get("skeleton", [])),
        sigmas=tuple(float(s) for s in np.asarray(sigmas, dtype=np.float64).reshape(-1)),
        joint_weights=(1.0,) * k,
        half_body_min_joints=k // 2,
    )
