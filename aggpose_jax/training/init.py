"""One general init from a weights file: take a subset, re-initialise a subset, rename, and report.

`read_variables(path)` reads any weights file the project meets into {"params": ..., **model_state}:
a flax msgpack (params or variables), an orbax checkpoint of this trainer (a run's `best/` or
`checkpoints/`, a step or an item folder), or a PyTorch-layout state dict (.pth / .safetensors / .npz:
an official AggPose / SegFormer / HRNet checkpoint or an ImageNet MiT or HRNet backbone, official or
Hugging Face layout), mapped by the official naming rule. `load_into` merges it into freshly initialised variables.

Paths are "collection/module/.../leaf", e.g. "params/final_layer/fc2/kernel". Examples:
    everything, a new 21-joint head:  reinit="^params/final_layer/fc2/"
    an ImageNet MiT backbone only:    take="^params/(patch_embed[1-4]|block[1-4]|norm[1-4])/"
    an ImageNet HRNet (classification): reinit="^params/final_layer/" (its head-only keys: ignored)
    a checkpoint saved under a prefix: rename=(("^params/backbone/", "params/"),)
"""

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import serialization, traverse_util

from aggpose_jax.models import convert

Variables = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class InitReport:
    """What `load_into` did, as sorted lists of paths."""

    loaded: list[str]  # taken from the file
    reinitialised: list[str]  # matched `reinit`: fresh values
    fresh: list[str]  # not matched by `take`: fresh values
    ignored: list[str]  # file entries no model path took

    def groups(self, which: str, depth: int = 2) -> list[str]:
        """The paths of `which` ("loaded", "fresh", ...) cut to `depth` components, with counts."""
        counts: dict[str, int] = {}
        for path in getattr(self, which):
            key = "/".join(path.split("/")[:depth])
            counts[key] = counts.get(key, 0) + 1
        return [f"{k} ({n})" for k, n in counts.items()]

    def lines(self) -> list[str]:
        """One log line per category, listing its parameter groups."""
        out = []
        for which in ("loaded", "reinitialised", "fresh", "ignored"):
            items = getattr(self, which)
            if items:
                out.append(f"{which}: {len(items)} tensors: {', '.join(self.groups(which))}")
        return out


def _read_orbax(p: epath.Path) -> Variables:
    if (p / "variables").exists() or (p / "params").exists() or (p / "state").exists():
        step_dir = p
    else:
        steps = sorted(int(s.name) for s in p.iterdir() if s.name.isdigit())
        if not steps:
            raise FileNotFoundError(f"{p}: no checkpoint (no step folders, no params)")
        step_dir = p / str(steps[-1])
    ckptr = ocp.StandardCheckpointer()
    if (step_dir / "variables").exists():
        return ckptr.restore(step_dir / "variables")
    if (step_dir / "params").exists():
        return {"params": ckptr.restore(step_dir / "params")}
    state = ckptr.restore(step_dir / "state")
    return {"params": state["params"], **(state.get("model_state") or {})}


def read_variables(path: str) -> Variables:
    """{"params": ..., **model_state} of a weights file or checkpoint folder (module docstring)."""
    p = epath.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if p.is_dir():
        return _read_orbax(p)
    if p.suffix in (".pth", ".pt", ".bin", ".safetensors", ".npz"):
        sd = convert.strip_prefix(convert.load_state_dict(path))
        if any(k.startswith(("segformer.", "encoder.", "stages.")) for k in sd):
            sd, _ = convert.mit_state_dict_from_hf(sd)
        # BatchNorm running statistics (HRNet, WGNet) become the `batch_stats` collection.
        return convert.variables_from_torch_names(sd)
    tree = serialization.msgpack_restore(p.read_bytes())
    return tree if isinstance(tree.get("params"), dict) else {"params": tree}


def _same_layout(loaded: Variables, fresh: Variables) -> Variables:
    """Block groups of `loaded` in `fresh`'s layout (unrolled `<group>/<i>` or scanned `/blocks`)."""
    loaded = convert.unstack_block_groups(loaded)
    return convert.stack_block_groups(loaded) if convert.has_scanned_groups(fresh) else loaded


def load_into(
    fresh: Variables,
    loaded: Variables,
    *,
    take: str = "",
    reinit: str = "",
    rename: Sequence[tuple[str, str]] = (),
    source: str = "init",
) -> tuple[Variables, InitReport]:
    """Variables `loaded` merged into `fresh` (a freshly initialised tree of the model).

    Shapes: every taken leaf must have the fresh leaf's shape. `take` (regex searched in each fresh
    path; "" = every path) selects what comes from the file, `reinit` (regex; "" = none) keeps matching
    paths fresh, `rename` ((regex, replacement), ...) rewrites the file's paths first. A taken path
    the file lacks, or of another shape, is an error naming it (and `source`). Returns (variables as
    numpy, report).
    """
    loaded = _same_layout(loaded, fresh)
    flat_loaded = traverse_util.flatten_dict(loaded, sep="/")
    for pattern, repl in rename:
        flat_loaded = {re.sub(pattern, repl, k): v for k, v in flat_loaded.items()}
    flat_fresh = traverse_util.flatten_dict(fresh, sep="/")
    take_rx = re.compile(take) if take else None
    reinit_rx = re.compile(reinit) if reinit else None
    merged, loaded_paths, reinit_paths, fresh_paths = {}, [], [], []
    missing, mismatched = [], []
    for name, value in flat_fresh.items():
        if reinit_rx is not None and reinit_rx.search(name):
            merged[name] = value
            reinit_paths.append(name)
        elif take_rx is not None and not take_rx.search(name):
            merged[name] = value
            fresh_paths.append(name)
        elif name not in flat_loaded:
            missing.append(name)
        elif tuple(np.shape(flat_loaded[name])) != tuple(np.shape(value)):
            mismatched.append(
                f"{name}: file {tuple(np.shape(flat_loaded[name]))}, model {tuple(np.shape(value))}"
            )
        else:
            merged[name] = np.asarray(flat_loaded[name], dtype=value.dtype)
            loaded_paths.append(name)
    if missing or mismatched:
        problems = [f"missing {m}" for m in missing[:5]] + mismatched[:5]
        more = len(missing) + len(mismatched) - len(problems)
        raise ValueError(
            f"{source}: {len(missing)} missing, {len(mismatched)} mis-shaped: "
            + "; ".join(problems)
            + (f"; and {more} more" if more > 0 else "")
            + " (leave them fresh with train.init_reinit or narrow train.init_take)"
        )
    used = set(loaded_paths)
    report = InitReport(
        loaded=sorted(loaded_paths), reinitialised=sorted(reinit_paths), fresh=sorted(fresh_paths),
        ignored=sorted(k for k in flat_loaded if k not in used),
    )  # fmt: skip
    return traverse_util.unflatten_dict(merged, sep="/"), report
