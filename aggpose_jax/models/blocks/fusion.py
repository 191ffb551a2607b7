"""Cross-resolution fusion: how a branch is rebuilt from itself and its re-sampled neighbours.

Fusions are functions called inside a network's compact `__call__`, so the modules they create take the
network's own (official) names, e.g. `merge_123_2`. Alternatives (a residual merge, resolution-wise
attention) join here with the same signature.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.layers import Dtype
from aggpose_jax.models.blocks.mixffn import MixFFN


def merge(parts: Sequence[jax.Array], features: int, *, name: str, dtype: Dtype) -> jax.Array:
    """AggPose's aggregation: one Mix-FFN over the channel concat of the parts, no residual.

    Shapes: parts [(B, H, W, C_i)], all at one resolution -> (B, H, W, features). The concat order is
    the caller's (the official orders are listed in `models/aggpose.py`).
    """
    return MixFFN(features, features, dtype, name=name)(jnp.concatenate(parts, axis=-1))
