"""WGNet (Luo & Gao, "Lightweight Human Pose Estimation Based on Self-Attention Mechanism"): a
single-path hourglass of inverted residuals and WNet blocks (window + "global" attention).

Dataflow (the paper's Fig. 1; no official code exists, so names and unstated details are ours):
* `stem_dw`, `stem_pw`: a depthwise-separable conv (5 x 5 depthwise stride 2, 1 x 1 pointwise), 1/2.
* s1..s4 (`s1_down`, `s1_ir_0`, ..., `s1_wnet_0`, ...): a stride-2 inverted residual, `ir_depths`
  inverted residuals, `wnet_depths` WNet blocks; at 1/4, 1/8, 1/16, 1/32.
* d1..d3 (`d1_up`, `d1_wnet_0`, ..., `d1_se`): a 2 x 2 stride-2 transposed conv (+ BN, ReLU6) to the
  skip's width, plus the skip (the output of s3, s2, s1: added), `up_depths` WNet blocks, then
  squeeze-and-excitation; at 1/16, 1/8, 1/4.
* `final_layer`: a 1 x 1 conv to the K heatmaps at 1/4.

WNet block (the paper's Fig. 2): x + WindowAttention(LN(x)), an inverted-residual FFN, x +
GridAttention(LN(x)), a second inverted-residual FFN. The grid is the window count, so the second
attention joins the tokens at the same position in every window (`blocks/window.py`).

Windows scale with the map, as in the paper's Table 1 (alpha = 4: (16, 12) windows at 64 x 48): each
map is cut into 16 / alpha windows per side, the count per side being gcd(16 / alpha, side) so that it
divides the map (`window.split_map`). At 256 x 192: 64 x 48 -> (16, 12) windows, 32 x 24 -> (8, 6),
16 x 12 -> (4, 3), all with a (4, 4) grid; 8 x 6 -> (2, 3) windows, a (4, 2) grid. At the tiny
configs' 128 x 96: (8, 6), (4, 3), (2, 3) / (4, 2) grid, (1, 3) / (4, 1) grid. Inputs need not be
multiples of 32: odd maps are down-sampled with PyTorch's padding k // 2 (size ceil(n / 2)) and an
up-sampled map is cropped to its skip's size.

Where the paper is silent (documented choices): inverted residuals as MobileNetV2 (1 x 1 expand,
3 x 3 depthwise, 1 x 1 project, BN after each conv, ReLU6 after the first two, expansion 4, residual
when the shape is kept); LayerNorm (eps 1e-5) before each attention, as in transformers; head_dim
32; SE with reduction 4, ReLU and a sigmoid gate; skips added; no relative-position bias by default
(the paper names none, the depthwise convs give position, and a bias table's size would follow the
window, i.e. the input size); BatchNorm with PyTorch's semantics (`blocks/hr.BatchNorm`).

Base widths and depths, chosen to land on the paper's 5.8 M params and 3.6 GFLOPs at 256 x 192 (the
pose literature's "FLOPs" are multiply-adds, as thop and HRNet's counter report them: the paper's
HRNet-W32 row, 7.1, is HRNet's GMACs; ours is `summary`'s `gmacs`): widths (stem, s1-s4) = (32, 64,
128, 160, 192), one inverted residual after each stage's down-sampling, WNet blocks (2, 2, 2, 1) in
s1-s4 and (1, 1, 2) in d1-d3. Measured: 5,869,498 params (+1.2%), 3.53 GMACs (-1.8%; 3.16 without the
attention matmuls; XLA's count of all ops 3.63). The tiny variant: 612,934 params, 0.10 GMACs at
128 x 96.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.attention import AttentionImpl
from aggpose_jax.models.blocks.hr import BatchNorm
from aggpose_jax.models.blocks.layers import conv_kernel_init, make_layer_norm
from aggpose_jax.models.blocks.window import GridAttention, WindowAttention, split_map

Dtype = Any
LN_EPS = 1e-5
HEAD_DIM = 32


class ConvBN(nn.Module):
    """k x k conv (no bias, pad k // 2, groups), BN[, ReLU6]. (B, H, W, Ci) -> (B, H/s, W/s, F)."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    act: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        k, pad = self.kernel_size, self.kernel_size // 2
        x = nn.Conv(
            self.features,
            (k, k),
            strides=(self.stride, self.stride),
            padding=((pad, pad), (pad, pad)),
            feature_group_count=self.groups,
            use_bias=False,
            dtype=self.dtype,
            kernel_init=conv_kernel_init(self.groups),
            name="conv",
        )(x)
        x = BatchNorm(dtype=self.dtype, name="bn")(x, train)
        return jax.nn.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; residual if the shape
    is kept. Shapes: (B, H, W, Ci) -> (B, H/s, W/s, F)."""

    features: int
    stride: int = 1
    expand_ratio: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        hidden = x.shape[-1] * self.expand_ratio
        dt = self.dtype
        y = ConvBN(hidden, 1, dtype=dt, name="expand")(x, train)
        y = ConvBN(hidden, 3, self.stride, groups=hidden, dtype=dt, name="depthwise")(y, train)
        y = ConvBN(self.features, 1, act=False, dtype=dt, name="project")(y, train)
        return x + y if self.stride == 1 and x.shape[-1] == self.features else y


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): mean, fc1, ReLU, fc2, sigmoid. (B, H, W, C) -> same."""

    reduction: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        s = x.mean(axis=(1, 2), keepdims=True)
        s = nn.relu(nn.Dense(max(channels // self.reduction, 8), dtype=self.dtype, name="fc1")(s))
        return x * jax.nn.sigmoid(nn.Dense(channels, dtype=self.dtype, name="fc2")(s))


class UpConv(nn.Module):
    """2 x 2 stride-2 transposed conv (PyTorch's ConvTranspose2d(k=2, s=2), no bias), BN, ReLU6.
    Shapes: (B, H, W, Ci) -> (B, 2H, 2W, F).

    Param `kernel` (2, 2, Ci, F) = torch's weight (Ci, F, 2, 2) transposed (2, 3, 0, 1); computed as
    one matmul to 4F channels and a depth-to-space, which is exact for kernel = stride.
    """

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        batch, height, width, channels = x.shape
        f = self.features
        kernel = self.param("kernel", conv_kernel_init(), (2, 2, channels, f))
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
        y = x @ kernel.transpose(2, 0, 1, 3).reshape(channels, 4 * f)  # (.., (i, j, f))
        y = y.reshape(batch, height, width, 2, 2, f).transpose(0, 1, 3, 2, 4, 5)
        y = y.reshape(batch, 2 * height, 2 * width, f)
        return jax.nn.relu6(BatchNorm(dtype=self.dtype, name="bn")(y, train))


class WNetBlock(nn.Module):
    """Window attention + IR FFN, then grid ("global") attention over the window count + IR FFN.
    Shapes: (B, H, W, C) -> (B, H, W, C); windows from `window.split_map(map, num_windows)`."""

    num_windows: int = 4
    expand_ratio: int = 4
    rel_pos_bias: bool = False
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels, dt = x.shape[-1], self.dtype
        window_hw, grid_hw = split_map(x.shape[1:3], self.num_windows)
        common = dict(
            num_heads=max(channels // HEAD_DIM, 1),
            rel_pos_bias=self.rel_pos_bias,
            dtype=dt,
            attention_impl=self.attention_impl,
        )
        y = make_layer_norm(LN_EPS, "norm1", dt)(x)
        x = x + WindowAttention(window_hw=window_hw, **common, name="window_attn")(y)
        x = InvertedResidual(channels, 1, self.expand_ratio, dt, name="ffn1")(x, train)
        y = make_layer_norm(LN_EPS, "norm2", dt)(x)
        x = x + GridAttention(grid_hw=grid_hw, **common, name="grid_attn")(y)
        return InvertedResidual(channels, 1, self.expand_ratio, dt, name="ffn2")(x, train)


class WGNet(nn.Module):
    """WGNet. Shapes: images (B, H, W, 3) -> {"heatmaps": (B, ceil(H/4), ceil(W/4), K) float32}.

    `widths` = (stem, s1, s2, s3, s4); `ir_depths` / `wnet_depths` per s stage; `up_depths` = WNet
    blocks of d1, d2, d3. `alpha` sets the windows (16 / alpha per side, see the module docstring).
    """

    widths: Sequence[int] = (32, 64, 128, 160, 192)
    ir_depths: Sequence[int] = (1, 1, 1, 1)
    wnet_depths: Sequence[int] = (2, 2, 2, 1)
    up_depths: Sequence[int] = (1, 1, 2)
    alpha: int = 4
    expand_ratio: int = 4
    num_keypoints: int = 17
    rel_pos_bias: bool = False
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        if 16 % self.alpha:
            raise ValueError(f"alpha {self.alpha} must divide 16 (windows of (4a, 3a) at 64 x 48)")
        dt, e = self.dtype, self.expand_ratio

        def wnet(x: jax.Array, depth: int, name: str) -> jax.Array:
            for i in range(depth):
                x = WNetBlock(
                    16 // self.alpha, e, self.rel_pos_bias, dt, self.attention_impl,
                    name=f"{name}_{i}",
                )(x, train)  # fmt: skip
            return x

        x = images.astype(dt)
        x = ConvBN(3, 5, 2, groups=3, dtype=dt, name="stem_dw")(x, train)
        x = ConvBN(self.widths[0], 1, dtype=dt, name="stem_pw")(x, train)
        skips = []
        for s, width in enumerate(self.widths[1:]):
            x = InvertedResidual(width, 2, e, dt, name=f"s{s + 1}_down")(x, train)
            for i in range(self.ir_depths[s]):
                x = InvertedResidual(width, 1, e, dt, name=f"s{s + 1}_ir_{i}")(x, train)
            x = wnet(x, self.wnet_depths[s], f"s{s + 1}_wnet")
            skips.append(x)
        for d, skip in enumerate(reversed(skips[:-1])):
            height, width, channels = skip.shape[1:]
            x = UpConv(channels, dt, name=f"d{d + 1}_up")(x, train)[:, :height, :width]
            x = wnet(x + skip, self.up_depths[d], f"d{d + 1}_wnet")
            x = SqueezeExcite(dtype=dt, name=f"d{d + 1}_se")(x)
        # Normal(0, 0.001) as HRNet's and Simple Baselines' final layers: heatmaps start near zero
        # (the default init starts them at the scale of the features, ~7x the first loss).
        heatmaps = nn.Conv(
            self.num_keypoints, (1, 1), dtype=dt, kernel_init=nn.initializers.normal(0.001),
            name="final_layer",
        )(x)  # fmt: skip
        return {"heatmaps": heatmaps.astype(jnp.float32)}


# base: the paper's model (5.8 M params, 3.6 GFLOPs at 256 x 192); tiny: CPU runs and CI.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": dict(
        widths=(32, 64, 128, 160, 192),
        ir_depths=(1, 1, 1, 1),
        wnet_depths=(2, 2, 2, 1),
        up_depths=(1, 1, 2),
    ),
    "tiny": dict(
        widths=(16, 32, 48, 64, 64),
        ir_depths=(0, 0, 0, 0),
        wnet_depths=(1, 1, 1, 1),
        up_depths=(1, 1, 1),
    ),
}
# Run options (config `model.options`).
OPTIONS: dict[str, Any] = dict(dtype="float32", rel_pos_bias=False, attention_impl="")
OUTPUTS = ("heatmaps",)


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> WGNet:
    """WGNet from a variant's fields merged with options; out_channels {"heatmaps": K}."""
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    fields["attention_impl"] = fields["attention_impl"] or None
    return WGNet(**fields, num_keypoints=out_channels["heatmaps"])
