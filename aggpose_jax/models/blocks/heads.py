"""Heads: from the network's stride-4 features to the task's output channels.

Heads are functions called inside a network's compact `__call__` (their modules take the network's
official names). Alternatives (a pyramid head, part-field stages) join here.
"""

import jax

from aggpose_jax.models.blocks.layers import Dtype
from aggpose_jax.models.blocks.mixffn import MixFFN


def mixffn_head(
    x: jax.Array, out_channels: int, *, hidden: int, dtype: Dtype, refine: bool
) -> jax.Array:
    """The official AggPose / SegFormer pose head: Mix-FFN(s) down to `out_channels` raw maps.

    Shapes: x (B, H/4, W/4, C) -> (B, H/4, W/4, out_channels) in `dtype`. With `refine` (AggPose) a
    Mix-FFN `final` (C -> hidden -> hidden) runs first; `final_layer` (-> hidden -> out_channels) always.
    """
    if refine:
        x = MixFFN(hidden, hidden, dtype, name="final")(x)
    return MixFFN(hidden, out_channels, dtype, name="final_layer")(x)
