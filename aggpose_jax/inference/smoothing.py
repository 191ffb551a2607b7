"""Temporal smoothing of keypoint sequences, with mmpose's filters and defaults.

    one_euro   online: the 1-Euro filter (Casiez, Roussel and Vogel, CHI 2012), one frame a step,
               min_cutoff 0.004, beta 0.7, d_cutoff 1 (mmpose's OneEuroFilter config)
    savgol     offline: Savitzky-Golay (Savitzky and Golay, 1964), window 11, polynomial order 2
    gaussian   offline: a Gaussian of sigma 4 over a window of 11 frames (mmpose's GaussianFilter)

Filters act on the coordinates only, along time, each person slot separately; frames where a slot
is empty (NaN) split its sequence into runs that are smoothed apart and stay NaN. The raw values are
kept beside the smoothed ones by the writers.
"""

from collections.abc import Callable

import numpy as np
from scipy import ndimage, signal

METHODS = ("none", "one_euro", "savgol", "gaussian")


def _alpha(cutoff, t_e: float):
    r = 2.0 * np.pi * cutoff * t_e
    return r / (r + 1.0)


def one_euro(
    x: np.ndarray, min_cutoff: float = 0.004, beta: float = 0.7, d_cutoff: float = 1.0
) -> np.ndarray:
    """The 1-Euro filter along axis 0, one frame per step (t_e = 1), as mmpose runs it online.

    Shapes: x (T, ...) -> (T, ...). x_hat[0] = x[0]; then dx = x[t] - x_hat[t-1], its smoothed rate
    dx_hat = a(d_cutoff) dx + (1 - a(d_cutoff)) dx_hat[t-1], cutoff = min_cutoff + beta |dx_hat|,
    x_hat[t] = a(cutoff) x[t] + (1 - a(cutoff)) x_hat[t-1], with a(f) = 2 pi f / (2 pi f + 1).
    """
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    out[0], dx_prev = x[0], np.zeros_like(x[0])
    a_d = _alpha(d_cutoff, 1.0)
    for t in range(1, len(x)):
        dx_hat = a_d * (x[t] - out[t - 1]) + (1.0 - a_d) * dx_prev
        a = _alpha(min_cutoff + beta * np.abs(dx_hat), 1.0)
        out[t] = a * x[t] + (1.0 - a) * out[t - 1]
        dx_prev = dx_hat
    return out


def savgol(x: np.ndarray, window: int = 11, polyorder: int = 2) -> np.ndarray:
    """Savitzky-Golay along axis 0 (scipy, mode "interp": the ends are the fitted polynomial).

    Shapes: (T, ...) -> (T, ...). A sequence shorter than the window uses the longest odd window it
    holds; one too short for the polynomial comes back unchanged. Reproduces any polynomial of
    degree <= polyorder exactly.
    """
    x = np.asarray(x, np.float64)
    window = min(window, len(x) if len(x) % 2 else len(x) - 1)
    if window <= polyorder:
        return x.copy()
    return signal.savgol_filter(x, window, polyorder, axis=0, mode="interp")


def gaussian(x: np.ndarray, window: int = 11, sigma: float = 4.0) -> np.ndarray:
    """A Gaussian along axis 0 over `window` frames (radius (window - 1) / 2), ends repeated.

    Shapes: (T, ...) -> (T, ...).
    """
    x = np.asarray(x, np.float64)
    radius = (window - 1) // 2
    return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest", radius=radius)


FILTERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "one_euro": one_euro, "savgol": savgol, "gaussian": gaussian,
}  # fmt: skip


def _runs(finite: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of True in a (T,) bool array, ends exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def smooth_sequence(keypoints: np.ndarray, method: str) -> np.ndarray:
    """Smoothed coordinates of a pose sequence; scores are left as they are.

    Shapes: keypoints (T, N, K, 3) pixels (x, y, score), NaN where a slot is empty -> (T, N, K, 3).
    """
    if method not in METHODS:
        raise ValueError(f"unknown smoothing {method!r}; known: {', '.join(METHODS)}")
    out = np.array(keypoints, np.float64, copy=True)
    if method == "none":
        return out
    fn = FILTERS[method]
    for n in range(out.shape[1]):
        finite = np.isfinite(out[:, n, :, :2]).all(axis=(1, 2))
        for start, end in _runs(finite):
            out[start:end, n, :, :2] = fn(out[start:end, n, :, :2])
    return out
