"""The bottom-up chains: one image record -> the whole picture, joint maps, PAFs and loss mask.

Training (`BottomupTrainExample`), one pass over the record (`image_records` layout):

    augmentation draws (`draw_augmentation`) -> affine (`train_affine`: the image fitted to the
    input, a random scale, rotation and shift, the mirror folded in when flipped) -> decode and
    warp (cv2, bilinear, black border) -> people through the affine (joints and flip partners
    swapped when flipped; the limbs follow, since their PAFs are encoded from the swapped
    joints: the PAF x component is negated by the mirror itself) -> targets at the model stride
    (`part_fields.encode`) -> loss mask (`loss_mask`: crowds and people without keypoints).

Evaluation (`BottomupEvalExample`): the image resized keeping its aspect ratio to fit the input
canvas (a multiple of the stride), at its top-left corner, zero padding elsewhere; the example
records `scale` and `offset` so that image = (input - offset) / scale (`input_to_image`).

Both are frozen dataclasses, picklable into grain's worker processes, with the call signatures
`loaders` takes (`TrainExampleFn`, `EvalExampleFn`), deterministic given the record and the
generator the loader seeds with (seed, epoch, record index).
"""

import dataclasses

import cv2
import numpy as np

from aggpose_jax.keypoints import geometry, metainfo, part_fields
from data_pipelines import crop, image_records


@dataclasses.dataclass(frozen=True)
class BottomupAugment:
    """The whole-image augmentation (OpenPose's and HigherHRNet's kinds).

    scale_range: the image, first fitted to the input, is scaled by a factor drawn uniformly in
    this range; rotation: degrees, uniform in +-rotation; shift: the centre moves by up to this
    fraction of the input size on each axis; flip_prob: horizontal mirror (joints and limbs swap).
    """

    scale_range: tuple[float, float] = (0.75, 1.5)
    rotation: float = 30.0
    shift: float = 0.2
    flip_prob: float = 0.5


NO_AUGMENT = BottomupAugment(scale_range=(1.0, 1.0), rotation=0.0, shift=0.0, flip_prob=0.0)


def draw_augmentation(rng: np.random.Generator) -> np.ndarray:
    """Every random number of one sample, in a fixed order: (5,) uniforms in [0, 1): scale,
    rotation, shift x, shift y, flip."""
    return rng.random(5)


def train_affine(
    image_hw: tuple[int, int], draws: np.ndarray, cfg: BottomupAugment, *, input_hw
) -> tuple[np.ndarray, bool]:
    """The image -> input transform of one sample, and whether it mirrors.

    Shapes: draws (5,) -> matrix (2, 3). p_in = s R(r) (p - c) + centre_in (then x -> W_in - 1 - x
    when flipped), with s = fit * scale, fit = min(H_in / H, W_in / W), c = the image centre.
    """
    (h, w), (in_h, in_w) = image_hw, input_hw
    lo, hi = cfg.scale_range
    s = min(in_h / h, in_w / w) * (lo + (hi - lo) * draws[0])
    r = np.deg2rad(cfg.rotation * (2.0 * draws[1] - 1.0))
    rot = s * np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])
    centre_in = np.array([(in_w - 1) / 2, (in_h - 1) / 2])
    centre_in = centre_in + cfg.shift * (2.0 * draws[2:4] - 1.0) * [in_w, in_h]
    offset = centre_in - rot @ np.array([(w - 1) / 2, (h - 1) / 2])
    matrix = np.concatenate([rot, offset[:, None]], axis=1)
    flipped = bool(draws[4] < cfg.flip_prob)
    if flipped:
        matrix = np.array([[-1.0, 0.0, in_w - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack(
            [matrix, [0.0, 0.0, 1.0]]
        )
    return matrix, flipped


def transform_people(
    keypoints: np.ndarray, matrix: np.ndarray, fmt: metainfo.KeypointFormat, flipped: bool
) -> np.ndarray:
    """People through the affine. Shapes: keypoints (P, K, 3) image pixels -> (P, K, 3) input
    pixels, visibility kept (0 stays 0); flipped: each joint moves to its mirror partner's slot."""
    out = keypoints.copy()
    out[..., :2] = geometry.apply_affine(keypoints[..., :2], matrix)
    out[..., :2] *= keypoints[..., 2:] > 0
    return out[:, fmt.flip_indices] if flipped else out


def loss_mask(
    ignore_segmentations,
    *,
    image_hw: tuple[int, int],
    matrix: np.ndarray,
    input_hw: tuple[int, int],
    stride: int,
) -> np.ndarray:
    """Per-cell loss weights: 0 where a crowd or a person without keypoints covers the cell.

    Shapes: matrix (2, 3) image -> input pixels -> (h, w) float32, h, w = input_hw / stride.
    The regions (`image_records.ignore_mask`, pycocotools) are warped to the input (nearest) and
    averaged over each stride x stride cell; a cell at least half covered gets weight 0. Padding
    outside the image keeps weight 1: it holds no people, so zero targets are right there.
    """
    in_h, in_w = input_hw
    h, w = in_h // stride, in_w // stride
    if not ignore_segmentations:
        return np.ones((h, w), np.float32)
    ignore = image_records.ignore_mask(ignore_segmentations, image_hw=image_hw)
    warped = cv2.warpAffine(ignore, matrix, (in_w, in_h), flags=cv2.INTER_NEAREST)
    covered = cv2.resize(warped.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return (covered < 0.5).astype(np.float32)


def _warp_image(record: dict, matrix: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    results = crop.load_image(dict(record), to_rgb=True)
    return cv2.warpAffine(
        results["image"], matrix, input_hw[::-1], flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class BottomupTrainExample:
    """(record, rng) -> one training example (see the module docstring).

    Shapes: -> image (H, W, 3) uint8 RGB (input_hw; normalised on the device), heatmaps
    (h, w, K) float32, pafs (h, w, L, 2) float32, mask (h, w) float32, flipped (), image_id ();
    h, w = input_hw / stride, L = len(part_fields.limbs_for(fmt)).
    """

    fmt: metainfo.KeypointFormat
    input_hw: tuple[int, int] = (368, 368)
    stride: int = 8
    augment: BottomupAugment = BottomupAugment()
    sigma: float = part_fields.SIGMA
    limb_width: float = part_fields.LIMB_WIDTH
    limbs: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        in_h, in_w = self.input_hw
        if in_h % self.stride or in_w % self.stride:
            raise ValueError(f"input_hw {self.input_hw} is not a multiple of stride {self.stride}")
        object.__setattr__(self, "limbs", part_fields.limbs_for(self.fmt))

    def __call__(self, record: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        draws = draw_augmentation(rng)
        image_hw = tuple(int(v) for v in record["image_hw"])
        matrix, flipped = train_affine(image_hw, draws, self.augment, input_hw=self.input_hw)
        image = _warp_image(record, matrix, self.input_hw)
        people = transform_people(record["keypoints"], matrix, self.fmt, flipped)
        maps = part_fields.encode(
            people, input_hw=self.input_hw, stride=self.stride, limbs=self.limbs,
            sigma=self.sigma, limb_width=self.limb_width,
        )  # fmt: skip
        mask = loss_mask(
            record["ignore"], image_hw=image_hw, matrix=matrix, input_hw=self.input_hw,
            stride=self.stride,
        )  # fmt: skip
        return {
            "image": image,
            "heatmaps": maps["heatmaps"],
            "pafs": maps["pafs"],
            "mask": mask,
            "flipped": np.bool_(flipped),
            "image_id": np.int64(record["image_id"]),
        }


def eval_affine(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, np.ndarray]:
    """The evaluation resize: scale = min(H_in / H, W_in / W) (aspect kept), offset (0, 0).

    Shapes: -> scale, offset (2,). Input pixel = scale * image pixel + offset.
    """
    (h, w), (in_h, in_w) = image_hw, input_hw
    return min(in_h / h, in_w / w), np.zeros(2)


def input_to_image(points: np.ndarray, scale, offset) -> np.ndarray:
    """Input pixels of an evaluation example -> image pixels: (p - offset) / scale.

    Shapes: points (..., 2), scale () or (...,) broadcast, offset (2,) or (..., 2) -> (..., 2).
    """
    return (np.asarray(points, np.float64) - offset) / np.asarray(scale, np.float64)[..., None]


@dataclasses.dataclass(frozen=True)
class BottomupEvalExample:
    """record -> the whole image resized into the input canvas, and the way back.

    Shapes: -> image (H, W, 3) uint8 RGB (input_hw), scale () float64, offset (2,) float64,
    image_id () int64, image_hw (2,) int64. image pixel = (input pixel - offset) / scale.
    """

    input_hw: tuple[int, int] = (368, 368)
    stride: int = 8

    def __post_init__(self):
        in_h, in_w = self.input_hw
        if in_h % self.stride or in_w % self.stride:
            raise ValueError(f"input_hw {self.input_hw} is not a multiple of stride {self.stride}")

    def __call__(self, record: dict) -> dict[str, np.ndarray]:
        image_hw = tuple(int(v) for v in record["image_hw"])
        scale, offset = eval_affine(image_hw, self.input_hw)
        matrix = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])
        return {
            "image": _warp_image(record, matrix, self.input_hw),
            "scale": np.float64(scale),
            "offset": offset,
            "image_id": np.int64(record["image_id"]),
            "image_hw": np.asarray(image_hw, np.int64),
        }

    def padding(self, records) -> dict[str, np.ndarray]:
        """The example of a padding slot: black, scale 1, image id -1."""
        del records
        return {
            "image": np.zeros((*self.input_hw, 3), np.uint8),
            "scale": np.float64(1.0),
            "offset": np.zeros(2),
            "image_id": np.int64(-1),
            "image_hw": np.asarray(self.input_hw, np.int64),
        }
