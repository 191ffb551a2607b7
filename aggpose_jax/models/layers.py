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
    """3x3 depthwise correlation, zero padding 1, as nine shifted multiplies (XLA's CPU backend runs a
    grouped convolution's gradient ~5x slower). Shapes: x (B, H, W, C), kernel (3, 3, 1, C), bias (C,)."""
    height, width = x.shape[1:3]
    # The scope name lets summary.count_macs count these multiplies as conv MACs.
    with jax.named_scope(DEPTHWISE_SCOPE):
        padded = _pad1(x)
        out = bias
        for i in range(3):
            for j in range(3):
                out = out + padded[:, i : i + height, j : j + width, :] * kernel[i, j, 0]
    return out


def _depthwise_backward(
    x: jax.Array, kernel: jax.Array, grad: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Gradients of `_depthwise_forward` w.r.t. x, kernel and bias, given the output cotangent."""
    height, width = x.shape[1:3]
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


def gelu_exact(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU (Hendrycks & Gimpel 2016) in torch's formula x (1 + erf(x / sqrt 2)) / 2.

    Shapes: any -> same. `jax.nn.gelu(approximate=False)` goes through erfc, whose exp-and-divide
    expansion XLA's CPU backend recomputes in every consumer fusion.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_derivative(x: jax.Array) -> jax.Array:
    """d gelu / dx = Phi(x) + x phi(x). Shapes: any -> same."""
    cdf = 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return cdf + x * pdf


def _mix_ffn_forward(x, w1, b1, dw_kernel, dw_bias, w2, b2):
    hidden = x @ w1 + b1
    return gelu_exact(_depthwise_forward(hidden, dw_kernel, dw_bias)) @ w2 + b2, hidden


@jax.custom_vjp
def mix_ffn(
    x: jax.Array, w1: jax.Array, b1: jax.Array, dw_kernel: jax.Array, dw_bias: jax.Array,
    w2: jax.Array, b2: jax.Array,
) -> jax.Array:  # fmt: skip
    """fc1 -> 3x3 depthwise conv (zero padding 1) -> exact GELU -> fc2, with a hand-written gradient.

    Shapes: x (B, H, W, C), w1 (C, F), b1 (F,), dw_kernel (3, 3, 1, F), dw_bias (F,), w2 (F, O),
    b2 (O,) -> (B, H, W, O). The gradient keeps only x and the fc1 output and recomputes the conv
    and the GELU: left to autodiff, XLA's CPU backend recomputed the nine-tap sum and the erf inside
    every consumer fusion (the GELU, its derivative, the residuals nn.scan stacks), and fused the
    cotangent's producer into each of the nine shifted reads of the conv's transpose.
    """
    return _mix_ffn_forward(x, w1, b1, dw_kernel, dw_bias, w2, b2)[0]


def _flat(x: jax.Array) -> jax.Array:
    """(..., C) -> (N, C)."""
    return x.reshape(-1, x.shape[-1])


def _mix_ffn_fwd(x, w1, b1, dw_kernel, dw_bias, w2, b2):
    out, hidden = _mix_ffn_forward(x, w1, b1, dw_kernel, dw_bias, w2, b2)
    return out, (x, hidden, w1, dw_kernel, dw_bias, w2)


def _mix_ffn_bwd(res, grad):
    x, hidden, w1, dw_kernel, dw_bias, w2 = res
    batch_axes = tuple(range(grad.ndim - 1))
    conv = _depthwise_forward(hidden, dw_kernel, dw_bias)
    # Weight gradients as (G^T A)^T: XLA's CPU dot wants the contracted axis last on both sides, so
    # the transposed copy is then of the narrower operand (grad), not of the 4x wider activation.
    d_w2 = (_flat(grad).T @ _flat(gelu_exact(conv))).T
    d_conv = (grad @ w2.T) * _gelu_derivative(conv)
    d_hidden, d_dw_kernel, d_dw_bias = _depthwise_backward(hidden, dw_kernel, d_conv)
    d_w1 = _flat(x).T @ _flat(d_hidden)
    return (
        d_hidden @ w1.T, d_w1.astype(w1.dtype), jnp.sum(d_hidden, axis=batch_axes).astype(w1.dtype),
        d_dw_kernel, d_dw_bias, d_w2.astype(w2.dtype), jnp.sum(grad, axis=batch_axes).astype(w2.dtype),
    )  # fmt: skip


mix_ffn.defvjp(_mix_ffn_fwd, _mix_ffn_bwd)


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


class _DenseParams(nn.Module):
    """The params of an official Linear as a flax Dense holds them: kernel (in, F), bias (F,)."""

    features: int

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", dense_kernel_init, (in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


class _DepthwiseParams(nn.Module):
    """The params of a 3x3 depthwise conv as a flax Conv holds them: kernel (3, 3, 1, C), bias (C,)."""

    @nn.compact
    def __call__(self, channels: int) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", conv_kernel_init(groups=channels), (3, 3, 1, channels))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (channels,))


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


class _DWConvParams(nn.Module):
    """The official depthwise-conv wrapper, whose conv is itself named `dwconv`."""

    @nn.compact
    def __call__(self, channels: int) -> tuple[jax.Array, jax.Array]:
        return _DepthwiseParams(name="dwconv")(channels)


class MixFFN(nn.Module):
    """The official `Mlp`: fc1 -> depthwise 3x3 conv -> exact GELU -> fc2. (B, H, W, Ci) -> (B, H, W, Co).

    Params `fc1`, `dwconv/dwconv` (the official wrapper's conv is itself named `dwconv`) and `fc2`,
    computed by `mix_ffn`. No residual inside; dropout rates are 0 in every official config.
    """

    hidden_features: int
    out_features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w1, b1 = _DenseParams(self.hidden_features, name="fc1")(x.shape[-1])
        dw_kernel, dw_bias = _DWConvParams(name="dwconv")(self.hidden_features)
        w2, b2 = _DenseParams(self.out_features, name="fc2")(self.hidden_features)
        args = nn.dtypes.promote_dtype(x, w1, b1, dw_kernel, dw_bias, w2, b2, dtype=self.dtype)
        return mix_ffn(*args)


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
