"""Pictures of predictions: poses drawn over an image, and a grid of heatmaps (matplotlib, Agg).

Figures are built with `matplotlib.figure.Figure` and an Agg canvas, never pyplot, so nothing here
touches global state or needs a display. Pictures go to a run's workdir: the bundled COCO images'
licences forbid committing derivatives of them.
"""

import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aggpose_jax.keypoints.metainfo import KeypointFormat


def limb_colors(num_limbs: int) -> np.ndarray:
    """One distinct RGBA colour per limb, spread around the hue circle. Shapes: -> (L, 4)."""
    return colormaps["hsv"](np.linspace(0.0, 1.0, num_limbs, endpoint=False))


def _save(fig: Figure, path: str | os.PathLike, dpi: float) -> None:
    dirname = os.path.dirname(os.fspath(path))
    if dirname:
        os.makedirs(dirname, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)


def render_poses(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    fmt: KeypointFormat,
    path: str | os.PathLike,
    *,
    score_thr: float = 0.3,
    line_width: float = 2.0,
    marker_size: float = 4.0,
) -> None:
    """Draw N poses over an image and save the picture at the image's own pixel size.

    Shapes: image_rgb (H, W, 3) uint8, keypoints (N, K, 2) image pixels (x, y), scores (N, K).
    A keypoint is drawn when its score is above `score_thr`, a limb (from `fmt.skeleton`, one colour
    per limb) when both its ends are. The saved picture is W x H pixels, so drawn coordinates are
    image coordinates.
    """
    image = np.asarray(image_rgb)
    h, w = image.shape[:2]
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, fmt.num_keypoints, 2)
    scores = np.asarray(scores, np.float64).reshape(-1, fmt.num_keypoints)
    dpi = 100.0
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(image, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    colors = limb_colors(max(len(fmt.skeleton), 1))
    shown = scores > score_thr
    for kp, ok in zip(keypoints, shown, strict=True):
        for color, (a, b) in zip(colors, fmt.skeleton, strict=False):
            if ok[a] and ok[b]:
                ax.plot(kp[[a, b], 0], kp[[a, b], 1], color=color, linewidth=line_width)
        ax.plot(kp[ok, 0], kp[ok, 1], "o", color="white", markersize=marker_size, markeredgewidth=0)
    _save(fig, path, dpi)


def render_heatmaps(
    heatmaps: np.ndarray,
    path: str | os.PathLike,
    names: Sequence[str] | None = None,
    *,
    ncols: int = 6,
    image_rgb: np.ndarray | None = None,
) -> None:
    """Save a grid with one panel per keypoint heatmap (and the crop first, when given).

    Shapes: heatmaps (h, w, K), names (K,), image_rgb (H, W, 3) uint8 or None. Each panel shows its
    map with a shared colour scale [min(0, lowest), highest] and is titled with its name and peak.
    """
    maps = np.asarray(heatmaps, np.float64)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must be (h, w, K), got shape {maps.shape}")
    k = maps.shape[-1]
    if names is not None and len(names) != k:
        raise ValueError(f"{len(names)} names for {k} heatmaps")
    panels = k + (image_rgb is not None)
    ncols = max(1, min(ncols, panels))
    nrows = -(-panels // ncols)
    fig = Figure(figsize=(2.0 * ncols, 2.4 * nrows), dpi=100)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    vmin, vmax = min(0.0, float(maps.min())), float(maps.max())
    i = 0
    if image_rgb is not None:
        axes[0].imshow(np.asarray(image_rgb))
        axes[0].set_title("input", fontsize=8)
        i = 1
    for j in range(k):
        ax = axes[i + j]
        ax.imshow(maps[..., j], cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        label = names[j] if names is not None else str(j)
        ax.set_title(f"{label} {maps[..., j].max():.2f}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[panels:]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path, 100)
