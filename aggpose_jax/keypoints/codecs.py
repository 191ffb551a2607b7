"""Heatmap codecs: Gaussian target encoding (official release, DARK-style unbiased) and decoding."""

import numpy as np


def encode_heatmaps(
    keypoints: np.ndarray, visibility: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets with real-valued centres, as the official release makes them.

    Shapes: keypoints (K, 2) in heatmap pixels (x, y); visibility (K,) -> heatmaps (H, W, K) float32,
    target_weight (K,) float32.

    The weight is the visibility (0/1), set to 0 when the 3-sigma window, with integer truncation
    (ul = int(mu - 3 sigma), br = int(mu + 3 sigma + 1)), lies wholly outside the map. Where the weight
    is positive the target is exp(-((x - mu_x)^2 + (y - mu_y)^2) / (2 sigma^2)) over the whole grid, with
    no rounding of mu and no truncation to the window ("Distribution-Aware Coordinate Representation for
    Human Pose Estimation", Zhang et al., CVPR 2020); elsewhere it is all zeros.
    """
    w, h = heatmap_wh
    mu = np.asarray(keypoints, dtype=np.float64)
    weight = (np.asarray(visibility, dtype=np.float64) > 0).astype(np.float32)
    # int() truncates toward zero, as the official Python int() does.
    ul = np.trunc(mu - 3 * sigma)
    br = np.trunc(mu + 3 * sigma + 1)
    outside = (ul[:, 0] >= w) | (ul[:, 1] >= h) | (br[:, 0] < 0) | (br[:, 1] < 0)
    weight[outside] = 0.0
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    gx = np.exp(-((xs[None, :] - mu[:, 0:1]) ** 2) / (2 * sigma**2))  # (K, W)
    gy = np.exp(-((ys[None, :] - mu[:, 1:2]) ** 2) / (2 * sigma**2))  # (K, H)
    heatmaps = gy[:, :, None] * gx[:, None, :] * (weight > 0.5)[:, None, None]  # (K, H, W)
    return np.ascontiguousarray(heatmaps.transpose(1, 2, 0), dtype=np.float32), weight


# --- decoding ------------------------------------------------------------------------------------
#
# The decoders take an array namespace `xp` (numpy by default, `jax.numpy` from
# aggpose_jax.evaluation.predict) so one implementation serves the host and jitted paths; this
# package itself never imports jax. They are written without in-place updates for that reason.

DECODE_METHODS = ("dark", "quarter", "argmax")


def _to_float(heatmaps, xp):
    """Heatmaps as a float array: float64 for numpy (exactness), the input's float type for jax."""
    hm = xp.asarray(heatmaps)
    if xp is np:
        return hm.astype(np.float64)
    return hm.astype(xp.result_type(hm.dtype, xp.float32))


def heatmap_maxima(heatmaps, xp=np):
    """Integer argmax per heatmap and its value, as the official release reads the peak.

    Shapes: heatmaps (B, H, W, K) -> coords (B, K, 2) as (x, y) heatmap pixels, maxvals (B, K).
    x = idx mod W, y = idx div W of the first maximum in row-major order; a heatmap whose maximum is
    <= 0 gets the coordinate (0, 0).
    """
    hm = _to_float(heatmaps, xp)
    b, h, w, k = hm.shape
    flat = xp.reshape(xp.moveaxis(hm, -1, 1), (b, k, h * w))
    idx = xp.argmax(flat, axis=-1)
    maxvals = xp.max(flat, axis=-1)
    coords = xp.stack([idx % w, idx // w], axis=-1).astype(hm.dtype)
    coords = xp.where((maxvals > 0)[..., None], coords, xp.zeros_like(coords))
    return coords, maxvals


def _gaussian_taps(kernel_size: int) -> np.ndarray:
    """1-D Gaussian taps with OpenCV's default sigma for the size: 0.3 ((k - 1) / 2 - 1) + 0.8."""
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8
    x = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def blur_heatmaps(heatmaps, kernel_size: int = 11, xp=np):
    """DARK's smoothing: a zero-padded Gaussian blur, rescaled to each map's pre-blur maximum.

    Shapes: heatmaps (B, H, W, K) -> (B, H, W, K). Equals cv2.GaussianBlur((k, k), sigma 0) on a copy
    padded with (k - 1) / 2 zeros on every side, cropped back; the pad is as wide as the kernel's
    radius, so OpenCV's own border rule never reaches the kept pixels. An all-zero map gives NaN (0/0),
    as in the official release; its coordinate is (0, 0) and is never refined.
    """
    hm = _to_float(heatmaps, xp)
    _, h, w, _ = hm.shape
    taps = _gaussian_taps(kernel_size)
    r = kernel_size // 2
    # Separable: along W, then along H. Zero rows padded along H stay zero after the W pass.
    p = xp.pad(hm, ((0, 0), (0, 0), (r, r), (0, 0)))
    bx = sum(float(t) * p[:, :, i : i + w, :] for i, t in enumerate(taps))
    p = xp.pad(bx, ((0, 0), (r, r), (0, 0), (0, 0)))
    blurred = sum(float(t) * p[:, i : i + h, :, :] for i, t in enumerate(taps))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = xp.max(hm, axis=(1, 2)) / xp.max(blurred, axis=(1, 2))  # (B, K)
    return blurred * ratio[:, None, None, :]


def _gather(maps, px, py, xp):
    """maps (B, H, W, K) sampled at integer (px, py) (B, K), indices clipped into the map."""
    b, h, w, k = maps.shape
    flat = xp.reshape(xp.moveaxis(maps, -1, 1), (b, k, h * w))
    idx = xp.clip(py, 0, h - 1) * w + xp.clip(px, 0, w - 1)
    return xp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]


def refine_dark(heatmaps, coords, kernel_size: int = 11, xp=np):
    """DARK sub-pixel refinement: one Newton step on the log of the blurred heatmap.

    Shapes: heatmaps (B, H, W, K), coords (B, K, 2) integer peaks -> (B, K, 2).
    "Distribution-Aware Coordinate Representation for Human Pose Estimation" (Zhang et al., CVPR 2020),
    as the official release applies it: blur (`blur_heatmaps`), clamp to >= 1e-10, natural log, then
    at the peak (px, py), only when 1 < px < W - 2 and 1 < py < H - 2, the central differences
    dx = (L[y, x+1] - L[y, x-1]) / 2, dxx = (L[y, x+2] - 2 L[y, x] + L[y, x-2]) / 4,
    dxy = (L[y+1, x+1] - L[y-1, x+1] - L[y+1, x-1] + L[y-1, x-1]) / 4 (and dy, dyy likewise) give
    coord -= Hess^-1 grad when det(Hess) != 0. The offset is not clipped.
    """
    hm = _to_float(heatmaps, xp)
    _, h, w, _ = hm.shape
    log_hm = xp.log(xp.maximum(blur_heatmaps(hm, kernel_size, xp), 1e-10))
    px = coords[..., 0].astype(xp.int32)
    py = coords[..., 1].astype(xp.int32)
    at = lambda ox, oy: _gather(log_hm, px + ox, py + oy, xp)  # noqa: E731
    c = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    ok = inside & (det != 0)
    safe_det = xp.where(ok, det, xp.ones_like(det))
    # -Hess^-1 grad with Hess^-1 = [[dyy, -dxy], [-dxy, dxx]] / det.
    off_x = -(dyy * dx - dxy * dy) / safe_det
    off_y = -(dxx * dy - dxy * dx) / safe_det
    offset = xp.stack([off_x, off_y], axis=-1)
    return coords + xp.where(ok[..., None], offset, xp.zeros_like(offset))


def refine_quarter(heatmaps, coords, xp=np):
    """The classic quarter-pixel shift towards the higher neighbour (Simple Baselines, HRNet).

    Shapes: heatmaps (B, H, W, K), coords (B, K, 2) integer peaks -> (B, K, 2). Applied only when
    1 < px < W - 1 and 1 < py < H - 1, as those releases do: coord += 0.25 sign(grad) on the raw map.
    """
    hm = _to_float(heatmaps, xp)
    _, h, w, _ = hm.shape
    px = coords[..., 0].astype(xp.int32)
    py = coords[..., 1].astype(xp.int32)
    gx = _gather(hm, px + 1, py, xp) - _gather(hm, px - 1, py, xp)
    gy = _gather(hm, px, py + 1, xp) - _gather(hm, px, py - 1, xp)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    offset = 0.25 * xp.stack([xp.sign(gx), xp.sign(gy)], axis=-1)
    return coords + xp.where(inside[..., None], offset, xp.zeros_like(offset))


def decode_heatmaps(heatmaps, method: str = "dark", *, blur_kernel: int = 11, xp=np):
    """Heatmaps -> keypoint coordinates in heatmap pixels and their confidences.

    Shapes: heatmaps (B, H, W, K) -> coords (B, K, 2) as (x, y), maxvals (B, K).
    method: "dark" (the official release: integer argmax, then `refine_dark`), "quarter" (argmax
    plus `refine_quarter`), or "argmax" (integer peak only). maxvals are always the un-blurred peak
    values. `xp` is the array namespace (numpy, or jax.numpy inside jit); numpy computes in float64.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown decode method {method!r}; expected one of {DECODE_METHODS}")
    hm = _to_float(heatmaps, xp)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be (B, H, W, K), got shape {tuple(hm.shape)}")
    coords, maxvals = heatmap_maxima(hm, xp)
    if method == "dark":
        coords = refine_dark(hm, coords, blur_kernel, xp)
    elif method == "quarter":
        coords = refine_quarter(hm, coords, xp)
    return coords, maxvals
