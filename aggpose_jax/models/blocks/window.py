"""Window and grid attention (MaxViT's block and grid partitions; Tu et al. 2022), as reusable blocks.

A map (B, H, W, C) is cut into groups of tokens that attend only to each other:
* window (block) partition, `window_hw` = (h, w): contiguous h x w windows, (H/h) x (W/w) of them;
* grid partition, `grid_hw` = (g, s): g x s tokens spaced (H/g, W/s) apart, one group per offset. The
  tokens at the same position in every (H/g) x (W/s) window form a group, which is WGNet's "global"
  attention when the grid equals the window count (g, s) = (H/h, W/w).

Inside a group, tokens are in row-major order and attention is the usual multi-head attention with
one `qkv` Dense and a `proj` Dense. The qkv output channels are per head [q | k | v] (head-major,
timm MaxViT's default `head_first=True` layout), and the optional relative-position bias is a learned
table of (2h - 1)(2w - 1) x heads indexed by the (dy, dx) offset (Swin / MaxViT), so timm MaxViT
weights convert by a rename (`attn.qkv`, `attn.proj`, `attn.rel_pos.relative_position_bias_table`).

`WindowGridAttention` applies window then grid attention, a (B, H, W, C) -> (B, H, W, C) token mixer
with the constructor of `EfficientSelfAttention` (num_heads, qkv_bias, dtype, attention_impl): every
token sees every other through two hops, at a cost linear in H * W.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.models.blocks.attention import AttentionImpl, attend
from aggpose_jax.models.blocks.layers import dense_kernel_init, make_dense

Dtype = Any
HW = tuple[int, int]


def _check_divides(part_hw: HW, map_hw: HW, kind: str) -> None:
    """Raises ValueError unless `part_hw` divides `map_hw` on both axes."""
    if len(part_hw) != 2 or any(p < 1 or m % p for p, m in zip(part_hw, map_hw, strict=True)):
        raise ValueError(
            f"{kind} {tuple(part_hw)} does not divide the {tuple(map_hw)} map (H, W): "
            f"each {kind} side must divide the map side"
        )


def window_partition(x: jax.Array, window_hw: HW) -> jax.Array:
    """Contiguous windows. Shapes: (B, H, W, C) -> (B * H/h * W/w, h * w, C)."""
    batch, height, width, channels = x.shape
    _check_divides(window_hw, (height, width), "window")
    h, w = window_hw
    x = x.reshape(batch, height // h, h, width // w, w, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h * w, channels)


def window_merge(groups: jax.Array, window_hw: HW, map_hw: HW) -> jax.Array:
    """Inverse of `window_partition`. Shapes: (B * H/h * W/w, h * w, C) -> (B, H, W, C)."""
    (h, w), (height, width) = window_hw, map_hw
    channels = groups.shape[-1]
    x = groups.reshape(-1, height // h, width // w, h, w, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, height, width, channels)


def grid_partition(x: jax.Array, grid_hw: HW) -> jax.Array:
    """Groups of g x s tokens, stride (H/g, W/s). (B, H, W, C) -> (B * H/g * W/s, g * s, C)."""
    batch, height, width, channels = x.shape
    _check_divides(grid_hw, (height, width), "grid")
    g, s = grid_hw
    x = x.reshape(batch, g, height // g, s, width // s, channels).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, g * s, channels)


def grid_merge(groups: jax.Array, grid_hw: HW, map_hw: HW) -> jax.Array:
    """Inverse of `grid_partition`. Shapes: (B * H/g * W/s, g * s, C) -> (B, H, W, C)."""
    (g, s), (height, width) = grid_hw, map_hw
    channels = groups.shape[-1]
    x = groups.reshape(-1, height // g, width // s, g, s, channels).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, height, width, channels)


def relative_position_index(group_hw: HW) -> np.ndarray:
    """Table row of every (query, key) pair of an h x w group. Shapes: -> (h * w, h * w) int32.

    Row = (dy + h - 1) * (2w - 1) + (dx + w - 1) with (dy, dx) = query - key position (Swin's order).
    """
    h, w = group_hw
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([ys.ravel(), xs.ravel()], axis=-1)  # (T, 2), row-major
    delta = coords[:, None, :] - coords[None, :, :]
    return ((delta[..., 0] + h - 1) * (2 * w - 1) + delta[..., 1] + w - 1).astype(np.int32)


class RelativePositionBias(nn.Module):
    """A learned bias per head and (dy, dx) offset in an h x w group. () -> (heads, T, T), T = h * w.

    Param `relative_position_bias_table` ((2h - 1)(2w - 1), heads), init Normal(0, 0.02) as timm's.
    """

    group_hw: HW
    num_heads: int

    @nn.compact
    def __call__(self) -> jax.Array:
        h, w = self.group_hw
        table = self.param(
            "relative_position_bias_table",
            dense_kernel_init,
            ((2 * h - 1) * (2 * w - 1), self.num_heads),
        )
        index = relative_position_index(self.group_hw)
        return table[index.ravel()].reshape(h * w, h * w, self.num_heads).transpose(2, 0, 1)


class GroupAttention(nn.Module):
    """Multi-head self-attention inside groups of an h x w layout. (N, h * w, C) -> (N, h * w, C).

    Params `qkv` (C -> 3C, per head [q | k | v]), `proj` (C -> C, with bias), and with
    `rel_pos_bias` `rel_pos/relative_position_bias_table`.
    """

    num_heads: int
    group_hw: HW
    qkv_bias: bool = True
    rel_pos_bias: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups, tokens, channels = x.shape
        if channels % self.num_heads:
            raise ValueError(f"{channels} channels do not split into {self.num_heads} heads")
        head_dim = channels // self.num_heads
        qkv = make_dense(3 * channels, "qkv", self.dtype, self.qkv_bias)(x)
        qkv = qkv.reshape(groups, tokens, self.num_heads, 3, head_dim)
        bias = None
        if self.rel_pos_bias:
            bias = RelativePositionBias(self.group_hw, self.num_heads, name="rel_pos")()
            bias = bias[None].astype(qkv.dtype)
        out = attend(qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :], self.attention_impl, bias)
        return make_dense(channels, "proj", self.dtype)(out.reshape(groups, tokens, channels))


class WindowAttention(nn.Module):
    """Attention inside contiguous `window_hw` windows (MaxViT block attention). (B, H, W, C) -> same.

    `window_hw` must divide the map (a ValueError names both sizes). A window as large as the map is
    full self-attention. Params `qkv`, `proj`[, `rel_pos/relative_position_bias_table`].
    """

    num_heads: int
    window_hw: HW
    qkv_bias: bool = True
    rel_pos_bias: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        window_hw = tuple(self.window_hw)
        groups = window_partition(x, window_hw)
        groups = GroupAttention(
            self.num_heads, window_hw, self.qkv_bias, self.rel_pos_bias, self.dtype,
            self.attention_impl, name="attn",
        )(groups)  # fmt: skip
        return window_merge(groups, window_hw, x.shape[1:3])


class GridAttention(nn.Module):
    """Attention among `grid_hw` tokens spaced (H/g, W/s) apart (MaxViT's grid). (B, H, W, C) -> same.

    `grid_hw` must divide the map (a ValueError names both sizes). A grid as large as the map is full
    self-attention; a 1 x 1 grid lets each token attend to itself only (proj of its value).
    """

    num_heads: int
    grid_hw: HW
    qkv_bias: bool = True
    rel_pos_bias: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        grid_hw = tuple(self.grid_hw)
        groups = grid_partition(x, grid_hw)
        groups = GroupAttention(
            self.num_heads, grid_hw, self.qkv_bias, self.rel_pos_bias, self.dtype,
            self.attention_impl, name="attn",
        )(groups)  # fmt: skip
        return grid_merge(groups, grid_hw, x.shape[1:3])


def split_map(map_hw: HW, num_windows: int) -> tuple[HW, HW]:
    """(window_hw, grid_hw) that cut a map into about num_windows x num_windows windows.

    The grid per axis is gcd(num_windows, side), the window the side over it, so both always divide
    the map: num_windows=4 gives (16, 12) windows and a (4, 4) grid at 64 x 48 (WGNet's alpha = 4),
    (2, 3) windows and a (4, 2) grid at 8 x 6. The grid is the window count, so grid attention joins
    the tokens at the same position in every window (WGNet's "global" attention).
    """
    grid_hw = tuple(math.gcd(num_windows, side) for side in map_hw)
    window_hw = tuple(side // g for side, g in zip(map_hw, grid_hw, strict=True))
    return window_hw, grid_hw


class WindowGridAttention(nn.Module):
    """Window attention, then grid attention over the window count. (B, H, W, C) -> (B, H, W, C).

    A drop-in token mixer for a pre-norm transformer block (`x + mixer(norm(x))`), with the
    constructor style of `EfficientSelfAttention`. Sizes: `window_hw` (grid = the window count), or
    when None `split_map(map, num_windows)`. Params `window_attn/attn/...`, `grid_attn/attn/...`.
    """

    num_heads: int
    window_hw: HW | None = None
    num_windows: int = 4
    qkv_bias: bool = True
    rel_pos_bias: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        map_hw = x.shape[1:3]
        if self.window_hw is None:
            window_hw, grid_hw = split_map(map_hw, self.num_windows)
        else:
            window_hw = tuple(self.window_hw)
            _check_divides(window_hw, map_hw, "window")
            grid_hw = (map_hw[0] // window_hw[0], map_hw[1] // window_hw[1])
        common = dict(
            num_heads=self.num_heads,
            qkv_bias=self.qkv_bias,
            rel_pos_bias=self.rel_pos_bias,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
        )
        x = WindowAttention(window_hw=window_hw, **common, name="window_attn")(x)
        return GridAttention(grid_hw=grid_hw, **common, name="grid_attn")(x)
