"""Orbax checkpoints: the train state and the grain iterator saved together, keep-N and keep-best.

Layout of a workdir:
  checkpoints/<step>/state/      the whole TrainState (params, model state, AdamW moments, step, rng)
  checkpoints/<step>/data_iter/  process_<i>-of-<n>.json: each host's grain iterator state
  best/<step>/variables/         {"params", **model_state} of the evaluation with the best task metric

Resume order (see docs/training.md): the latest step of checkpoints/ wins; otherwise `init_from` loads
variables through `training.init` (take / re-initialise / rename, with a report); otherwise the run
starts from random init.
"""

from typing import Any

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

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


def save_best_variables(
    manager: ocp.CheckpointManager, step: int, variables: Any, metric: str, value: float
) -> bool:
    """Keeps the variables of the evaluation with the best `metric` (the manager drops worse ones)."""
    return manager.save(
        step,
        args=ocp.args.Composite(variables=ocp.args.StandardSave(variables)),
        metrics={metric: float(value)},
    )
