"""Top-down prediction: flip test -> heatmap decoding -> image coordinates (official release order).

`predict_fn` maps NHWC crops (B, H, W, 3) to heatmaps (B, h, w, K); the trainer passes a jitted
model apply that takes the loaders' uint8 RGB and normalises it on the device. This module never
imports models: it only calls what it is given.
"""

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.keypoints import codecs, geometry

PredictFn = Callable[[np.ndarray], np.ndarray]


def flip_back_average(heatmaps, flipped_heatmaps, flip_indices, shift: bool = False):
    """Average heatmaps with those of the mirrored input, mirrored back and channel-swapped.

    Shapes: heatmaps (B, h, w, K), flipped_heatmaps (B, h, w, K), flip_indices (K,) -> (B, h, w, K).
    Works on numpy and jax arrays alike. The AggPose release does no 1-pixel shift of the flipped maps
    (its SHIFT_HEATMAP option is never read); `shift=True` is HRNet's SHIFT_HEATMAP: the mirrored-back
    maps move one pixel right (column x takes column x - 1; column 0 keeps its value).
    """
    back = flipped_heatmaps[:, :, ::-1, :][..., np.asarray(flip_indices)]
    if shift:
        xp = jnp if isinstance(back, jax.Array) else np
        back = xp.concatenate([back[:, :, :1], back[:, :, :-1]], axis=2)
    return (heatmaps + back) * 0.5


def predict_heatmaps(predict_fn: PredictFn, images, flip_indices=None, shift: bool = False):
    """Run `predict_fn`, with the flip test when `flip_indices` is given.

    Shapes: images (B, H, W, 3), flip_indices (K,) or None -> heatmaps (B, h, w, K). The input is
    mirrored along W, predicted, mirrored back, its left/right channels swapped, and averaged with the
    plain prediction. Returns whatever array type `predict_fn` returns (numpy or jax).
    """
    heatmaps = predict_fn(images)
    if flip_indices is None:
        return heatmaps
    flipped = predict_fn(images[:, :, ::-1, :])
    return flip_back_average(heatmaps, flipped, flip_indices, shift)


@partial(jax.jit, static_argnames=("method", "blur_kernel"))
def decode_heatmaps_jax(heatmaps: jax.Array, method: str = "dark", blur_kernel: int = 11):
    """`keypoints.codecs.decode_heatmaps` on device, jitted (the same code, with jax.numpy).

    Shapes: heatmaps (B, h, w, K) -> coords (B, K, 2) heatmap pixels, maxvals (B, K). Computes in
    float32 unless 64-bit mode is on; agrees with the float64 numpy decode to float32 rounding.
    """
    return codecs.decode_heatmaps(heatmaps, method, blur_kernel=blur_kernel, xp=jnp)


def make_device_predict(
    predict_fn: Callable[[jax.Array], jax.Array], *, flip_indices=None, method: str = "dark"
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """A jitted images -> (heatmap coords, maxvals) function: flip test and decoding on device.

    Shapes: images (B, H, W, 3) -> coords (B, K, 2) heatmap pixels, maxvals (B, K). `predict_fn` must
    be traceable (e.g. a model apply with its parameters closed over). Map the coords to the image
    with `geometry.output_to_image_coords` on the host.
    """
    flip = None if flip_indices is None else np.asarray(flip_indices)

    @jax.jit
    def run(images):
        heatmaps = predict_heatmaps(predict_fn, images, flip)
        return codecs.decode_heatmaps(heatmaps, method, xp=jnp)

    return run


def keypoints_from_heatmaps(
    heatmaps: np.ndarray, centers, scales, *, method: str = "dark"
) -> tuple[np.ndarray, np.ndarray]:
    """Top-down crops' heatmaps -> keypoints in image pixels (the official host decode, float64).

    Shapes: heatmaps (B, h, w, K), centers (B, 2), scales (B, 2) -> coords (B, K, 2) float64 image
    pixels (x, y), maxvals (B, K) float64. Decoding (`codecs.decode_heatmaps`, DARK by default), then
    the inverse of the rotation-free crop transform with out = heatmap size.
    """
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"expected (B, h, w, K) heatmaps, got {heatmaps.shape}")
    coords, maxvals = codecs.decode_heatmaps(heatmaps, method)
    found_hw = (heatmaps.shape[1], heatmaps.shape[2])
    coords = geometry.output_to_image_coords(coords, centers, scales, output_hw=found_hw)
    return coords, maxvals


def predict_keypoints(
    predict_fn: PredictFn,
    images,
    centers,
    scales,
    *,
    flip_indices=None,
    heatmap_hw: tuple[int, int] | None = None,
    method: str = "dark",
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints in image pixels for a batch of top-down crops.

    Shapes: images (B, H, W, 3) as predict_fn takes them, centers (B, 2), scales (B, 2),
    flip_indices (K,) or None -> coords (B, K, 2) float64 image pixels (x, y), maxvals (B, K) float64.

    Order as in the official release: predict (+ flip test) -> `keypoints_from_heatmaps`.
    `heatmap_hw` (height, width) is checked against the predicted maps when given.
    """
    heatmaps = np.asarray(predict_heatmaps(predict_fn, images, flip_indices))
    if heatmaps.ndim != 4:
        raise ValueError(f"predict_fn must return (B, h, w, K) heatmaps, got {heatmaps.shape}")
    found_hw = (heatmaps.shape[1], heatmaps.shape[2])
    if heatmap_hw is not None and tuple(heatmap_hw) != found_hw:
        raise ValueError(
            f"heatmap_hw={tuple(heatmap_hw)} but predict_fn returned (h, w)={found_hw}"
        )
    return keypoints_from_heatmaps(heatmaps, centers, scales, method=method)
