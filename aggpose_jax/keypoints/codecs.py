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
