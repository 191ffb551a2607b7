"""Official HRNet checkpoints (pose `pose_hrnet_w*.pth`, ImageNet `hrnet_w*-*.pth`) <-> HRNet variables.

Variables are {"params": ..., "batch_stats": ...}. Names follow the naming rule of
`weights.torch_layout`, extended by BatchNorm's state: conv weight [O, I, kh, kw] <-> `kernel`
[kh, kw, I, O]; BN weight <-> `scale`, bias <-> `bias`, running_mean <-> batch_stats `mean`,
running_var <-> batch_stats `var`; `num_batches_tracked` is dropped on the way in and written as 0 on
the way out (so that torch's strict `load_state_dict` takes the result). Leaves outside the rule
(RAM's `omega`, `beta`, `score_kernel`, `score_bias`) keep their own names, so RAM+GPR variables also
round-trip (GPR's transposed-conv kernels then follow the conv rule, not torch's ConvTranspose2d
layout; there are no official RAM+GPR weights).
"""

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aggpose_jax.models.blocks.hr import conv_init
from aggpose_jax.models.hrnet import HRNet
from aggpose_jax.models.weights.torch_layout import (
    StateDict,
    Variables,
    check_state_dict,
    flax_entry,
    strip_prefix,
    torch_name,
    torch_names_from_variables,
    torch_shape,
    variables_from_torch_names,
)

# Keys of the ImageNet classification HRNet that the pose network has no use for.
CLASSIFICATION_ONLY = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def expected_hrnet_shapes(model: HRNet) -> dict[str, tuple[int, ...]]:
    """{official name: shape} of a model's variables (num_batches_tracked left out), from eval_shape."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    flat = traverse_util.flatten_dict(dict(shapes))
    return {torch_name(p): torch_shape(p[-1], v.shape) for p, v in flat.items()}


def infer_hrnet_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """HRNet constructor fields (width, num_modules, num_blocks, num_keypoints) read off a pose
    state dict."""

    def count(pattern: str) -> int:
        return len({m.group(1) for k in state_dict if (m := re.match(pattern, k))})

    return dict(
        width=int(np.shape(state_dict["stage2.0.branches.0.0.conv1.weight"])[0]),
        num_modules=tuple(count(rf"stage{s}\.(\d+)\.") for s in (2, 3, 4)),
        num_blocks=count(r"stage2\.0\.branches\.0\.(\d+)\."),
        num_keypoints=int(np.shape(state_dict["final_layer.weight"])[0]),
    )


def hrnet_variables_from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    num_keypoints: int | None = None,
    reinit_head: bool = False,
    rng: jax.Array | None = None,
    model: HRNet | None = None,
) -> Variables:
    """Official pose HRNet state dict (bare or `module.` names) -> {"params", "batch_stats"}.

    The architecture is read off the state dict (or given as `model`, an HRNet or HRNetPose) and the
    keys must match it exactly (every missing, unexpected or mis-shaped key is named);
    `num_batches_tracked` entries are accepted and dropped. A `num_keypoints` other than the file's
    needs `reinit_head=True`, which re-initialises final_layer (Normal(0, 0.001), bias 0) from `rng`.
    """
    sd = {
        k: v for k, v in strip_prefix(state_dict).items() if not k.endswith("num_batches_tracked")
    }
    if "final_layer.weight" not in sd:
        raise ValueError("no final_layer.weight: not a pose HRNet state dict")
    file_k = int(sd["final_layer.weight"].shape[0])
    want_k = file_k if num_keypoints is None else num_keypoints
    if want_k != file_k and not reinit_head:
        raise ValueError(
            f"the file has a {file_k}-keypoint head but {want_k} were asked for; "
            "pass reinit_head=True (--reinit-head) to re-initialise final_layer"
        )
    model = HRNet(**infer_hrnet_config(sd)) if model is None else model
    check_state_dict(sd, expected_hrnet_shapes(model.clone(num_keypoints=file_k)))
    variables = variables_from_torch_names(sd)
    if reinit_head:
        head = variables["params"]["final_layer"]
        rng = jax.random.key(0) if rng is None else rng
        shape = (*head["kernel"].shape[:3], want_k)
        head["kernel"] = np.asarray(conv_init(rng, shape, jnp.float32))
        head["bias"] = np.zeros((want_k,), np.float32)
    return variables


def hrnet_state_dict_from_variables(variables: Mapping[str, Any]) -> StateDict:
    """{"params", "batch_stats"} -> official state dict {name: np.ndarray}, num_batches_tracked 0."""
    return torch_names_from_variables(variables)


def load_hrnet_backbone(
    variables: Mapping[str, Any], state_dict: Mapping[str, Any]
) -> tuple[Variables, dict[str, list[str]]]:
    """ImageNet (or pose) HRNet weights into an HRNet's variables: everything the model has.

    `state_dict` is the HRNet-Image-Classification layout (`hrnet_w32-36af842e.pth`): the pose
    network's stem, layer1, transitions and stages, plus classification-only keys (incre_modules,
    downsamp_modules, final_layer, classifier) and, in stage 4's last module, fuse layers into the
    coarser branches, which a pose HRNet lacks (RAM+GPR uses them). Returns (new variables, report)
    with report lists of official names: 'loaded', 'initialised' (model tensors the file does not
    cover, e.g. final_layer, RAM's attention, GPR) and 'ignored' (file keys the model does not have).
    A file key the model has with another shape is an error naming it.
    """
    sd = {
        k: v for k, v in strip_prefix(state_dict).items() if not k.endswith("num_batches_tracked")
    }
    flat = traverse_util.flatten_dict(dict(jax.tree.map(np.asarray, dict(variables))))
    by_name = {torch_name(p): p for p in flat}
    taken = {k: v for k, v in sd.items() if k in by_name and not k.startswith(CLASSIFICATION_ONLY)}
    if not taken:
        raise ValueError("the file has no tensor of this HRNet (is it an HRNet checkpoint?)")
    expected = {k: torch_shape(by_name[k][-1], flat[by_name[k]].shape) for k in taken}
    check_state_dict(taken, expected)
    for name, value in taken.items():
        path, value = flax_entry(name, value)
        flat[path] = value.astype(flat[path].dtype)
    report = {
        "loaded": sorted(taken),
        "initialised": sorted(set(by_name) - set(taken)),
        "ignored": sorted(set(sd) - set(taken)),
    }
    return traverse_util.unflatten_dict(flat), report
