"""The official top-down training augmentation, as steps on a results dict.

Each step reads, changes and adds keys of one dict (the mmpose habit, listed in each docstring); the
chain that runs them is `topdown.TopdownTrainExample`. Random numbers are drawn once per sample
into `AugmentDraws` from a generator the caller seeds with (seed, epoch, record index). The box steps
(`half_body`, `scale_rotation`, `flip`) move joints, center, scale and rotation only, so they run
before any pixel is decoded; the colour jitter runs on the full image (`colour_jitter_image`, the
official order) or on the crop (`colour_jitter_crop`, ours).
"""

import dataclasses

import cv2
import numpy as np

from aggpose_jax.keypoints import geometry, metainfo
from data_pipelines import augment


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The official training augmentation (spec values of the AggPose recipes)."""

    half_body_prob: float = 0.3
    half_body_padding: float = 1.5
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    jitter_prob: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.1
    # Cutout (DeVries & Taylor 2017), used by RAM + GPR: one square of side cutout * input width,
    # centred uniformly on the crop (it may hang over the border), filled with the ImageNet mean
    # (zero after normalisation). 0 = off; the joints under it stay targets.
    cutout: float = 0.0


@dataclasses.dataclass(frozen=True)
class AugmentDraws:
    """Every random number one sample needs, drawn in a fixed order whatever is applied.

    Shapes: jitter_factors (4,) brightness, contrast, saturation, hue; jitter_order (4,) a permutation.
    """

    half_body_u: float
    half_body_n: float
    scale_n: float
    rotation_n: float
    rotation_u: float
    flip_u: float
    jitter_u: float
    jitter_factors: np.ndarray
    jitter_order: np.ndarray
    cutout_xy: np.ndarray


def draw_augmentation(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentDraws:
    """Draws one sample's random numbers; each is independent, so skipping a step changes nothing else."""
    n = rng.standard_normal(3)
    u = rng.random(12)
    # Drawn after the others, so that samples without cutout are what they always were.
    cutout_xy = rng.random(2)
    half = np.array([cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue])
    center = np.array([1.0, 1.0, 1.0, 0.0])
    return AugmentDraws(
        half_body_u=u[0], half_body_n=n[0], scale_n=n[1], rotation_n=n[2], rotation_u=u[1],
        flip_u=u[2], jitter_u=u[3], jitter_factors=center + half * (2.0 * u[4:8] - 1.0),
        # The ranks of 4 i.i.d. uniforms are a uniformly random permutation.
        jitter_order=np.argsort(u[8:12]), cutout_xy=cutout_xy,
    )  # fmt: skip


def half_body(
    results: dict, draws: AugmentDraws, cfg: AugmentConfig, fmt: metainfo.KeypointFormat,
    aspect_ratio: float,
) -> dict:  # fmt: skip
    """Half-body crop: with prob 0.3, re-center on the upper or lower visible joints.

    Reads: keypoints (K, 2), visibility (K,). Changes: center, scale.
    Applies when more than fmt.half_body_min_joints joints are visible and U < prob; picks the upper
    set when a standard-normal draw is < 0.5 (P ~= 0.69) and it has more than 2 joints, else the lower
    set if it has more than 2, else the upper set; a set of fewer than 2 joints changes nothing.
    The box is the set's extent (max - min + 1), aspect-fixed, scale = box / 200 * 1.5.
    """
    vis = results["visibility"] > 0
    if vis.sum() <= fmt.half_body_min_joints or not draws.half_body_u < cfg.half_body_prob:
        return results
    ids = np.arange(len(vis))
    upper = results["keypoints"][vis & np.isin(ids, fmt.upper_body_ids)]
    lower = results["keypoints"][vis & np.isin(ids, fmt.lower_body_ids)]
    if draws.half_body_n < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return results
    extent_xy = chosen.max(axis=0) - chosen.min(axis=0) + 1.0
    results["center"] = chosen.mean(axis=0)
    results["scale"] = geometry.fix_aspect(extent_xy, aspect_ratio) / geometry.PIXEL_STD
    results["scale"] = results["scale"] * cfg.half_body_padding
    return results


def scale_rotation(results: dict, draws: AugmentDraws, cfg: AugmentConfig) -> dict:
    """Random scale clip(1 + 0.35 N, 0.65, 1.35) and, with prob 0.6, rotation clip(45 N, -90, 90).

    Reads: scale. Changes: scale. Adds: rotation (degrees).
    """
    sf, rf = cfg.scale_factor, cfg.rotation_factor
    results["scale"] = results["scale"] * np.clip(1.0 + sf * draws.scale_n, 1.0 - sf, 1.0 + sf)
    rotation = np.clip(rf * draws.rotation_n, -2 * rf, 2 * rf)
    results["rotation"] = float(rotation) if draws.rotation_u <= cfg.rotation_prob else 0.0
    return results


def flip(
    results: dict, draws: AugmentDraws, cfg: AugmentConfig, fmt: metainfo.KeypointFormat,
    flip_pixels: bool,
) -> dict:  # fmt: skip
    """Horizontal flip with prob 0.5: x <- W - 1 - x, flip pairs swapped, joints * visibility.

    Reads: image_hw, keypoints, visibility, center (and image with `flip_pixels`).
    Changes: keypoints, visibility, center (c_x <- W - 1 - c_x) (and image with `flip_pixels`).
    Adds: flipped (bool); pixels_flipped (bool) with `flip_pixels`. Without `flip_pixels` the image
    stays as it is and `topdown.crop_affine` folds the mirror into the crop matrix (a reflection of
    the pixel grid, so the same bilinear samples).
    """
    results["flipped"] = bool(draws.flip_u <= cfg.flip_prob)
    if not results["flipped"]:
        return results
    width = results["image_hw"][1]
    kps = results["keypoints"].copy()
    kps[:, 0] = width - 1 - kps[:, 0]
    order = fmt.flip_indices
    results["visibility"] = results["visibility"][order]
    results["keypoints"] = kps[order] * results["visibility"][:, None]
    results["center"] = np.array([width - 1 - results["center"][0], results["center"][1]])
    if flip_pixels:
        results["image"] = cv2.flip(results["image"], 1)
        results["pixels_flipped"] = True
    return results


def jitter_applies(draws: AugmentDraws | None, cfg: AugmentConfig) -> bool:
    """Whether this sample's colour jitter is on (prob 0.5)."""
    return draws is not None and draws.jitter_u < cfg.jitter_prob


def colour_jitter_image(results: dict, draws: AugmentDraws, cfg: AugmentConfig) -> dict:
    """The official order: colour jitter on the full RGB image (before the crop).

    Reads: image (H, W, 3) uint8 RGB. Changes: image.
    """
    if jitter_applies(draws, cfg):
        results["image"] = augment.jitter_full(
            results["image"], draws.jitter_factors, draws.jitter_order
        )
    return results


def colour_jitter_crop(results: dict, draws: AugmentDraws, cfg: AugmentConfig) -> dict:
    """Our order: the colour jitter on the crop, the contrast mean from the full image's subsample.

    Reads: image (h, w, 3) uint8 RGB crop, full_subsample. Changes: image. Adds: pending_lut
    ((256,) uint8 table still to apply, by `finish_crop`) or None.
    """
    results["pending_lut"] = None
    if jitter_applies(draws, cfg):
        results["image"], results["pending_lut"] = augment.jitter_crop(
            results["image"], draws.jitter_factors, draws.jitter_order, results["full_subsample"]
        )
    return results


# The ImageNet mean in uint8 RGB: a cutout square is zero after `models.preprocess`.
CUTOUT_FILL = (124, 116, 104)


def cutout(results: dict, draws: AugmentDraws, cfg: AugmentConfig) -> dict:
    """Cutout (DeVries & Taylor 2017) on the crop: one square of side `cfg.cutout` * crop width.

    Reads: image (h, w, 3) uint8 RGB crop. Changes: image (the square filled with `CUTOUT_FILL`).
    The square's centre is uniform over the crop, so it may hang over the border, as in the paper.
    """
    if cfg.cutout <= 0:
        return results
    image = results["image"]
    h, w = image.shape[:2]
    side = max(1, round(cfg.cutout * w))
    cx, cy = draws.cutout_xy * (w, h)
    x0, y0 = int(np.clip(cx - side / 2, 0, w)), int(np.clip(cy - side / 2, 0, h))
    x1, y1 = int(np.clip(cx + side / 2, 0, w)), int(np.clip(cy + side / 2, 0, h))
    image = image.copy()
    image[y0:y1, x0:x1] = CUTOUT_FILL
    results["image"] = image
    return results
