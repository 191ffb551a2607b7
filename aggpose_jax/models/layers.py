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
DEPTHWISE_SCOPE = "depthwise_conv3x3"


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


def _pad1(x: jax.Array) -> jax.Array:
    """Zero-pads H and W by one. Shapes: (B, H, W, C) -> (B, H+2, W+2, C)."""
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _depthwise_forward(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    height, width = x.shape[1:3]
    # The scope name lets summary.count_macs count these multiplies as conv MACs.
    with jax.named_scope(DEPTHWISE_SCOPE):
        padded = _pad1(x)
        out = bias
        for i in range(3):
            for j in range(3):
                out = out + padded[:, i : i + height, j : j + width, :] * kernel[i, j, 0]
    return out


@jax.custom_vjp
def depthwise_conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """3x3 depthwise correlation, zero padding 1. Shapes: x (B, H, W, C), kernel (3, 3, 1, C), bias (C,).

    Returns (B, H, W, C). Computed as nine shifted multiplies: XLA's CPU backend runs the gradient of a
    grouped convolution very slowly (~5x slower at AggPose sizes). The gradient is hand-written too:
    left to autodiff, XLA fuses the producer of the cotangent (GELU derivative, fc2 transpose) into
    each of the nine shifted reads of the transposed pads, which made one Mix-FFN backward ~4x slower.
    """
    return _depthwise_forward(x, kernel, bias)


def _depthwise_fwd(x, kernel, bias):
    return _depthwise_forward(x, kernel, bias), (x, kernel)


def _depthwise_bwd(res, grad):
    x, kernel = res
    height, width = x.shape[1:3]
    # Materialise the cotangent once so that nothing upstream is recomputed per tap.
    grad = jax.lax.optimization_barrier(grad)
    grad_padded, x_padded = _pad1(grad), _pad1(x)
    # out[h, w] = sum_ij x_pad[h + i, w + j] k[i, j]  =>  dx[h, w] = sum_ij g_pad[h + 2 - i, w + 2 - j] k[i, j].
    dx = jnp.zeros_like(x)
    for i in range(3):
        for j in range(3):
            dx = (
                dx
                + grad_padded[:, 2 - i : 2 - i + height, 2 - j : 2 - j + width, :] * kernel[i, j, 0]
            )
    taps = [
        jnp.sum(x_padded[:, i : i + height, j : j + width, :] * grad, axis=(0, 1, 2))
        for i in range(3)
        for j in range(3)
    ]
    dkernel = jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)
    return dx, dkernel, jnp.sum(grad, axis=(0, 1, 2)).astype(kernel.dtype)


depthwise_conv3x3.defvjp(_depthwise_fwd, _depthwise_bwd)


@jax.custom_vjp
def gelu_exact(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU (Hendrycks & Gimpel 2016). Shapes: any -> same.

    The forward is torch's formula x (1 + erf(x / sqrt 2)) / 2: `jax.nn.gelu(approximate=False)`
    goes through erfc, whose exp-and-divide expansion XLA's CPU backend recomputes in every consumer
    fusion (a sixth of the AggPose-L training step). The hand-written derivative Phi(x) + x phi(x) is
    evaluated once per element from the saved input (autodiff's erf/exp chain got fused into the
    depthwise backward and recomputed there).
    """
    return _gelu_erf(x)


def _gelu_erf(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_fwd(x):
    return _gelu_erf(x), x


def _gelu_bwd(x, grad):
    cdf = 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return (grad * (cdf + x * pdf).astype(grad.dtype),)


gelu_exact.defvjp(_gelu_fwd, _gelu_bwd)


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


class DepthwiseConv3x3(nn.Module):
    """3x3 depthwise conv, stride 1, zero padding 1, with bias. (B, H, W, C) -> (B, H, W, C).

    Params as a flax depthwise Conv (`kernel` (3, 3, 1, C), `bias` (C,)), computed as a sum of nine
    shifted multiplies (see `depthwise_conv3x3`).
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", conv_kernel_init(groups=channels), (3, 3, 1, channels))
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return depthwise_conv3x3(x, kernel, bias)


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


class DWConv(nn.Module):
    """The official depthwise-conv wrapper, whose conv is itself named `dwconv`."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return DepthwiseConv3x3(self.dtype, name="dwconv")(x)


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
        x = gelu_exact(x)
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
