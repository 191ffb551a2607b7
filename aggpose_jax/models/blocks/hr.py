"""Convolutional pieces of HRNet-style networks: BatchNorm with PyTorch semantics, conv + BN, residual
blocks, the strided down-sampling chain.

Every module works on NHWC maps. Submodule names are the official PyTorch attribute names (`conv1`,
`bn1`, `downsample/0`; a `Sequential(conv, bn, relu)` is `0` (conv) and `1` (BN)), so that weight
conversion is a rename table (models/weights/hrnet.py). Convolutions have no bias (a BN follows);
kernels are initialised Normal(0, 0.001) as in the official pose HRNet, BN scale 1 and bias 0.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

BN_MOMENTUM = 0.1  # PyTorch convention: new = (1 - m) * old + m * batch.
BN_EPS = 1e-5
conv_init = nn.initializers.normal(stddev=0.001)


class BatchNorm(nn.Module):
    """BatchNorm2d with PyTorch's semantics. Shapes: x (B, H, W, C) -> (B, H, W, C) in `dtype`.

    Training normalises with the biased batch variance and updates the running statistics with the
    unbiased one (n / (n - 1), as torch does; flax's nn.BatchNorm keeps the biased one), momentum 0.1.
    Eval uses the running statistics. Statistics and normalisation run in float32. Variables: params
    `scale`, `bias`; batch_stats `mean`, `var` (torch's weight, bias, running_mean, running_var).
    """

    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (channels,))
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        xf = x.astype(jnp.float32)
        if train:
            mean = xf.mean(axis=(0, 1, 2))
            var = jnp.square(xf - mean).mean(axis=(0, 1, 2))
            if not self.is_initializing():
                n = xf.size // channels
                m = self.momentum
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        return ((xf - mean) * mul + bias).astype(self.dtype)


def conv(
    features: int, kernel_size: int, stride: int, name: str, dtype: Dtype, use_bias: bool = False
) -> nn.Conv:
    """A k x k conv with PyTorch's symmetric zero padding k // 2 (flax's SAME pads strided convs
    asymmetrically). Call inside a compact module."""
    pad = kernel_size // 2
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=conv_init,
        name=name,
    )


class ConvBN(nn.Module):
    """Sequential(conv k x k stride s, BN[, ReLU]): modules `0` and `1`. (B, H, W, Ci) -> (B, H/s, W/s, F)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    relu: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv(self.features, self.kernel_size, self.stride, "0", self.dtype)(x)
        x = BatchNorm(dtype=self.dtype, name="1")(x, train)
        return nn.relu(x) if self.relu else x


class DownChain(nn.Module):
    """HRNet's down-sampling path: a Sequential of ConvBN(3x3, stride 2), modules `0`, `1`, ...

    Shapes: (B, H, W, Ci) -> (B, H/2^n, W/2^n, features[-1]) with n = len(features); step k maps to
    features[k]. Every step but the last has a ReLU; the last one too when `relu_last` (transitions).
    """

    features: tuple[int, ...]
    relu_last: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        last = len(self.features) - 1
        for k, f in enumerate(self.features):
            relu = k < last or self.relu_last
            x = ConvBN(f, 3, 2, relu, self.dtype, name=str(k))(x, train)
        return x


class BasicBlock(nn.Module):
    """ResNet BasicBlock (expansion 1): two 3x3 conv + BN, residual, ReLU. (B, H, W, C) -> (B, H, W, F).

    A `downsample` ConvBN 1x1 projects the residual when the channels change (never in HRNet).
    """

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dt = self.dtype
        y = nn.relu(
            BatchNorm(dtype=dt, name="bn1")(conv(self.features, 3, 1, "conv1", dt)(x), train)
        )
        y = BatchNorm(dtype=dt, name="bn2")(conv(self.features, 3, 1, "conv2", dt)(y), train)
        if x.shape[-1] != self.features:
            x = ConvBN(self.features, 1, 1, False, dt, name="downsample")(x, train)
        return nn.relu(y + x.astype(y.dtype))


class Bottleneck(nn.Module):
    """ResNet Bottleneck (expansion 4): 1x1, 3x3, 1x1 conv + BN, residual, ReLU.

    Shapes: (B, H, W, C) -> (B, H, W, 4 * planes); a `downsample` ConvBN 1x1 projects the residual
    when C != 4 * planes (HRNet's first layer1 block).
    """

    planes: int
    dtype: Dtype = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dt, p = self.dtype, self.planes
        y = nn.relu(BatchNorm(dtype=dt, name="bn1")(conv(p, 1, 1, "conv1", dt)(x), train))
        y = nn.relu(BatchNorm(dtype=dt, name="bn2")(conv(p, 3, 1, "conv2", dt)(y), train))
        y = BatchNorm(dtype=dt, name="bn3")(conv(p * 4, 1, 1, "conv3", dt)(y), train)
        if x.shape[-1] != p * 4:
            x = ConvBN(p * 4, 1, 1, False, dt, name="downsample")(x, train)
        return nn.relu(y + x.astype(y.dtype))


class Blocks(nn.Module):
    """A Sequential of `num_blocks` residual blocks, modules `0`, `1`, ... (a ResNet layer, an HRNet
    branch). `block` is "basic" (features = output channels) or "bottleneck" (features = planes, the
    output has 4 x features). Shapes: (B, H, W, C) -> (B, H, W, features * expansion)."""

    block: str
    features: int
    num_blocks: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kind = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
        for k in range(self.num_blocks):
            x = kind(self.features, self.dtype, name=str(k))(x, train)
        return x
