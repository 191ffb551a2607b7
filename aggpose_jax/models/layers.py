"""Building blocks shared by the MiT encoder, AggPose and the SegFormer pose baseline.

Every module works on NHWC feature maps `(B, H, W, C)`; a map is the official `(B, N, C)` token sequence
with N in row-major (h, w) order, so Dense layers act on the last axis exactly like the official Linears.
Submodule names mirror the official PyTorch attribute paths (`proj`, `norm`, `fc1`, `dwconv.dwconv`,
`fc2`, `mlp`) so that weight conversion is a rename table (see `convert.py`).

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
        pad = self.kernel_size // 2
        x = nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            strides=(self.stride, self.stride),
            padding=((pad, pad), (pad, pad)),
            dtype=self.dtype,
            kernel_init=conv_kernel_init(),
            name="proj",
        )(x)
        return make_layer_norm(PLAIN_LN_EPS, "norm", self.dtype)(x)


class DWConv(nn.Module):
    """3x3 depthwise conv with bias; the official wrapper whose conv is itself named `dwconv`."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        return nn.Conv(
            channels,
            (3, 3),
            padding=((1, 1), (1, 1)),
            feature_group_count=channels,
            dtype=self.dtype,
            kernel_init=conv_kernel_init(groups=channels),
            name="dwconv",
        )(x)


class MixFFN(nn.Module):
    """The official `Mlp`: fc1 -> depthwise 3x3 conv -> exact GELU -> fc2. (B, H, W, Ci) -> (B, H, W, Co).

    No residual inside; dropout rates are 0 in every official config, so there is none.
    """

    hidden_features: int
    out_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = make_dense(self.hidden_features, "fc1", self.dtype)(x)
        x = DWConv(self.dtype, name="dwconv")(x)
        # Exact erf GELU: the tanh approximation moves a small model's output by ~3e-3.
        x = jax.nn.gelu(x, approximate=False)
        return make_dense(self.out_features, "fc2", self.dtype)(x)


class MlpUpsample(nn.Module):
    """Mix-FFN at the source (low) resolution, then nearest up-sampling. (B, h, w, Ci) -> (B, sh, sw, Co)."""

    features: int
    factor: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = MixFFN(self.features, self.features, self.dtype, name="mlp")(x)
        return upsample_nearest(x, self.factor)


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
