"""Official AggPose checkpoints (`get_pose_net` state dicts) <-> AggPose params."""

import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from aggpose_jax.models.aggpose import GROUP_NAMES, AggPose
from aggpose_jax.models.weights.torch_layout import (
    Params,
    StateDict,
    convert_with_head,
    strip_prefix,
    torch_names_from_params,
)


def infer_aggpose_config(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """AggPose constructor fields read off an official-layout state dict (heads are not stored)."""
    dims = tuple(int(state_dict[f"patch_embed{i}.proj.weight"].shape[0]) for i in range(1, 5))
    depths = tuple(
        tuple(
            len({m.group(1) for k in state_dict if (m := re.match(rf"{g}\.(\d+)\.", k))})
            for g in branch
        )
        for branch in GROUP_NAMES
    )
    srs = tuple(
        int(state_dict[f"block{b}.0.attn.sr.weight"].shape[-1])
        if f"block{b}.0.attn.sr.weight" in state_dict
        else 1
        for b in range(1, 5)
    )
    return dict(
        embed_dims=dims,
        num_heads=(1, 1, 1, 1),
        sr_ratios=srs,
        depths=depths,
        num_keypoints=int(state_dict["final_layer.fc2.weight"].shape[0]),
        mlp_ratio=int(state_dict["block1.0.mlp.fc1.weight"].shape[0]) // dims[0],
        qkv_bias="block1.0.attn.q.bias" in state_dict,
    )


def aggpose_params_from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    num_keypoints: int | None = None,
    reinit_head: bool = False,
    scan_blocks: bool = False,
    rng: jax.Array | None = None,
    model: AggPose | None = None,
) -> Params:
    """Official AggPose state dict (bare or `module.` names) -> params for `{"params": params}`.

    The architecture is read off the state dict (or given as `model`) and the keys must match it exactly.
    `num_keypoints` different from the file's needs `reinit_head=True`, which re-initialises
    final_layer.fc2 (the only head tensor whose shape depends on K) from `rng`.
    """
    sd = strip_prefix(state_dict)
    model = AggPose(**infer_aggpose_config(sd)) if model is None else model
    return convert_with_head(sd, model, num_keypoints, reinit_head, scan_blocks, rng)


def aggpose_state_dict_from_params(params: Params) -> StateDict:
    """AggPose params (unrolled or scanned) -> official state dict {name: np.ndarray}."""
    return torch_names_from_params(params)
