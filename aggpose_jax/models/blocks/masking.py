"""Masked-image modelling pieces (SimMIM: Xie et al., CVPR 2022): hide pixels, mask tokens, pixel heads.

SimMIM replaces the patch embeddings of masked positions by one learned token and keeps the whole
dense grid (MiT's overlapping stem, sequence-reduction convs and Mix-FFN depthwise convs need it). The
overlapping 7 x 7 stem would still read masked pixels through the borders of visible tokens, so the
pixels of masked units are zeroed before it (`mask_pixels`).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def upsample_mask(mask: jax.Array, factor: int) -> jax.Array:
    """(B, gh, gw) -> (B, gh f, gw f, 1) float32, each unit repeated over f x f positions."""
    m = jnp.repeat(jnp.repeat(mask.astype(jnp.float32), factor, axis=1), factor, axis=2)
    return m[..., None]


def mask_pixels(images: jax.Array, mask: jax.Array | None, unit: int) -> jax.Array:
    """(B, H, W, C) with the pixels of masked units (mask (B, H/unit, W/unit), 1 = masked) set to 0."""
    if mask is None:
        return images
    return images * (1.0 - upsample_mask(mask, unit)).astype(images.dtype)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """(B, h, w, f * f * C) -> (B, h f, w f, C); channels in (row offset, column offset, C) order."""
    b, h, w, c = x.shape
    out = c // (factor * factor)
    x = x.reshape(b, h, w, factor, factor, out).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, out)


class MaskTokens(nn.Module):
    """Tokens of masked units -> the learned `mask_token` (C,), Normal(0, 0.02) as SimMIM.

    Shapes: x (B, h, w, C), mask (B, gh, gw) or None (then x unchanged; the token is still created);
    `factor` = h / gh, token positions per mask unit along each side.
    """

    factor: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        token = self.param("mask_token", nn.initializers.normal(0.02), (x.shape[-1],))
        if mask is None:
            return x
        m = upsample_mask(mask, self.factor).astype(x.dtype)
        return x * (1 - m) + token.astype(x.dtype) * m


class PixelHead(nn.Module):
    """Linear (1 x 1 conv) to factor^2 * 3 channels + pixel shuffle. (B, h, w, C) -> (B, h f, w f, 3)."""

    factor: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Dense(self.factor * self.factor * 3, dtype=self.dtype, name="proj")(x)
        return pixel_shuffle(y, self.factor).astype(jnp.float32)
