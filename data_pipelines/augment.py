"""Colour jitter of the official release (torchvision-style ColorJitter on uint8 RGB), fast on crops.

The four ops and their semantics (each maps uint8 RGB (H, W, 3) -> uint8 RGB (H, W, 3)):

* brightness f: a 0..255 lookup table of v * f, clipped, truncated to uint8;
* contrast f: (v - m) * f + m as a table, m = the rounded mean grey level of the image it is applied
  to (after the ops drawn before it), clipped, truncated;
* saturation f: blend with the grey image, grey * (1 - f) + v * f (PIL ImageEnhance.Color), rounded;
* hue f: add int(f * 255) to the hue channel of the 0..255 HSV image with uint8 wrap-around.

Brightness and contrast are tables, so consecutive ones fold into one table, applied once with the
crop's other pending pixel work (`crop.finish_crop`): most of the jitter then costs one cv2.LUT.
The official applies the jitter to the full image before the crop; `jitter_crop` applies the same
draw to the crop, taking the contrast mean from a subsampled copy of the full image (see docs/data.md).
"""

import cv2
import numpy as np

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
_IDENTITY = np.arange(256, dtype=np.float64)


def brightness_lut(factor: float) -> np.ndarray:
    """(256,) uint8 table of clip(v * factor) truncated."""
    return np.clip(_IDENTITY * factor, 0, 255).astype(np.uint8)


def contrast_lut(factor: float, mean_grey: float) -> np.ndarray:
    """(256,) uint8 table of clip((v - m) * factor + m) truncated."""
    return np.clip((_IDENTITY - mean_grey) * factor + mean_grey, 0, 255).astype(np.uint8)


def mean_grey(image_rgb: np.ndarray) -> int:
    """The rounded mean of the ITU-R 601 grey image (what PIL / cv2 RGB->L give). (H, W, 3) -> int."""
    return int(round(float(np.mean(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)))))


def adjust_saturation(image_rgb: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grey image: grey * (1 - f) + image * f, rounded and clipped. (H, W, 3) uint8."""
    grey = cv2.cvtColor(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(image_rgb, factor, grey, 1.0 - factor, 0.0)


def adjust_hue(image_rgb: np.ndarray, factor: float) -> np.ndarray:
    """Shift the 0..255 hue channel by int(f * 255) with uint8 wrap-around. (H, W, 3) uint8."""
    hsv = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2HSV_FULL)
    shift = int(factor * 255) % 256
    # uint8 addition wraps modulo 256, as the official cast does.
    hsv[..., 0] = hsv[..., 0] + np.uint8(shift)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def _apply_ops(
    image: np.ndarray, factors: np.ndarray, order: np.ndarray, mean_source: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Runs the jitter ops in `order` on `image`; returns the image and a table still to apply.

    Tables (brightness, contrast) are composed lazily and flushed before saturation or hue. The
    contrast mean comes from `mean_source` with the ops before contrast applied to it (the full image
    or a subsample of it); None means `image` itself.
    """
    table = None
    src = mean_source
    for op in order:
        f = float(factors[op])
        if op == BRIGHTNESS:
            t = brightness_lut(f)
        elif op == CONTRAST:
            if src is None:
                m = mean_grey(image if table is None else cv2.LUT(image, table))
            else:
                m = mean_grey(src)
            t = contrast_lut(f, m)
        else:
            if table is not None:
                image, table = cv2.LUT(image, table), None
            fn = adjust_saturation if op == SATURATION else adjust_hue
            image = fn(image, f)
            if src is not None:
                src = fn(src, f)
            continue
        table = t if table is None else t[table]
        if src is not None:
            src = cv2.LUT(src, t)
    return image, table


def jitter_full(image_rgb: np.ndarray, factors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The official order: the jitter on a whole uint8 RGB image. (H, W, 3) -> (H, W, 3) uint8.

    Shapes: factors (4,) = brightness, contrast, saturation, hue; order (4,) a permutation of 0..3.
    """
    image, table = _apply_ops(image_rgb, factors, order, None)
    return image if table is None else cv2.LUT(image, table)


def jitter_crop(
    crop_rgb: np.ndarray,
    factors: np.ndarray,
    order: np.ndarray,
    full_subsample_rgb: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The same draw applied to a crop; returns (crop, pending (256,) uint8 table or None).

    Shapes: crop_rgb (h, w, 3) uint8; full_subsample_rgb (h', w', 3) uint8, a strided copy of the
    full image whose mean grey stands in for the full image's in contrast. Brightness and contrast
    are per-pixel tables, saturation and hue per-pixel colour maps, so only contrast's mean depends
    on pixels outside the crop. The pending table is left to `crop.finish_crop`.
    """
    needs_mean = CONTRAST in [int(o) for o in order]
    return _apply_ops(crop_rgb, factors, order, full_subsample_rgb if needs_mean else None)
