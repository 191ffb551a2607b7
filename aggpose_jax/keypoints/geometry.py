"""Top-down geometry of the official release: box cleaning, box -> (center, scale), the affine crop.

Conventions: boxes are COCO (x, y, w, h) in pixels; center (2,) = (cx, cy); scale (2,) = (w, h) / 200
(pixel_std). Sizes are (height, width) and say so in their names (`output_hw`, `image_hw`), and are
keyword-only, so that a stale (width, height) call fails instead of swapping the axes; points, box
extents and scales stay (x, y) ordered.
"""

import numpy as np

PIXEL_STD = 200.0


def clean_box(box_xywh: np.ndarray, *, image_hw: tuple[int, int]) -> np.ndarray | None:
    """Clip a COCO box to the image as the official loaders do; None when it is empty.

    Shapes: box_xywh (4,) -> (4,) or None. x1 = max(0, x), x2 = min(W-1, x1 + max(0, w-1)), and the
    same for y; the box is kept if x2 >= x1 and y2 >= y1. (The official COCO loader also needs the
    annotation's `area` field > 0; that is a property of the annotation, checked by its loader.)
    """
    x, y, w, h = (float(v) for v in box_xywh)
    img_h, img_w = image_hw
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(img_w - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(img_h - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def fix_aspect(wh: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side so that w / h == aspect_ratio. Shapes: wh (..., 2) -> (..., 2)."""
    wh = np.asarray(wh, dtype=np.float64)
    w, h = wh[..., 0], wh[..., 1]
    new_w = np.where(w < aspect_ratio * h, aspect_ratio * h, w)
    new_h = np.where(w > aspect_ratio * h, w / aspect_ratio, h)
    return np.stack([new_w, new_h], axis=-1)


def box_to_center_scale(
    box_xywh: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Box -> (center, scale) as the official loaders compute it.

    Shapes: box_xywh (..., 4) -> center (..., 2), scale (..., 2). The center is taken before the aspect
    fix; scale = aspect-fixed (w, h) / 200 * padding. `aspect_ratio` = input width / height (0.75).
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    center = box[..., :2] + box[..., 2:4] * 0.5
    scale = fix_aspect(box[..., 2:4], aspect_ratio) / PIXEL_STD * padding
    return center, scale


def affine_transform_matrix(
    center: np.ndarray, scale: np.ndarray, rotation_deg: float, *, output_hw: tuple[int, int]
) -> np.ndarray:
    """The official crop transform T(c, s, r, out) as a (2, 3) matrix, image -> output pixels.

    Shapes: center (2,), scale (2,) -> (2, 3). Closed form of the three-point construction with the
    "minus one" (unbiased, DARK/UDP) convention:
        p_out = k * R(r) @ (p_in - c) + ((dw - 1) / 2, (dh - 1) / 2),  k = (dw - 1) / (200 * s_x - 1),
        R(r) = [[cos r, sin r], [-sin r, cos r]].
    Only s_x sets the scale; the transform is isotropic.
    """
    dh, dw = output_hw
    k = (dw - 1.0) / (PIXEL_STD * float(scale[0]) - 1.0)
    r = np.deg2rad(rotation_deg)
    rot = k * np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])
    offset = np.array([(dw - 1.0) / 2.0, (dh - 1.0) / 2.0]) - rot @ np.asarray(center, np.float64)
    return np.concatenate([rot, offset[:, None]], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix. Shapes: (2, 3) -> (2, 3)."""
    a = np.asarray(matrix, dtype=np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.concatenate([inv, -inv @ a[:, 2:]], axis=1)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a (2, 3) affine matrix. Shapes: points (..., 2) -> (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    a = np.asarray(matrix, dtype=np.float64)
    return pts @ a[:, :2].T + a[:, 2]


def output_to_image_coords(
    coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, *, output_hw: tuple[int, int]
) -> np.ndarray:
    """Inverse of the rotation-free crop: output (e.g. heatmap) pixels -> image pixels, batched.

    Shapes: coords (N, K, 2), centers (N, 2), scales (N, 2) -> (N, K, 2).
    p_in = (p_out - ((dw - 1) / 2, (dh - 1) / 2)) / k + c with k = (dw - 1) / (200 * s_x - 1).
    """
    dh, dw = output_hw
    centers = np.asarray(centers, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    k = (dw - 1.0) / (PIXEL_STD * scales[:, 0] - 1.0)
    half = np.array([(dw - 1.0) / 2.0, (dh - 1.0) / 2.0])
    return (np.asarray(coords, np.float64) - half) / k[:, None, None] + centers[:, None, :]


def resize_crop_points(
    points: np.ndarray, *, from_hw: tuple[int, int], to_hw: tuple[int, int]
) -> np.ndarray:
    """Points of one crop of (c, s, r) -> the same points in a crop of another output size.

    Shapes: points (..., 2) -> (..., 2). T(c, s, r, out) differs between output sizes only in k and
    the half-size offset, so p_to = (p_from - half_from) * (w_to - 1) / (w_from - 1) + half_to
    (the width sets the scale on both axes), whatever c, s and r were: input pixels <-> heatmap
    pixels. Equals mapping the image point with T(out=to_hw) to float64 rounding.
    """
    (fh, fw), (th, tw) = from_hw, to_hw
    half_from = np.array([(fw - 1.0) / 2.0, (fh - 1.0) / 2.0])
    half_to = np.array([(tw - 1.0) / 2.0, (th - 1.0) / 2.0])
    ratio = (tw - 1.0) / (fw - 1.0)
    return (np.asarray(points, np.float64) - half_from) * ratio + half_to
