"""Primitive layers shared by every model family: inits, dense/norm/conv forms, patch embeds, drop path.

Every module works on NHWC feature maps `(B, H, W, C)`; a map is the official `(B, N, C)` token sequence
with N in row-major (h, w) order, so Dense layers act on the last axis exactly like the official Linears.
Submodule names mirror the official PyTorch attribute paths (`proj`, `norm`, ...) so that weight
conversion is a rename table (see `models/weights/`).

Initialisation follows the official `_init_weights`: Linear weights truncated normal std 0.02 (the cut at
+-2 absolute is never reached), conv weights Normal(0, sqrt(2 / fan_out)) with
fan_out = kh * kw * out_channels / groups, LayerNorm 1/0, every bias 0.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# Linear weights: the official trunc_normal_(std=.02) truncates at +-2 absolute (100 std), i.e. never.
dense_kernel_init = nn.initializers.normal(stddev=0.02)

# LayerNorm eps of the official release: norm_layer (block norms, group norms) vs plain nn.LayerNorm
# (patch-embed norms, attention sequence-reduction norms).
NORM_EPS = 1e-6
PLAIN_LN_EPS = 1e-5


def conv_kernel_init(groups: int = 1) -> nn.initializers.Initializer:
    """Normal(0, sqrt(2 / fan_out)) for a flax conv kernel of shape `(kh, kw, in/groups, out)`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> jax.Array:
        fan_out = shape[0] * shape[1] * shape[3] // groups
        return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / fan_out)

    return init


def make_dense(features: int, name: str, dtype: Dtype, use_bias: bool = True) -> nn.Dense:
    """A Dense layer with the official Linear init (call inside a compact module)."""
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, kernel_init=dense_kernel_init, name=name
    )


def make_layer_norm(eps: float, name: str, dtype: Dtype) -> nn.LayerNorm:
    """A LayerNorm with the biased two-pass variance of torch and float32 statistics."""
    return nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour up-sampling by an integer factor. Shapes: (B, H, W, C) -> (B, fH, fW, C)."""
    if factor == 1:
        return x
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class OverlapPatchEmbed(nn.Module):
    """Strided conv (with bias, padding k//2) then LayerNorm eps 1e-5. (B, H, W, Ci) -> (B, H/s, W/s, C)."""

    features: int
    kernel_size: int = 3
    stride: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = StridedConv(self.features, self.kernel_size, self.stride, self.dtype, name="proj")(x)
        return make_layer_norm(PLAIN_LN_EPS, "norm", self.dtype)(x)


class PatchConv(nn.Module):
    """Non-overlapping conv (kernel = stride = r, no padding), with bias. (B, H, W, C) -> (B, H/r, W/r, F).

    Params as a flax Conv (`kernel` (r, r, C, F), `bias` (F,)), computed as patchify + matmul, which
    XLA differentiates far faster than a strided convolution on the CPU.
    """

    features: int
    patch: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        r = self.patch
        kernel = self.param("kernel", conv_kernel_init(), (r, r, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        # (B, H/r, r, W/r, r, C) -> (B, H/r, W/r, r, r, C): the (kh, kw, c) order of the kernel.
        x = x.reshape(batch, height // r, r, width // r, r, channels).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(batch, height // r, width // r, r * r * channels)
        return x @ kernel.reshape(r * r * channels, self.features) + bias


class StridedConv(nn.Module):
    """k x k conv, stride s, zero padding k//2, with bias. (B, H, W, Ci) -> (B, H/s, W/s, F).

    Params as a flax Conv (`kernel` (k, k, Ci, F), `bias` (F,)), computed as im2col (k*k strided
    slices) + one matmul: on the CPU, XLA differentiates this several times faster than the conv.
    """

    features: int
    kernel_size: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.stride
        channels = x.shape[-1]
        kernel = self.param("kernel", conv_kernel_init(), (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        pad = k // 2
        out_h = (x.shape[1] + 2 * pad - k) // s + 1
        out_w = (x.shape[2] + 2 * pad - k) // s + 1
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        cols = [
            padded[:, i : i + s * (out_h - 1) + 1 : s, j : j + s * (out_w - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]
        cols = jnp.concatenate(
            cols, axis=-1
        )  # (B, h, w, k*k*Ci) in the kernel's (kh, kw, ci) order
        return cols @ kernel.reshape(k * k * channels, self.features) + bias


def drop_path(
    x: jax.Array, rate: float | jax.Array, deterministic: bool, rng: jax.Array | None
) -> jax.Array:
    """Per-sample stochastic depth (Huang et al. 2016): zero whole samples, scale the kept by 1/keep.

    Shapes: x (B, ...) -> (B, ...). `rate` may be a traced scalar (under nn.scan); a static 0 is identity.
    """
    if deterministic or (isinstance(rate, int | float) and rate == 0.0):
        return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros((), x.dtype))
