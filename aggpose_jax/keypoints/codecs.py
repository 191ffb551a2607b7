"""Heatmap codecs: Gaussian target encoding (official release, DARK-style unbiased) and decoding.

`HeatmapCodec` is the one configuration target generation and decoding share (input and heatmap
sizes, sigma, decode method): the data pipelines encode with it, the evaluation decodes with it. The
loose functions below are its implementation.
"""

import dataclasses

import numpy as np

from aggpose_jax.keypoints import geometry


def encode_heatmaps(
    keypoints: np.ndarray, visibility: np.ndarray, *, heatmap_hw: tuple[int, int], sigma: float
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
    h, w = heatmap_hw
    mu = np.asarray(keypoints, dtype=np.float64)
    weight = (np.asarray(visibility, dtype=np.float64) > 0).astype(np.float32)
    # int() truncates toward zero, as the official Python int() does.
    ul = np.trunc(mu - 3 * sigma)
    br = np.trunc(mu + 3 * sigma + 1)
    outside = (ul[:, 0] >= w) | (ul[:, 1] >= h) | (br[:, 0] < 0) | (br[:, 1] < 0)
    weight[outside] = 0.0
    # The Gaussian is separable: two small float64 tables, one float64 outer product rounded once
    # into float32, written straight into the (H, W, K) layout: the official float32 values (the
    # float64 product of the two factors rounds like the float64 exp of the sum). Rounding each
    # factor to float32 first made the far tails float32 denormals inside the multiply, which
    # cost 2x. A zero-weight joint's column is zero.
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    gx = np.exp(-((xs[:, None] - mu[None, :, 0]) ** 2) / (2 * sigma**2))  # (W, K)
    gy = np.exp(-((ys[:, None] - mu[None, :, 1]) ** 2) / (2 * sigma**2))  # (H, K)
    gy *= weight > 0.5
    heatmaps = np.empty((h, w, len(mu)), np.float32)
    np.multiply(gy[:, None, :], gx[None, :, :], out=heatmaps, casting="same_kind")
    return heatmaps, weight


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


def _channels_first(heatmaps, xp):
    """(B, H, W, K) -> float (B, K, H, W): the decoders work per map, on the last two axes."""
    return xp.moveaxis(_to_float(heatmaps, xp), -1, 1)


def _maxima(maps, xp):
    """maps (B, K, H, W) -> integer peaks (B, K, 2) as (x, y), with (0, 0) where max <= 0; maxvals."""
    b, k, h, w = maps.shape
    flat = xp.reshape(maps, (b, k, h * w))
    idx = xp.argmax(flat, axis=-1)
    maxvals = xp.max(flat, axis=-1)
    coords = xp.stack([idx % w, idx // w], axis=-1).astype(maps.dtype)
    return xp.where((maxvals > 0)[..., None], coords, xp.zeros_like(coords)), maxvals


def heatmap_maxima(heatmaps, xp=np):
    """Integer argmax per heatmap and its value, as the official release reads the peak.

    Shapes: heatmaps (B, H, W, K) -> coords (B, K, 2) as (x, y) heatmap pixels, maxvals (B, K).
    x = idx mod W, y = idx div W of the first maximum in row-major order; a heatmap whose maximum is
    <= 0 gets the coordinate (0, 0).
    """
    return _maxima(_channels_first(heatmaps, xp), xp)


def _gaussian_band(n: int, kernel_size: int) -> np.ndarray:
    """(n, n) matrix of a zero-padded 1-D Gaussian blur: band[i, j] = g[j - i + r] for |j - i| <= r.

    g has OpenCV's default sigma for the size, 0.3 ((k - 1) / 2 - 1) + 0.8 (2.0 for k = 11).
    """
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1.0) + 0.8
    r = (kernel_size - 1) // 2
    gauss = lambda d: np.exp(-(d.astype(np.float64) ** 2) / (2.0 * sigma**2))  # noqa: E731
    offset = np.arange(n)[None, :] - np.arange(n)[:, None]
    band = np.where(np.abs(offset) <= r, gauss(offset), 0.0)
    return band / gauss(np.arange(-r, r + 1)).sum()


def _blur(maps, kernel_size: int, xp):
    """maps (B, K, H, W) -> blurred and rescaled (B, K, H, W); see `blur_heatmaps`."""
    _, _, h, w = maps.shape
    gy = xp.asarray(_gaussian_band(h, kernel_size), dtype=maps.dtype)
    gx = xp.asarray(_gaussian_band(w, kernel_size), dtype=maps.dtype)
    # Two banded matmuls (the separable blur with its zero padding built in) are BLAS/MXU work;
    # full precision on accelerators, whose default float32 matmul may round to bfloat16/TF32.
    mm = xp.matmul if xp is np else (lambda a, b: xp.matmul(a, b, precision="highest"))
    blurred = mm(mm(gy, maps), gx.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = xp.max(maps, axis=(2, 3)) / xp.max(blurred, axis=(2, 3))  # (B, K)
    return blurred * ratio[..., None, None]


def blur_heatmaps(heatmaps, kernel_size: int = 11, xp=np):
    """DARK's smoothing: a zero-padded Gaussian blur, rescaled to each map's pre-blur maximum.

    Shapes: heatmaps (B, H, W, K) -> (B, H, W, K). Equals cv2.GaussianBlur((k, k), sigma 0) on a copy
    padded with (k - 1) / 2 zeros on every side, cropped back; the pad is as wide as the kernel's
    radius, so OpenCV's own border rule never reaches the kept pixels. An all-zero map gives NaN (0/0),
    as in the official release; its coordinate is (0, 0) and is never refined.
    """
    return xp.moveaxis(_blur(_channels_first(heatmaps, xp), kernel_size, xp), 1, -1)


def _sampler(maps, px, py, xp):
    """A function (ox, oy) -> maps (B, K, H, W) at (px + ox, py + oy) (B, K), clipped into the map."""
    b, k, h, w = maps.shape
    flat = xp.reshape(maps, (b, k, h * w))

    def at(ox: int, oy: int):
        idx = xp.clip(py + oy, 0, h - 1) * w + xp.clip(px + ox, 0, w - 1)
        return xp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]

    return at


def _refine_dark(maps, coords, kernel_size: int, xp):
    _, _, h, w = maps.shape
    px = coords[..., 0].astype(xp.int32)
    py = coords[..., 1].astype(xp.int32)
    blurred_at = _sampler(_blur(maps, kernel_size, xp), px, py, xp)
    # The clamp and log are elementwise, so they are applied to the 13 samples only.
    at = lambda ox, oy: xp.log(xp.maximum(blurred_at(ox, oy), 1e-10))  # noqa: E731
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
    maps = _channels_first(heatmaps, xp)
    return _refine_dark(maps, xp.asarray(coords, dtype=maps.dtype), kernel_size, xp)


def _refine_quarter(maps, coords, xp):
    _, _, h, w = maps.shape
    px = coords[..., 0].astype(xp.int32)
    py = coords[..., 1].astype(xp.int32)
    at = _sampler(maps, px, py, xp)
    gx, gy = at(1, 0) - at(-1, 0), at(0, 1) - at(0, -1)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    offset = 0.25 * xp.stack([xp.sign(gx), xp.sign(gy)], axis=-1)
    return coords + xp.where(inside[..., None], offset, xp.zeros_like(offset))


def refine_quarter(heatmaps, coords, xp=np):
    """The classic quarter-pixel shift towards the higher neighbour (Simple Baselines, HRNet).

    Shapes: heatmaps (B, H, W, K), coords (B, K, 2) integer peaks -> (B, K, 2). Applied only when
    1 < px < W - 1 and 1 < py < H - 1, as those releases do: coord += 0.25 sign(grad) on the raw map.
    """
    maps = _channels_first(heatmaps, xp)
    return _refine_quarter(maps, xp.asarray(coords, dtype=maps.dtype), xp)


def decode_heatmaps(heatmaps, method: str = "dark", *, blur_kernel: int = 11, xp=np):
    """Heatmaps -> keypoint coordinates in heatmap pixels and their confidences.

    Shapes: heatmaps (B, H, W, K) -> coords (B, K, 2) as (x, y), maxvals (B, K).
    method: "dark" (the official release: integer argmax, then `refine_dark`), "quarter" (argmax
    plus `refine_quarter`), or "argmax" (integer peak only). maxvals are always the un-blurred peak
    values. `xp` is the array namespace (numpy, or jax.numpy inside jit); numpy computes in float64.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown decode method {method!r}; expected one of {DECODE_METHODS}")
    if len(heatmaps.shape) != 4:
        raise ValueError(f"heatmaps must be (B, H, W, K), got shape {tuple(heatmaps.shape)}")
    maps = _channels_first(heatmaps, xp)
    coords, maxvals = _maxima(maps, xp)
    if method == "dark":
        coords = _refine_dark(maps, coords, blur_kernel, xp)
    elif method == "quarter":
        coords = _refine_quarter(maps, coords, xp)
    return coords, maxvals


@dataclasses.dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints in input (crop) pixels <-> Gaussian heatmap targets, and heatmaps -> keypoints.

    input_hw: the crop (height, width); heatmap_hw: the heatmap (height, width), input_hw divided by
    one integer `stride` on both axes; sigma: the targets' Gaussian, in heatmap pixels; method:
    "dark" | "quarter" | "argmax" (`decode_heatmaps`); blur_kernel: DARK's blur size (odd).
    Input and heatmap pixels are two crops of the same (c, s, r) (`geometry.resize_crop_points`),
    so `encode` gives the targets of the official release, which maps image points with
    T(out=heatmap size) (to float64 rounding of the point).
    """

    input_hw: tuple[int, int]
    heatmap_hw: tuple[int, int]
    sigma: float = 2.0
    method: str = "dark"
    blur_kernel: int = 11

    def __post_init__(self):
        object.__setattr__(self, "input_hw", tuple(int(v) for v in self.input_hw))
        object.__setattr__(self, "heatmap_hw", tuple(int(v) for v in self.heatmap_hw))
        (ih, iw), (hh, hw) = self.input_hw, self.heatmap_hw
        if min(ih, iw, hh, hw) < 2:
            raise ValueError(
                f"sizes must be >= 2: input_hw={self.input_hw}, heatmap_hw={self.heatmap_hw}"
            )
        if ih % hh or iw % hw or ih // hh != iw // hw:
            raise ValueError(
                f"input_hw={self.input_hw} must be heatmap_hw={self.heatmap_hw} times one integer "
                "stride on both axes"
            )
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.method not in DECODE_METHODS:
            raise ValueError(
                f"unknown decode method {self.method!r}; expected one of {DECODE_METHODS}"
            )
        if self.blur_kernel < 3 or self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd and >= 3, got {self.blur_kernel}")

    @property
    def stride(self) -> int:
        """Input pixels per heatmap pixel (4 for 256x192 -> 64x48)."""
        return self.input_hw[0] // self.heatmap_hw[0]

    def to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """Input pixels -> heatmap pixels. Shapes: (..., 2) -> (..., 2) float64, (x, y)."""
        return geometry.resize_crop_points(points, from_hw=self.input_hw, to_hw=self.heatmap_hw)

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Heatmap pixels -> input pixels. Shapes: (..., 2) -> (..., 2) float64, (x, y)."""
        return geometry.resize_crop_points(points, from_hw=self.heatmap_hw, to_hw=self.input_hw)

    def encode(
        self, keypoints: np.ndarray, visibility: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Targets of one person. Shapes: keypoints (K, 2) input pixels (x, y), visibility (K,) ->
        heatmaps (h, w, K) float32, target_weight (K,) float32 (`encode_heatmaps`)."""
        return encode_heatmaps(
            self.to_heatmap(keypoints), visibility, heatmap_hw=self.heatmap_hw, sigma=self.sigma
        )

    def decode(self, heatmaps, xp=np):
        """Shapes: heatmaps (B, h, w, K) -> coords (B, K, 2) heatmap pixels (x, y), maxvals (B, K).

        `decode_heatmaps` with this codec's method; `xp` numpy (float64) or jax.numpy (traceable).
        Raises ValueError for heatmaps of another size than heatmap_hw.
        """
        if len(heatmaps.shape) == 4 and tuple(heatmaps.shape[1:3]) != self.heatmap_hw:
            raise ValueError(
                f"heatmaps of shape {tuple(heatmaps.shape)}, expected (B, {self.heatmap_hw[0]}, "
                f"{self.heatmap_hw[1]}, K)"
            )
        return decode_heatmaps(heatmaps, self.method, blur_kernel=self.blur_kernel, xp=xp)
