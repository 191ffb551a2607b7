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
import functools

import cv2
import numpy as np

from aggpose_jax.keypoints import codecs, geometry, metainfo
from data_pipelines import augment

# The contrast mean on the full image is estimated from every 4th row and column (1/16 of the pixels).
MEAN_SUBSAMPLE_STRIDE = 4


class ImageReadError(OSError):
    """An image that is missing or cannot be decoded; the message names the file."""


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


def record_name(record: dict) -> str:
    """The image a record points at, for messages: its path, else its file name."""
    return str(record.get("image_path") or record.get("file_name") or "<unnamed image>")


def load_image(results: dict, to_rgb: bool = False) -> dict:
    """Decodes the image with OpenCV (BGR; RGB with `to_rgb`).

    Reads: image_bytes (the encoded file, when the source holds it) or image_path.
    Adds: image (H, W, 3) uint8, image_wh (W, H), image_is_bgr.
    Raises ImageReadError naming the file when it is missing or cannot be decoded.
    """
    name = record_name(results)
    if results.get("image_bytes") is not None:
        buf = np.frombuffer(results["image_bytes"], dtype=np.uint8)
    else:
        try:
            buf = np.fromfile(results["image_path"], dtype=np.uint8)
        except OSError as e:
            raise ImageReadError(f"cannot read image {name}: {e.strerror or e}") from None
    image = (
        cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    )
    if image is None:
        raise ImageReadError(f"cannot decode image {name} ({buf.size} bytes)")
    if to_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    results.update(image=image, image_wh=(image.shape[1], image.shape[0]), image_is_bgr=not to_rgb)
    return results


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


def _fold_mirror(matrix: np.ndarray, image_w: int) -> np.ndarray:
    """T composed with the mirror x -> W - 1 - x: (2, 3) -> (2, 3)."""
    t = matrix.copy()
    t[:, 2] += t[:, 0] * (image_w - 1)
    t[:, 0] = -t[:, 0]
    return t


def _crop_inside(matrix: np.ndarray, output_wh: tuple[int, int], image_wh: tuple[int, int]) -> bool:
    """Whether every output pixel samples inside the image (its four neighbours, with a margin)."""
    w, h = output_wh
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    src = geometry.apply_affine(corners, geometry.invert_affine(matrix))
    return bool(
        np.all(src >= 1.0)
        and np.all(src[:, 0] <= image_wh[0] - 2)
        and np.all(src[:, 1] <= image_wh[1] - 2)
    )


@functools.lru_cache(maxsize=8)
def _full_mask(height: int, width: int) -> np.ndarray:
    mask = np.full((height, width), 255, np.uint8)
    mask.flags.writeable = False
    return mask


def topdown_affine(
    results: dict, input_hw: tuple[int, int], heatmap_hw: tuple[int, int] | None,
    keep_border_alpha: bool = False,
) -> dict:  # fmt: skip
    """The crop: cv2.warpAffine with T(c, s, r, out=input wh), bilinear, constant-0 border; RGB out.

    Reads: image, image_wh, image_is_bgr, center, scale, rotation, flipped, pixels_flipped,
    keypoints, visibility.
    Changes: image -> (h, w, 3) uint8 RGB crop; keypoints -> input pixels (T(out=input wh), zero for
    invisible joints). Adds: heatmap_keypoints (K, 2) via T(out=heatmap wh) (with `heatmap_hw`).
    With `keep_border_alpha` (a per-pixel colour op follows the warp) also adds full_subsample
    (h', w', 3) uint8 RGB, every 4th pixel of the full image; and when the crop leaves the image it
    warps with replicated edges and adds border_alpha (h, w) uint8, the weight of the image in each
    pixel under a constant-0 border, so that `normalize` re-borders the crop as a warp of the
    jittered image would be.
    """
    in_h, in_w = input_hw
    image, image_wh = results["image"], results["image_wh"]
    center, scale, rotation = results["center"], results["scale"], results.get("rotation", 0.0)
    # Joints are already in the flipped frame, so T maps them; only the pixels may still need the
    # mirror, folded into the warp matrix (a reflection of the pixel grid: the same bilinear samples).
    t_in = geometry.affine_transform_matrix(center, scale, rotation, (in_w, in_h))
    matrix = t_in
    if results.get("flipped") and not results.get("pixels_flipped"):
        matrix = _fold_mirror(t_in, image_wh[0])
    replicate = keep_border_alpha and not _crop_inside(matrix, (in_w, in_h), image_wh)
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    crop = cv2.warpAffine(image, matrix, (in_w, in_h), flags=cv2.INTER_LINEAR, borderMode=border)
    if replicate:
        results["border_alpha"] = cv2.warpAffine(
            _full_mask(*image.shape[:2]), matrix, (in_w, in_h), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )  # fmt: skip
    if keep_border_alpha:
        s = MEAN_SUBSAMPLE_STRIDE
        sub = np.ascontiguousarray(image[::s, ::s])
        results["full_subsample"] = (
            cv2.cvtColor(sub, cv2.COLOR_BGR2RGB) if results["image_is_bgr"] else sub
        )
    if results["image_is_bgr"]:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    results["image"] = crop
    vis = results["visibility"][:, None] > 0
    kps = results["keypoints"]
    results["keypoints"] = np.where(vis, geometry.apply_affine(kps, t_in), 0.0)
    if heatmap_hw is not None:
        t_hm = geometry.affine_transform_matrix(center, scale, rotation, heatmap_hw[::-1])
        results["heatmap_keypoints"] = np.where(vis, geometry.apply_affine(kps, t_hm), 0.0)
    return results


def colour_jitter_crop(results: dict, draws: AugmentDraws, cfg: AugmentConfig) -> dict:
    """Our order: the colour jitter on the crop, the contrast mean from the full image's subsample.

    Reads: image (h, w, 3) uint8 RGB crop, full_subsample. Changes: image. Adds: pending_lut
    ((256,) uint8 table still to apply, folded into `normalize`'s table) or None.
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


_PLAIN_LUT = augment.normalize_lut()


def normalize(results: dict) -> dict:
    """(v / 255 - mean) / std per RGB channel, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).

    Reads: image (h, w, 3) uint8 RGB, pending_lut, border_alpha. Changes: image -> float32.
    One cv2.LUT does the pending jitter table and the normalisation. With border_alpha a (0..255),
    a pixel becomes round(v * a / 255) first: the image's share of it under a constant-0 border.
    """
    image = results["image"]
    table = results.pop("pending_lut", None)
    alpha = results.pop("border_alpha", None)
    if alpha is not None:
        if table is not None:
            image, table = cv2.LUT(image, table), None
        image = cv2.multiply(image, cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB), scale=1.0 / 255.0)
    lut = _PLAIN_LUT if table is None else augment.normalize_lut(table)
    results["image"] = cv2.LUT(image, lut)
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
) -> dict:
    """The training chain on one record: read, half body, scale/rotation, flip, jitter, crop, targets.

    Shapes: record as in `sources`; -> image (h, w, 3) float32, heatmaps (h', w', K) float32,
    target_weight (K,), keypoints (K, 2) input pixels, visibility (K,), center (2,), scale (2,),
    rotation, flipped, score, image_id. `jitter_on` "crop" (ours) or "image" (the official order).
    """
    if jitter_on not in ("crop", "image"):
        raise ValueError(f"jitter_on must be 'crop' or 'image', got {jitter_on!r}")
    draws = draw_augmentation(rng, cfg)
    on_image = jitter_on == "image"
    results = load_image(dict(record), to_rgb=on_image)
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
    normalize(results)
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
    """The evaluation chain: read, crop with r = 0 and the record's (c, s), normalise.

    Shapes: -> image (h, w, 3) float32, center (2,), scale (2,), rotation, score, image_id, area;
    with `heatmap_hw` and `sigma` also heatmaps (h', w', K), target_weight (K,), keypoints (K, 2)
    in input pixels and visibility (K,) (for a validation loss on ground-truth boxes).
    """
    results = load_image(dict(record))
    results.update(rotation=0.0, flipped=False)
    topdown_affine(results, input_hw, heatmap_hw)
    normalize(results)
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
