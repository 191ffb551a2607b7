"""The masked-image chain: one unlabeled frame -> a uint8 crop and its SimMIM mask, in one pass.

Training (`MaskedTrainExample`): decode (crop.load_image) -> random-resized crop (area scale 0.67-1,
aspect 3/4-4/3, SimMIM's fine-tuning-free crop of Xie et al. 2022) -> resize to input_hw (bilinear)
-> flip -> mask: exactly round(ratio * n) of the n = (H / unit) x (W / unit) mask units, drawn
uniformly (SimMIM: 32-pixel units, ratio 0.6; an 8 x 6 grid at 256 x 192). Every draw comes from the
record's generator, `np.random.default_rng([seed, epoch, record_index])` in the loaders, so a resumed
run sees the same crops and masks. Evaluation (`MaskedEvalExample`): a centre crop to the input
aspect; its masks come from the task, fixed per batch row, so held-out losses compare across runs.

Records are any source's dicts with "image_bytes" (video frame shards, COCO images without their
labels, image folders: `sources.image_folder_records`).
"""

import dataclasses

import cv2
import numpy as np

from data_pipelines import crop

MASK_UNIT = 32
MASK_RATIO = 0.6


def draw_mask(rng: np.random.Generator, grid_hw: tuple[int, int], ratio: float) -> np.ndarray:
    """(gh, gw) uint8 mask with exactly round(ratio * gh * gw) ones at uniformly drawn units."""
    n = grid_hw[0] * grid_hw[1]
    mask = np.zeros(n, np.uint8)
    mask[rng.permutation(n)[: int(round(ratio * n))]] = 1
    return mask.reshape(grid_hw)


def random_resized_box(
    rng: np.random.Generator,
    image_hw: tuple[int, int],
    scale: tuple[float, float],
    log_ratio: tuple[float, float],
) -> tuple[int, int, int, int]:
    """A box (y0, x0, h, w) of area scale*HW and aspect w/h = exp(log_ratio draw), clipped to the image.

    Ten tries as torchvision's RandomResizedCrop, then the largest box of the image's aspect.
    """
    height, width = image_hw
    for _ in range(10):
        area = height * width * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def center_box(image_hw: tuple[int, int], aspect: float) -> tuple[int, int, int, int]:
    """The largest centred box (y0, x0, h, w) of aspect w / h = `aspect`."""
    height, width = image_hw
    h, w = (height, int(round(height * aspect))) if width >= height * aspect else (
        int(round(width / aspect)), width)  # fmt: skip
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_resize(image: np.ndarray, box: tuple[int, int, int, int], input_hw) -> np.ndarray:
    y0, x0, h, w = box
    region = np.ascontiguousarray(image[y0 : y0 + h, x0 : x0 + w])
    return cv2.resize(region, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_LINEAR)


def _check_hw(input_hw: tuple[int, int], unit: int) -> tuple[int, int]:
    if input_hw[0] % unit or input_hw[1] % unit:
        raise ValueError(f"input_hw {tuple(input_hw)} is not a multiple of the mask unit {unit}")
    return input_hw[0] // unit, input_hw[1] // unit


@dataclasses.dataclass(frozen=True)
class MaskedTrainExample:
    """record -> {"image": (H, W, 3) uint8, "mask": (H / unit, W / unit) uint8} (see the module)."""

    input_hw: tuple[int, int] = (256, 192)
    mask_unit: int = MASK_UNIT
    mask_ratio: float = MASK_RATIO
    scale: tuple[float, float] = (0.67, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5

    def __call__(self, record: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        grid_hw = _check_hw(self.input_hw, self.mask_unit)
        image = crop.load_image(dict(record), to_rgb=True)["image"]
        log_ratio = (float(np.log(self.ratio[0])), float(np.log(self.ratio[1])))
        box = random_resized_box(rng, image.shape[:2], self.scale, log_ratio)
        out = _crop_resize(image, box, self.input_hw)
        if rng.uniform() < self.flip_prob:
            out = np.ascontiguousarray(out[:, ::-1])
        return {"image": out, "mask": draw_mask(rng, grid_hw, self.mask_ratio)}


@dataclasses.dataclass(frozen=True)
class MaskedEvalExample:
    """record -> {"image": (H, W, 3) uint8, the centre crop to the input aspect}; the evaluation's
    masks are the task's, fixed per batch row (`tasks.masked_image.eval_masks`)."""

    input_hw: tuple[int, int] = (256, 192)

    def __call__(self, record: dict) -> dict[str, np.ndarray]:
        image = crop.load_image(dict(record), to_rgb=True)["image"]
        box = center_box(image.shape[:2], self.input_hw[1] / self.input_hw[0])
        return {"image": _crop_resize(image, box, self.input_hw)}

    def padding(self, records) -> dict[str, np.ndarray]:
        """A blank example (evaluation batches are padded with it, marked invalid)."""
        return {"image": np.zeros((*self.input_hw, 3), np.uint8)}
