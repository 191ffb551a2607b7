"""The models' input convention: uint8 RGB crops, normalised on the device.

Host pipelines hand over uint8 RGB (a quarter of the bytes of float32, and no per-pixel float work on
the host CPU, which feeds the accelerators); the jitted train and predict steps normalise with the
ImageNet statistics the MiT backbone was pretrained with, as the official `transforms.Normalize` does
on the host: (v / 255 - mean) / std per channel.
"""

import jax
import jax.numpy as jnp
import numpy as np

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


def normalize_images(images: jax.Array | np.ndarray) -> jax.Array:
    """(B, H, W, 3) uint8 RGB -> (B, H, W, 3) float32 (v / 255 - MEAN_RGB) / STD_RGB.

    Raises TypeError for any other dtype: a float batch here would be normalised twice or not at all.
    """
    if images.dtype != jnp.uint8:
        raise TypeError(f"expected uint8 RGB images, got {images.dtype}")
    scale = 1.0 / (255.0 * np.asarray(STD_RGB))
    shift = np.asarray(MEAN_RGB) / np.asarray(STD_RGB)
    return images.astype(jnp.float32) * scale.astype(np.float32) - shift.astype(np.float32)
