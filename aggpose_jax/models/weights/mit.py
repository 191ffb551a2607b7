"""ImageNet MiT weights (official SegFormer `mit_b*.pth` or Hugging Face Segformer) into a backbone.

`load_mit_backbone` fills `patch_embed1-4`, `block1-4` and `norm1-4` of AggPose, SegFormerPose or
MixVisionTransformer params from either layout and reports what it loaded, left initialised and
ignored; names and tensor layouts follow `weights.torch_layout` (official state-dict names).
"""

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from aggpose_jax.models.weights.torch_layout import (
    Params,
    StateDict,
    check_state_dict,
    has_scanned_groups,
    params_from_torch_names,
    stack_block_groups,
    strip_prefix,
    torch_names_from_params,
)

# Hugging Face transformers Segformer -> official MiT names. Two layouts exist: the one of the Hub
# checkpoints (`encoder.block.0.0.attention.self.query`) and the in-memory one of transformers >= 5
# (`stages.0.blocks.0.attention.q_proj`). Key and value are separate Linears there (merged below).
_HF_BLOCK = re.compile(r"^(?:encoder\.block|stages)\.(\d+)\.(?:blocks\.)?(\d+)\.(.+)$")
_HF_PATCH = re.compile(
    r"^(?:encoder\.patch_embeddings\.(\d+)|stages\.(\d+)\.patch_embeddings)\.(.+)$"
)
_HF_NORM = re.compile(r"^(?:encoder\.layer_norm\.(\d+)|stages\.(\d+)\.layer_norm)\.(.+)$")
_HF_BLOCK_RENAMES = {
    "layer_norm_1": "norm1",
    "layernorm_before": "norm1",
    "attention.self.query": "attn.q",
    "attention.q_proj": "attn.q",
    "attention.self.key": "attn.k",
    "attention.k_proj": "attn.k",
    "attention.self.value": "attn.v",
    "attention.v_proj": "attn.v",
    "attention.self.sr": "attn.sr",
    "attention.sequence_reduction.sequence_reduction": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.sequence_reduction.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "layer_norm_2": "norm2",
    "layernorm_after": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dense2": "mlp.fc2",
}


def mit_state_dict_from_hf(state_dict: Mapping[str, Any]) -> tuple[StateDict, list[str]]:
    """HF Segformer names -> official MiT names (k and v Linears concatenated into kv, K first).

    Returns (state dict, ignored HF keys such as decode-head or classifier weights).
    """
    out, ignored = {}, []
    for name, value in state_dict.items():
        key = name.removeprefix("segformer.")
        value = np.asarray(value)
        if m := _HF_BLOCK.match(key):
            stage, idx, rest = int(m.group(1)), m.group(2), m.group(3)
            for old, new in _HF_BLOCK_RENAMES.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            out[f"block{stage + 1}.{idx}.{rest}"] = value
        elif m := _HF_PATCH.match(key):
            stage = int(m.group(1) or m.group(2))
            out[f"patch_embed{stage + 1}.{m.group(3).replace('layer_norm', 'norm')}"] = value
        elif m := _HF_NORM.match(key):
            out[f"norm{int(m.group(1) or m.group(2)) + 1}.{m.group(3)}"] = value
        else:
            ignored.append(name)
    for name in [n for n in out if ".attn.k." in n]:
        v_name = name.replace(".attn.k.", ".attn.v.")
        out[name.replace(".attn.k.", ".attn.kv.")] = np.concatenate(
            [out.pop(name), out.pop(v_name)]
        )
    return out, ignored


_MIT_KEY = re.compile(r"^(patch_embed[1-4]|block[1-4]|norm[1-4])\.")


def load_mit_backbone(params: Params, state_dict: Mapping[str, Any]) -> tuple[Params, dict]:
    """ImageNet MiT weights into the backbone of AggPose / SegFormerPose / MixVisionTransformer params.

    `state_dict` is the official SegFormer `mit_b*.pth` layout or a Hugging Face Segformer state dict.
    Returns (new params, report) with report keys 'loaded', 'initialised' (model params the file does
    not cover, e.g. AggPose's extra groups and merges) and 'ignored' (file keys outside the backbone).
    Every backbone tensor of the file must exist in the model with the same shape.
    """
    sd = strip_prefix(state_dict)
    if any(k.startswith(("segformer.", "encoder.", "stages.")) for k in sd):
        sd, ignored = mit_state_dict_from_hf(sd)
    else:
        ignored = [k for k in sd if not _MIT_KEY.match(k)]
        sd = {k: v for k, v in sd.items() if _MIT_KEY.match(k)}
    scanned = has_scanned_groups(params)
    current = torch_names_from_params(params)
    extra = sorted(set(sd) - set(current))
    if extra:
        raise ValueError(
            f"{len(extra)} backbone tensor(s) have no counterpart in the model:\n  "
            + "\n  ".join(extra)
        )
    check_state_dict(sd, {k: current[k].shape for k in sd})
    current.update({k: np.asarray(v, np.float32) for k, v in sd.items()})
    new = params_from_torch_names(current)
    report = {
        "loaded": sorted(sd),
        "initialised": sorted(set(current) - set(sd)),
        "ignored": sorted(ignored),
    }
    return (stack_block_groups(new) if scanned else new), report
