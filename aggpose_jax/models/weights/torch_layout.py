"""PyTorch state dicts <-> flax params: the naming rule every family's converter shares.

Flax submodule names mirror the official attribute paths, so a state-dict name maps to a param path by
splitting on '.' and renaming the leaf: Linear weight [out, in] -> `kernel` [in, out]; Conv weight
[O, I/g, kh, kw] -> `kernel` [kh, kw, I/g, O]; LayerNorm weight -> `scale`; bias -> `bias`. Under
`scan_blocks` the blocks `<group>/<i>` of a group are stacked into `<group>/blocks` (leading axis i).
"""

import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from aggpose_jax.models.blocks.layers import dense_kernel_init

Params = dict[str, Any]
StateDict = dict[str, np.ndarray]


def load_state_dict(path: str | pathlib.Path) -> StateDict:
    """Reads `.pth`/`.pt` (torch, weights only), `.safetensors` or `.npz` into {name: float32 array}.

    A training checkpoint dict ({'state_dict': ..., 'optimizer': ...}) is unwrapped; a leading
    `module.` (DataParallel) prefix is kept here and stripped by the converters.
    """
    path = pathlib.Path(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        import torch  # Lazily: torch is only needed to read official checkpoints.

        obj = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        return {k: v.detach().float().numpy() for k, v in obj.items() if hasattr(v, "numpy")}
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    raise ValueError(f"unknown weight file type {path.suffix!r} (want .pth, .safetensors or .npz)")


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> StateDict:
    """Drops a leading `prefix` (e.g. DataParallel's `module.`) from every key that has it."""
    return {k.removeprefix(prefix): np.asarray(v) for k, v in state_dict.items()}


def params_from_torch_names(state_dict: Mapping[str, np.ndarray]) -> Params:
    """Generic rename + transpose of an official-layout state dict into an unrolled param tree."""
    flat = {}
    for name, value in state_dict.items():
        *path, leaf = name.split(".")
        value = np.asarray(value, np.float32)
        if leaf == "weight" and value.ndim == 1:
            leaf = "scale"
        elif leaf == "weight" and value.ndim == 2:
            leaf, value = "kernel", value.T
        elif leaf == "weight" and value.ndim == 4:
            leaf, value = "kernel", value.transpose(2, 3, 1, 0)
        elif leaf != "bias":
            raise ValueError(f"cannot map tensor {name!r} of shape {value.shape}")
        flat[(*path, leaf)] = np.ascontiguousarray(value)
    return traverse_util.unflatten_dict(flat)


def torch_names_from_params(params: Params) -> StateDict:
    """Inverse of `params_from_torch_names` (unstacks scanned groups first). {name: array}."""
    out = {}
    for path, value in traverse_util.flatten_dict(unstack_block_groups(params)).items():
        *path, leaf = path
        value = np.asarray(value)
        if leaf == "kernel":
            value = value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)
        out[".".join([*path, "bias" if leaf == "bias" else "weight"])] = np.ascontiguousarray(value)
    return out


def _is_group(node: Any) -> bool:
    return isinstance(node, Mapping) and bool(node) and all(str(k).isdigit() for k in node)


def stack_block_groups(params: Params) -> Params:
    """Unrolled groups `{<group>: {'0': p0, '1': p1}}` -> scanned `{<group>: {'blocks': stack}}`."""
    if _is_group(params):
        blocks = [params[str(i)] for i in range(len(params))]
        return {"blocks": jax.tree.map(lambda *xs: np.stack(xs), *blocks)}
    if isinstance(params, Mapping):
        return {k: stack_block_groups(v) for k, v in params.items()}
    return params


def unstack_block_groups(params: Params) -> Params:
    """Scanned `{<group>: {'blocks': stack}}` -> unrolled `{<group>: {'0': p0, ...}}` (no-op if unrolled)."""
    if isinstance(params, Mapping) and set(params) == {"blocks"}:
        depth = jax.tree.leaves(params["blocks"])[0].shape[0]
        return {
            str(i): jax.tree.map(lambda x, i=i: np.asarray(x)[i], params["blocks"])
            for i in range(depth)
        }
    if isinstance(params, Mapping):
        return {k: unstack_block_groups(v) for k, v in params.items()}
    return params


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """{official name: shape} of a model's params, from jax.eval_shape (no compute)."""
    model = model.clone(scan_blocks=False)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    flat = traverse_util.flatten_dict(shapes)
    fake = traverse_util.unflatten_dict({k: np.zeros(v.shape, np.float32) for k, v in flat.items()})
    return {k: v.shape for k, v in torch_names_from_params(fake).items()}


def check_state_dict(state_dict: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> None:
    """Raises ValueError naming every missing, unexpected and mis-shaped key (exact match required)."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: file {tuple(np.shape(state_dict[k]))} vs model {tuple(expected[k])}"
        for k in set(expected) & set(state_dict)
        if tuple(np.shape(state_dict[k])) != tuple(expected[k])
    )
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched)):
        if items:
            problems.append(f"{len(items)} {title} key(s):\n  " + "\n  ".join(items))
    if problems:
        raise ValueError("state dict does not match the model:\n" + "\n".join(problems))


def convert_with_head(
    state_dict: StateDict,
    model: nn.Module,
    num_keypoints: int | None,
    reinit_head: bool,
    scan_blocks: bool,
    rng: jax.Array | None,
) -> Params:
    """Checks a pose model's state dict against `model` (exact keys) and maps it to params.

    The head `final_layer.fc2` gives the file's keypoint count; a different `num_keypoints` needs
    `reinit_head`, which re-initialises that tensor (trunc normal std 0.02, bias 0) from `rng`.
    """
    file_k = int(state_dict["final_layer.fc2.weight"].shape[0])
    want_k = file_k if num_keypoints is None else num_keypoints
    if want_k != file_k and not reinit_head:
        raise ValueError(
            f"the file has a {file_k}-keypoint head but {want_k} were asked for; "
            "pass reinit_head=True (--reinit-head) to re-initialise final_layer.fc2"
        )
    check_state_dict(state_dict, expected_shapes(model.clone(num_keypoints=file_k)))
    params = params_from_torch_names(state_dict)
    if reinit_head:
        fc2 = params["final_layer"]["fc2"]
        rng = jax.random.key(0) if rng is None else rng
        hidden = fc2["kernel"].shape[0]
        fc2["kernel"] = np.asarray(dense_kernel_init(rng, (hidden, want_k), jnp.float32))
        fc2["bias"] = np.zeros((want_k,), np.float32)
    return stack_block_groups(params) if scan_blocks else params


def save_params(path: str | pathlib.Path, params: Params) -> None:
    """Writes params as flax msgpack (what `load_params`, the trainer's init_from and inference read)."""
    pathlib.Path(path).write_bytes(
        serialization.msgpack_serialize(jax.tree.map(np.asarray, params))
    )


def load_params(path: str | pathlib.Path) -> Params:
    """Reads params written by `save_params` (a nested dict of numpy arrays)."""
    return serialization.msgpack_restore(pathlib.Path(path).read_bytes())


def has_scanned_groups(params: Any) -> bool:
    """Whether a params tree holds a scanned block group (`<group>/blocks` with a leading depth axis)."""
    if isinstance(params, Mapping):
        return set(params) == {"blocks"} or any(has_scanned_groups(v) for v in params.values())
    return False


# BatchNorm state (HRNet, WGNet): running statistics -> the `batch_stats` collection.
Variables = dict[str, Any]
FlatPath = tuple[str, ...]  # (collection, module, ..., leaf)

_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
             "var": "running_var"}  # fmt: skip


def torch_value(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        return value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)
    return value


def torch_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if leaf == "kernel":
        return shape[::-1] if len(shape) == 2 else (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape)


def flax_entry(name: str, value: Any) -> tuple[FlatPath, np.ndarray] | None:
    """One state-dict entry -> (flat variables path, value); None for num_batches_tracked."""
    *path, leaf = name.split(".")
    value = np.asarray(value)
    if leaf == "num_batches_tracked":
        return None
    value = value.astype(np.float32)
    if leaf == "running_mean":
        return ("batch_stats", *path, "mean"), value
    if leaf == "running_var":
        return ("batch_stats", *path, "var"), value
    if leaf == "weight" and value.ndim == 1:
        return ("params", *path, "scale"), value
    if leaf == "weight" and value.ndim == 2:
        return ("params", *path, "kernel"), np.ascontiguousarray(value.T)
    if leaf == "weight" and value.ndim == 4:
        return ("params", *path, "kernel"), np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    if leaf == "weight":
        raise ValueError(f"cannot map tensor {name!r} of shape {value.shape}")
    return ("params", *path, leaf), value


def torch_name(path: FlatPath) -> str:
    *modules, leaf = path[1:]
    return ".".join([*modules, _TO_TORCH.get(leaf, leaf)])


def variables_from_torch_names(state_dict: Mapping[str, Any]) -> Variables:
    """A state dict with BatchNorm state -> {"params": ..., "batch_stats": ...} (no checks)."""
    flat = dict(e for name, v in state_dict.items() if (e := flax_entry(name, v)) is not None)
    return traverse_util.unflatten_dict(flat)


def torch_names_from_variables(
    variables: Mapping[str, Any], num_batches_tracked: bool = True
) -> StateDict:
    """Inverse of `variables_from_torch_names`; adds `num_batches_tracked` (int64 0) per BN."""
    out = {}
    for path, value in traverse_util.flatten_dict(dict(variables)).items():
        out[torch_name(path)] = np.ascontiguousarray(torch_value(path[-1], np.asarray(value)))
        if num_batches_tracked and path[0] == "batch_stats" and path[-1] == "mean":
            out[".".join([*path[1:-1], "num_batches_tracked"])] = np.zeros((), np.int64)
    return out
