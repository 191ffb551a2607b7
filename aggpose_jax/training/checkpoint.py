"""Orbax checkpoints: the train state and the grain iterator saved together, keep-N and keep-best.

Layout of a workdir:
  checkpoints/<step>/state/      the whole TrainState (params, AdamW moments, step, rng), sharded arrays
  checkpoints/<step>/data_iter/  process_<i>-of-<n>.json: each host's grain iterator state
  best/<step>/params/            params only, of the evaluation with the highest AP (metric "AP")

Resume order (see docs/training.md): the latest step of checkpoints/ wins; otherwise `init_from` loads
params only (with the `reinit` params left fresh); otherwise the run starts from random init.
"""

import re
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import serialization, traverse_util
from jax.experimental import multihost_utils

from aggpose_jax.models import convert, mit_weights
from aggpose_jax.training.state import TrainState


def make_manager(
    directory: str | epath.Path,
    *,
    max_to_keep: int = 3,
    async_save: bool = True,
    best_metric: str | None = None,
) -> ocp.CheckpointManager:
    """A CheckpointManager keeping the last `max_to_keep` steps, or the best by `best_metric` (max)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        best_fn=(lambda m: float(m[best_metric])) if best_metric else None,
        best_mode="max",
        keep_checkpoints_without_metrics=best_metric is None,
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(epath.Path(directory).absolute(), options=options)


def tree_is_finite(tree: Any) -> bool:
    """True when every float leaf of the pytree is finite (one small device-to-host transfer)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return bool(jnp.all(jnp.stack(leaves))) if leaves else True


def _is_grain_iter(it: Any) -> bool:
    return isinstance(it, grain.DataLoaderIterator | grain.DatasetIterator)


def save_train_state(
    manager: ocp.CheckpointManager,
    step: int,
    state: TrainState,
    data_iter: Any = None,
    *,
    force: bool = False,
) -> bool:
    """Saves state (+ the grain iterator's position); refuses non-finite params. Returns saved?"""
    if not tree_is_finite(state.params):
        raise FloatingPointError(f"refusing to checkpoint non-finite params at step {step}")
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None and _is_grain_iter(data_iter):
        items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    return manager.save(step, args=ocp.args.Composite(**items), force=force)


def restore_train_state(
    manager: ocp.CheckpointManager,
    abstract_state: TrainState,
    data_iter: Any = None,
    step: int | None = None,
) -> TrainState:
    """Restores the state (with the shardings of `abstract_state`) and, in place, the iterator."""
    step = manager.latest_step() if step is None else step
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None and _is_grain_iter(data_iter):
        items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]


def save_best_params(manager: ocp.CheckpointManager, step: int, params: Any, ap: float) -> bool:
    """Keeps the params of the evaluation with the best AP (the manager drops worse ones)."""
    metrics = {"AP": float(ap)}
    return manager.save(
        step, args=ocp.args.Composite(params=ocp.args.StandardSave(params)), metrics=metrics
    )


def _read_params_any(path: str) -> dict:
    """Params as a nested dict of numpy arrays, from a flax msgpack file or an orbax checkpoint."""
    p = epath.Path(path)
    if p.is_file():
        return serialization.msgpack_restore(p.read_bytes())
    # An orbax checkpoint: a manager dir (take its latest step), a step dir, or an item dir.
    if (p / "params").exists() or (p / "state").exists():
        step_dir = p
    else:
        steps = sorted(int(s.name) for s in p.iterdir() if s.name.isdigit())
        if not steps:
            raise FileNotFoundError(f"no params checkpoint at {path}")
        step_dir = p / str(steps[-1])
    ckptr = ocp.StandardCheckpointer()
    if (step_dir / "params").exists():
        return ckptr.restore(step_dir / "params")
    state = ckptr.restore(step_dir / "state")
    return state["params"]


def load_mit_init(path: str, fresh_params: Any, *, shardings: Any = None) -> tuple[Any, dict]:
    """ImageNet MiT weights (official SegFormer `mit_b*.pth` or Hugging Face Segformer layout, any
    file `convert.load_state_dict` reads) into the backbone of freshly initialised params.

    Shapes: every backbone tensor of the file must match the model's. Returns (params placed with
    `shardings` if given, the report of `mit_weights.load_mit_backbone`: 'loaded', 'initialised', 'ignored').
    """
    host = jax.tree.map(np.asarray, multihost_utils.process_allgather(fresh_params, tiled=True))
    params, report = mit_weights.load_mit_backbone(host, convert.load_state_dict(path))
    if shardings is not None:
        params = jax.device_put(params, shardings)
    return params, report


def load_init_params(
    path: str, fresh_params: Any, *, reinit: str = "", shardings: Any = None
) -> tuple[Any, list[str]]:
    """Params of `path` merged into `fresh_params` (a freshly initialised tree of the same model).

    The file's block groups may be unrolled or scanned, whatever the model uses.
    Shapes: every loaded leaf must match the fresh leaf's shape, except the paths matching the regex
    `reinit` (e.g. "final_layer/fc2" when going from 17 COCO to 21 infant joints), which keep their fresh
    values. Returns (params placed with `shardings` if given, the list of re-initialised paths).
    """
    # Either block-group layout loads into either (unrolled `<group>/<i>`, scanned `<group>/blocks`).
    loaded = convert.unstack_block_groups(_read_params_any(path))
    if convert.has_scanned_groups(fresh_params):
        loaded = convert.stack_block_groups(loaded)
    loaded = traverse_util.flatten_dict(loaded, sep="/")
    fresh = traverse_util.flatten_dict(fresh_params, sep="/")
    rx = re.compile(reinit) if reinit else None
    merged, kept_fresh = {}, []
    for name, value in fresh.items():
        if rx is not None and rx.search(name):
            merged[name] = value
            kept_fresh.append(name)
            continue
        if name not in loaded:
            raise KeyError(f"init_from {path}: missing param {name}")
        if tuple(np.shape(loaded[name])) != tuple(np.shape(value)):
            raise ValueError(
                f"init_from {path}: {name} has shape {np.shape(loaded[name])}, model wants "
                f"{np.shape(value)} (re-initialise it with train.init_reinit)"
            )
        merged[name] = np.asarray(loaded[name], dtype=value.dtype)
    params = traverse_util.unflatten_dict(merged, sep="/")
    if shardings is not None:
        params = jax.device_put(params, shardings)
    return params, kept_fresh
