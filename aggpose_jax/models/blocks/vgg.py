"""Plain convolution pieces of the bottom-up networks (OpenPose, MLN): the VGG-19 front and conv chains.

`VGGFront` is the first ten 3x3 convolutions of VGG-19 (conv1_1 ... conv4_2, three 2x2 max pools, stride
8). Its submodules are named by torchvision's `vgg19().features` indices (`0`, `2`, `5`, ...; the ReLUs
and pools between them hold no weights), so that ImageNet weights load by the plain naming rule
(`models/weights/vgg.py`). Every conv has a bias and no normalisation, as VGG and OpenPose.

Init: convs followed by a ReLU draw Normal(0, sqrt(2 / fan_out)) (He, as torchvision's VGG); the
prediction convs that end a chain Normal(0, 0.01) (OpenPose's gaussian std 0.01), so that the first maps
are near zero instead of at the scale of the features.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.layers import conv_kernel_init

Dtype = Any

# Output channels of VGG-19's convs up to conv4_2, one tuple per resolution (a max pool between).
VGG19_FRONT: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512))
output_init = nn.initializers.normal(stddev=0.01)


def conv(features: int, kernel: int, name: str, dtype: Dtype, *, output: bool = False) -> nn.Conv:
    """A k x k conv, stride 1, padding k // 2 (torch's), with bias (call inside a compact module)."""
    return nn.Conv(
        features, (kernel, kernel), padding=kernel // 2, dtype=dtype, name=name,
        kernel_init=output_init if output else conv_kernel_init(),
    )  # fmt: skip


def torch_indices(widths: Sequence[Sequence[int]]) -> list[int]:
    """torchvision `features` indices of the convs of a VGG front: conv, ReLU per layer; a pool
    between resolutions. VGG19_FRONT -> [0, 2, 5, 7, 10, 12, 14, 16, 19, 21]."""
    out, index = [], 0
    for r, stage in enumerate(widths):
        index += 1 if r else 0
        for _ in stage:
            out.append(index)
            index += 2
    return out


class VGGFront(nn.Module):
    """VGG's first convolutions. Shapes: (B, H, W, 3) -> (B, H/8, W/8, C_last) in `dtype`, after
    ReLU. `widths` per resolution (a 2x2 max pool between; floor, as torch): VGG19_FRONT by default.
    """

    widths: Sequence[Sequence[int]] = VGG19_FRONT
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        names = iter(torch_indices(self.widths))
        for r, stage in enumerate(self.widths):
            if r:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for c in stage:
                x = nn.relu(conv(c, 3, str(next(names)), self.dtype)(x))
        return x


class ConvChain(nn.Module):
    """Convs with a ReLU after each (modules `conv1`, `conv2`, ...), then an optional prediction conv.

    Shapes: (B, h, w, C) -> (B, h, w, out) when `out` > 0 (1x1, no ReLU, module `conv<n+1>`), else
    (B, h, w, layers[-1][0]). `layers` = ((channels, kernel), ...). With `features=True` it returns
    (prediction, [the ReLU output of every layer]) instead.
    """

    layers: Sequence[tuple[int, int]]
    out: int = 0
    features: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> Any:
        hidden = []
        for i, (c, k) in enumerate(self.layers):
            x = nn.relu(conv(c, k, f"conv{i + 1}", self.dtype)(x))
            hidden.append(x)
        if self.out:
            x = conv(self.out, 1, f"conv{len(self.layers) + 1}", self.dtype, output=True)(x)
        return (x, hidden) if self.features else x


class TransferBlock(nn.Module):
    """MLN's transfer / refinement block: three 3x3 convs with ReLU (modules `conv1`-`conv3`), their
    outputs aggregated by a sum (every layer's features reach the next block, as in the paper's
    "aggregated to strengthen feature propagation"). Shapes: (B, h, w, C) -> (B, h, w, width)."""

    width: int = 128
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        total = None
        for i in range(3):
            x = nn.relu(conv(self.width, 3, f"conv{i + 1}", self.dtype)(x))
            total = x if total is None else total + x
        return total


class BlockStack(nn.Module):
    """`blocks` TransferBlocks (modules `block1`, ...) and an optional 1x1 prediction conv (`out`).

    Shapes: (B, h, w, C) -> (B, h, w, out) if `out` > 0 else (B, h, w, width)."""

    blocks: int
    width: int = 128
    out: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for b in range(self.blocks):
            x = TransferBlock(self.width, self.dtype, name=f"block{b + 1}")(x)
        if self.out:
            x = conv(self.out, 1, "out", self.dtype, output=True)(x)
        return x
