"""Mix Transformer (MiT, SegFormer: Xie et al. 2021) blocks and block groups, unrolled or scanned.

A block group is the official `nn.ModuleList` of Blocks (e.g. `block1_1`). Unrolled, block i of a group
is the submodule `<group>/<i>` (params `block1_1/0/attn/q/kernel`), mirroring the PyTorch path
`block1_1.0.attn.q.weight`. With `scan=True` the group's blocks run under `nn.scan` and live in
`<group>/blocks/...` with a leading `depth` axis (`weights.torch_layout.stack_block_groups` maps between
the two).

`attention` picks the token mixer of every block: "efficient" (the official sequence-reduction
attention) or "window_grid" (`window.WindowGridAttention`: window attention, then grid attention over
the window count, about 4 x 4 windows per map; relative-position bias on), an ablation switch.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.models.blocks.attention import AttentionImpl, EfficientSelfAttention
from aggpose_jax.models.blocks.layers import NORM_EPS, drop_path, make_layer_norm
from aggpose_jax.models.blocks.mixffn import MixFFN
from aggpose_jax.models.blocks.window import WindowGridAttention

Dtype = Any


class Block(nn.Module):
    """Pre-norm transformer block with stochastic depth. Shapes: (B, H, W, C) -> (B, H, W, C).

    The drop-path rate is the static field `drop_path`, or the `drop_path_rate` argument when the block
    runs under nn.scan (one rate per scanned block). Block norms use eps 1e-6 (the official norm_layer).
    """

    num_heads: int
    sr_ratio: int
    mlp_ratio: int = 4
    qkv_bias: bool = True
    drop_path: float = 0.0
    deterministic: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None
    attention: str = "efficient"

    @nn.compact
    def __call__(self, x: jax.Array, drop_path_rate: jax.Array | None = None) -> jax.Array:
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        rng = None
        if not self.deterministic and not (isinstance(rate, float) and rate == 0.0):
            rng = self.make_rng("dropout")
        channels = x.shape[-1]
        y = make_layer_norm(NORM_EPS, "norm1", self.dtype)(x)
        if self.attention == "window_grid":
            y = WindowGridAttention(
                self.num_heads, qkv_bias=self.qkv_bias, dtype=self.dtype,
                attention_impl=self.attention_impl, name="attn",
            )(y)  # fmt: skip
        else:
            y = EfficientSelfAttention(
                self.num_heads, self.sr_ratio, self.qkv_bias, self.dtype, self.attention_impl,
                name="attn",
            )(y)  # fmt: skip
        x = x + drop_path(y, rate, self.deterministic, rng)
        y = make_layer_norm(NORM_EPS, "norm2", self.dtype)(x)
        y = MixFFN(channels * self.mlp_ratio, channels, self.dtype, name="mlp")(y)
        rng2 = None if rng is None else self.make_rng("dropout")
        return x + drop_path(y, rate, self.deterministic, rng2)


class _ScanBlock(Block):
    """A Block with the (carry, x) -> (carry, y) signature that nn.scan needs."""

    @nn.compact
    def __call__(self, x: jax.Array, drop_path_rate: jax.Array) -> tuple[jax.Array, None]:
        return super().__call__(x, drop_path_rate), None


class BlockGroup(nn.Module):
    """`len(drop_path_rates)` Blocks in sequence, unrolled or under nn.scan. (B, H, W, C) -> same."""

    drop_path_rates: tuple[float, ...]
    num_heads: int
    sr_ratio: int
    mlp_ratio: int = 4
    qkv_bias: bool = True
    dtype: Dtype = jnp.float32
    remat: bool = False
    scan: bool = False
    attention_impl: AttentionImpl = None
    attention: str = "efficient"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kwargs = dict(
            num_heads=self.num_heads,
            sr_ratio=self.sr_ratio,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            deterministic=not train,
            dtype=self.dtype,
            attention_impl=self.attention_impl,
            attention=self.attention,
        )
        if self.scan:
            cls = nn.remat(_ScanBlock, prevent_cse=False) if self.remat else _ScanBlock
            blocks = nn.scan(
                cls,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=0,
                length=len(self.drop_path_rates),
            )(**kwargs, name="blocks")
            x, _ = blocks(x, jnp.asarray(self.drop_path_rates, jnp.float32))
            return x
        cls = nn.remat(Block) if self.remat else Block
        for i, rate in enumerate(self.drop_path_rates):
            x = cls(drop_path=float(rate), **kwargs, name=str(i))(x)
        return x


def drop_path_schedule(total: int, rate: float) -> list[float]:
    """The official stochastic-depth rates: linspace(0, rate, total) as Python floats (torch.linspace)."""
    return [float(v) for v in np.linspace(0.0, rate, total, dtype=np.float64)] if total else []
