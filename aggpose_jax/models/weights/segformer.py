"""Official SegFormer pose checkpoints (`pose_segformer.py`) <-> SegFormerPose params."""

import re
from collections.abc import Mapping
from typing import Any

import jax

from aggpose_jax.models.segformer import SegFormerPose
from aggpose_jax.models.weights.torch_layout import (
    Params,
    StateDict,
    convert_with_head,
    strip_prefix,
    torch_names_from_params,
)

# Dead parameters of the official SegFormer pose model (an unused 1x1 conv).
_SEGFORMER_DEAD = ("recover.",)


def segformer_params_from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    num_keypoints: int | None = None,
    reinit_head: bool = False,
    scan_blocks: bool = False,
    rng: jax.Array | None = None,
    model: SegFormerPose | None = None,
) -> Params:
    """Official SegFormer pose state dict -> params; the dead `recover` conv is dropped."""
    sd = {k: v for k, v in strip_prefix(state_dict).items() if not k.startswith(_SEGFORMER_DEAD)}
    if model is None:
        dims = tuple(int(sd[f"patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5))
        depths = tuple(
            len({m.group(1) for k in sd if (m := re.match(rf"block{b}\.(\d+)\.", k))})
            for b in range(1, 5)
        )
        model = SegFormerPose(embed_dims=dims, depths=depths, num_heads=(1, 1, 1, 1))
    return convert_with_head(sd, model, num_keypoints, reinit_head, scan_blocks, rng)


def segformer_state_dict_from_params(params: Params) -> StateDict:
    """SegFormer pose params -> state dict (without the dead `recover` conv)."""
    return torch_names_from_params(params)
