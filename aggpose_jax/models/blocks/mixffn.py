"""Mix-FFN (SegFormer's `Mlp`): fc1 -> depthwise 3x3 conv -> exact GELU -> fc2, with a hand-written VJP.

Params mirror the official names (`fc1`, `dwconv/dwconv`, `fc2`). `mix_ffn` is the functional form with a
custom backward pass (XLA:CPU differentiates the depthwise conv slowly; see docs/benchmarks.md);
`MlpUpsample` is the official cross-resolution up-sampler (a Mix-FFN at the low resolution, then nearest).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.layers import (
    Dtype,
    conv_kernel_init,
    dense_kernel_init,
    upsample_nearest,
)

# Name scope of the depthwise conv's multiply-adds (`summary` counts them as MACs).
DEPTHWISE_SCOPE = "depthwise_conv3x3"


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
