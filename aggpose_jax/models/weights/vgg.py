"""ImageNet VGG-19 weights (torchvision's `vgg19().state_dict()` layout) into the VGG front of the
bottom-up families (OpenPose, MLN).

torchvision names VGG's convs by their place in `features` (`features.0.weight` is conv1_1,
`features.21.weight` conv4_2; ReLUs and pools between them hold no tensors). The front
(`blocks/vgg.VGGFront`, module `features`) uses the same indices, so the plain naming rule of
`weights/torch_layout` maps each tensor: conv weight [O, I, kh, kw] -> `kernel` [kh, kw, I, O], bias
-> `bias`. The convs past conv4_2 (`features.23` ...) and the classifier are not part of the front.
"""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from aggpose_jax.models.weights.torch_layout import (
    Variables,
    check_state_dict,
    flax_entry,
    strip_prefix,
    torch_name,
    torch_shape,
)

FRONT = "features."  # the VGG front's module name, and torchvision's prefix


def load_vgg_front(
    variables: Mapping[str, Any], state_dict: Mapping[str, Any]
) -> tuple[Variables, dict[str, list[str]]]:
    """torchvision VGG weights into a bottom-up model's front (`features/<i>`), everything else kept.

    Shapes: variables {"params": ...} of a model with a `features` VGG front; state_dict {name:
    array} in torchvision's layout (a `module.` prefix is dropped). Returns (new variables, report):
    'loaded' the front's tensors taken from the file, 'initialised' the model's tensors it does not
    cover (the stages, heads), 'ignored' the file's other tensors (deeper convs, classifier).
    Raises ValueError naming every front tensor the file lacks or has with another shape.
    """
    sd = strip_prefix(state_dict)
    flat = traverse_util.flatten_dict(dict(jax.tree.map(np.asarray, dict(variables))))
    by_name = {torch_name(p): p for p in flat}
    front = {
        k: torch_shape(p[-1], flat[p].shape) for k, p in by_name.items() if k.startswith(FRONT)
    }
    if not front:
        raise ValueError("the model has no VGG front (no `features` module)")
    taken = {k: v for k, v in sd.items() if k in front}
    check_state_dict(taken, front)  # names every missing or mis-shaped front tensor
    for name, value in taken.items():
        path, value = flax_entry(name, value)
        flat[path] = value.astype(flat[path].dtype)
    report = {
        "loaded": sorted(taken),
        "initialised": sorted(set(by_name) - set(taken)),
        "ignored": sorted(set(sd) - set(taken)),
    }
    return traverse_util.unflatten_dict(flat), report
