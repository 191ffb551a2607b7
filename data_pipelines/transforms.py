"""Top-down training and evaluation transforms of the official release, as steps on a results dict.

Each step reads, changes and adds keys of one dict (the mmpose habit, listed in each docstring). The
dict starts as a person record (`sources.PersonRecords[i]`). Random numbers are drawn once per sample
into `AugmentDraws` from a generator the caller seeds with (seed, epoch, record index).

Two orders share the steps and the draws:
* `jitter_on="crop"` (ours, default): the flip is folded into the crop matrix and the colour jitter
  runs on the 256x192 crop, with the contrast mean taken from a subsample of the full image;
* `jitter_on="image"` (the official order): flip and jitter the full image, then crop.
"""

import dataclasses

import cv2
import numpy as np

from aggpose_jax.keypoints import codecs, geometry, metainfo
from data_pipelines import augment, crop
from data_pipelines.crop import (  # noqa: F401 -- the pixel steps, re-exported for callers
    MEAN_SUBSAMPLE_STRIDE,
    ImageReadError,
    finish_crop,
    load_image,
    record_name,
    topdown_affine,
)


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


def draw_augmentation(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentDraws:
    """Draws one sample's random numbers; each is independent, so skipping a step changes nothing else."""
    n = rng.standard_normal(3)
    u = rng.random(12)
    half = np.array([cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue])
    center = np.array([1.0, 1.0, 1.0, 0.0])
    return AugmentDraws(
        half_body_u=u[0], half_body_n=n[0], scale_n=n[1], rotation_n=n[2], rotation_u=u[1],
        flip_u=u[2], jitter_u=u[3], jitter_factors=center + half * (2.0 * u[4:8] - 1.0),
        # The ranks of 4 i.i.d. uniforms are a uniformly random permutation.
        jitter_order=np.argsort(u[8:12]),
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
    wh = chosen.max(axis=0) - chosen.min(axis=0) + 1.0
    results["center"] = chosen.mean(axis=0)
    results["scale"] = geometry.fix_aspect(wh, aspect_ratio) / geometry.PIXEL_STD
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

    Reads: image_wh, keypoints, visibility, center (and image with `flip_pixels`).
    Changes: keypoints, visibility, center (c_x <- W - 1 - c_x) (and image with `flip_pixels`).
    Adds: flipped (bool); pixels_flipped (bool) with `flip_pixels`. Without `flip_pixels` the image stays as it is and `topdown_affine` folds
    the mirror into the crop matrix (a reflection of the pixel grid, so the same bilinear samples).
    """
    results["flipped"] = bool(draws.flip_u <= cfg.flip_prob)
    if not results["flipped"]:
        return results
    width = results["image_wh"][0]
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


def generate_targets(results: dict, heatmap_hw: tuple[int, int], sigma: float) -> dict:
    """Gaussian heatmap targets (codecs.encode_heatmaps, spec 2.4).

    Reads: heatmap_keypoints (K, 2), visibility (K,). Adds: heatmaps (h, w, K) float32,
    target_weight (K,) float32.
    """
    results["heatmaps"], results["target_weight"] = codecs.encode_heatmaps(
        results["heatmap_keypoints"], results["visibility"], (heatmap_hw[1], heatmap_hw[0]), sigma
    )
    return results


def train_example(
    record: dict,
    rng: np.random.Generator,
    *,
    fmt: metainfo.KeypointFormat,
    input_hw: tuple[int, int],
    heatmap_hw: tuple[int, int],
    sigma: float,
    cfg: AugmentConfig = AugmentConfig(),
    jitter_on: str = "crop",
    decode_region: bool = True,
) -> dict:
    """The training chain on one record: read, half body, scale/rotation, flip, jitter, crop, targets.

    Shapes: record as in `sources`; -> image (h, w, 3) uint8 RGB (normalised on the device:
    `aggpose_jax.models.preprocess`), heatmaps (h', w', K) float32, target_weight (K,),
    keypoints (K, 2) input pixels, visibility (K,), center (2,), scale (2,), rotation, flipped,
    score, image_id.
    `jitter_on` "crop" (ours) or "image" (the official order). With "crop" and `decode_region`, a
    sample without colour jitter decodes only the crop's source box (`crop.topdown_affine`); the
    jitter's contrast mean needs the whole image, so a jittered sample decodes all of it.
    """
    if jitter_on not in ("crop", "image"):
        raise ValueError(f"jitter_on must be 'crop' or 'image', got {jitter_on!r}")
    draws = draw_augmentation(rng, cfg)
    on_image = jitter_on == "image"
    results = crop.read_header(dict(record))
    if on_image or not decode_region:
        crop.decode_image(results, to_rgb=on_image)
    half_body(results, draws, cfg, fmt, input_hw[1] / input_hw[0])
    scale_rotation(results, draws, cfg)
    flip(results, draws, cfg, fmt, flip_pixels=on_image)
    if on_image:
        colour_jitter_image(results, draws, cfg)
        topdown_affine(results, input_hw, heatmap_hw)
    else:
        topdown_affine(results, input_hw, heatmap_hw, keep_border_alpha=jitter_applies(draws, cfg))
        colour_jitter_crop(results, draws, cfg)
    generate_targets(results, heatmap_hw, sigma)
    finish_crop(results)
    return {
        "image": results["image"],
        "heatmaps": results["heatmaps"],
        "target_weight": results["target_weight"],
        "keypoints": results["keypoints"].astype(np.float32),
        "visibility": results["visibility"].astype(np.float32),
        "center": results["center"].astype(np.float64),
        "scale": results["scale"].astype(np.float64),
        "rotation": np.float32(results["rotation"]),
        "flipped": np.bool_(results["flipped"]),
        "score": np.float32(record["score"]),
        "image_id": np.int64(record["image_id"]),
    }


def eval_example(
    record: dict,
    *,
    input_hw: tuple[int, int],
    heatmap_hw: tuple[int, int] | None = None,
    sigma: float | None = None,
) -> dict:
    """The evaluation chain: read, crop with r = 0 and the record's (c, s).

    Only the crop's source box is decoded (when TurboJPEG is there). Shapes: -> image (h, w, 3)
    uint8 RGB, center (2,), scale (2,), rotation, score, image_id, area;
    with `heatmap_hw` and `sigma` also heatmaps (h', w', K), target_weight (K,), keypoints (K, 2)
    in input pixels and visibility (K,) (for a validation loss on ground-truth boxes).
    """
    results = crop.read_header(dict(record))
    results.update(rotation=0.0, flipped=False)
    topdown_affine(results, input_hw, heatmap_hw)
    out = {
        "image": results["image"],
        "center": np.asarray(record["center"], np.float64),
        "scale": np.asarray(record["scale"], np.float64),
        "rotation": np.float32(0.0),
        "score": np.float32(record["score"]),
        "image_id": np.int64(record["image_id"]),
        "area": np.float32(record["area"]),
    }
    if heatmap_hw is not None and sigma is not None:
        generate_targets(results, heatmap_hw, sigma)
        out.update(
            heatmaps=results["heatmaps"],
            target_weight=results["target_weight"],
            keypoints=results["keypoints"].astype(np.float32),
            visibility=np.asarray(record["visibility"], np.float32),
        )
    return out
