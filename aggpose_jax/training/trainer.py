"""train_and_evaluate: the one function that reads a config and runs a training job for a task.

Order of a run: set-up (`setup.make_train_setup`: mesh, model sized by the task, schedule, AdamW,
sharded init, jitted step) -> resume (latest checkpoint of the workdir: state + grain iterator) or
`init_from` (`training.init`: take / re-initialise / rename, with a report) -> the loop (host batch ->
global array -> donated, jitted step) with logging, periodic checkpoints and evaluation (best variables
kept by the task's metric) -> final checkpoint, evaluation and pictures.

SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and returns ("preempted"). With
several processes the decision is taken at a preemption sync point so that every host saves the same step.
"""

import logging
import math
import pathlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from aggpose_jax import runtime
from aggpose_jax.models import summary as model_summary
from aggpose_jax.tasks import Predictor, Task, make_predictor
from aggpose_jax.training import checkpoint as ckpt_lib
from aggpose_jax.training import init as init_lib
from aggpose_jax.training import logger as log_lib
from aggpose_jax.training.setup import TrainSetup, make_train_setup

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A train step produced a non-finite loss or gradient (the state was left untouched)."""


EvalFn = Callable[[Predictor, pathlib.Path], dict[str, float]]


class _StopFlag:
    """SIGTERM/SIGINT -> stop at the next step boundary (single process; see module docstring)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        if jax.process_count() == 1:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        log.warning("signal %d: saving at the next step boundary", signum)
        self.requested = True

    def should_stop(self, step: int) -> bool:
        if jax.process_count() > 1:
            return bool(multihost_utils.reached_preemption_sync_point(step)) or self.requested
        return self.requested

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _initial_state(setup: TrainSetup, tc: ml_collections.ConfigDict, manager, train_iter):
    """The latest checkpoint of the run (state + iterator), else `init_from`, else the fresh state."""
    state = setup.state
    if manager.latest_step() is not None:
        state = ckpt_lib.restore_train_state(manager, setup.abstract_state, train_iter)
        log.info("resumed from %s at step %d", manager.directory, int(state.step))
    elif tc.init_from:
        host = multihost_utils.process_allgather(state.variables, tiled=True)
        variables, report = init_lib.load_into(
            jax.tree.map(np.asarray, host), init_lib.read_variables(tc.init_from),
            take=tc.init_take, reinit=tc.init_reinit, rename=tuple(map(tuple, tc.init_rename)),
            source=f"init_from {tc.init_from}",
        )  # fmt: skip
        shardings = {"params": setup.state_shardings.params, **setup.state_shardings.model_state}
        variables = jax.device_put(variables, shardings)
        params = variables.pop("params")
        state = state.replace(params=params, model_state=variables)
        log.info("init_from %s:", tc.init_from)
        for line in report.lines():
            log.info("  %s", line)
    return state


def _check(pending: tuple[int, Any]) -> dict[str, float]:
    """Fetches a step's metrics; a non-finite step stops the run with its number."""
    s, metrics = pending
    host = {k: float(np.asarray(v)) for k, v in metrics.items()}
    if host["is_finite"] < 1.0:
        raise NonFiniteError(
            f"non-finite loss or gradient at step {s} (loss={host['loss']}, "
            f"grad_norm={host['grad_norm']}); the update was skipped, no checkpoint written "
            f"after step {s - 1}"
        )
    return host


def _poison(host_batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tests: every float array of the batch set to NaN (the images are uint8 and stay)."""
    return {
        k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in host_batch.items()
    }


class _Meter:
    """Throughput, data wait and MFU between two log lines (MFU only on devices with a known peak)."""

    def __init__(self, setup: TrainSetup, config: ml_collections.ConfigDict):
        self.gbs, self.n_dev = config.train.global_batch_size, setup.mesh.devices.size
        self.spe = setup.steps_per_epoch
        self.peak = log_lib.device_peak_flops()
        self.flops_per_step = None
        if self.peak:  # Model FLOPs: 6 x forward MACs per image (XLA counts a scan body once).
            macs = model_summary.forward_macs(setup.model, tuple(config.data.input_hw))[0]
            self.flops_per_step = 6 * macs * self.gbs
        self.reset()

    def reset(self) -> None:
        self.t0, self.wait_s, self.steps = time.perf_counter(), 0.0, 0

    def scalars(self, host: dict[str, float], step: int) -> dict[str, float | None]:
        dt = time.perf_counter() - self.t0
        ips = self.steps * self.gbs / dt
        mfu = None
        if self.flops_per_step:
            mfu = self.flops_per_step * self.steps / dt / (self.n_dev * self.peak)
        out = {f"train/{k}": v for k, v in host.items() if k != "is_finite"}
        out.update({
            "perf/img_per_s": ips, "perf/img_per_s_per_device": ips / self.n_dev,
            "perf/data_wait_frac": self.wait_s / dt, "perf/mfu": mfu,
            "perf/gflops_per_img": self.flops_per_step / self.gbs / 1e9 if mfu is not None else None,
            "epoch": step / self.spe,
        })  # fmt: skip
        self.reset()
        return out


def _progress_bar(config: ml_collections.ConfigDict, total_steps: int, start_step: int):
    if not config.log.progress_bar or jax.process_index() != 0:
        return None
    from tqdm import tqdm

    gbs = config.train.global_batch_size
    return tqdm(total=total_steps * gbs, initial=start_step * gbs, unit="img", unit_scale=True,
                desc=config.exp_name or "train", dynamic_ncols=True)  # fmt: skip


def _loop(setup, config, task, train_iter, manager, current, run_eval, writer, summary) -> None:
    """Steps until the end or a stop signal; `current["state"]` always holds the latest state."""
    tc = config.train
    ckpt_every = (
        tc.checkpoint_every_steps if tc.checkpoint_every_steps > 0 else setup.steps_per_epoch
    )
    eval_every = {-1: setup.steps_per_epoch, 0: 0}.get(
        config.eval.every_steps, config.eval.every_steps
    )
    step, total = int(current["state"].step), setup.total_steps
    meter, bar = _Meter(setup, config), _progress_bar(config, total, step)
    compiled, pending = None, None  # pending: (step, metrics) not yet fetched (async dispatch)
    with _StopFlag() as stop:
        while step < total:
            t0 = time.perf_counter()
            host_batch = next(train_iter)
            meter.wait_s += time.perf_counter() - t0
            if tc.debug_nan_step == step + 1:
                host_batch = _poison(host_batch)
            batch = runtime.make_global_batch(
                {k: host_batch[k] for k in task.batch_keys}, setup.mesh
            )
            if compiled is None:
                t_c = time.perf_counter()
                compiled = setup.train_step.lower(current["state"], batch).compile()
                log.info("compiled the train step in %.1f s", time.perf_counter() - t_c)
            current["state"], metrics = compiled(current["state"], batch)
            step, meter.steps = step + 1, meter.steps + 1
            if pending is not None:
                last = _check(pending)
                if bar is not None:
                    bar.set_postfix(loss=f"{last['loss']:.3g}", lr=f"{last['lr']:.2g}")
            pending = (step, metrics)
            if bar is not None:
                bar.update(tc.global_batch_size)
            is_last = step == total
            if step % tc.log_every_steps == 0 or is_last:
                writer.write(step, meter.scalars(_check(pending), step))
            if stop.should_stop(step):
                _check(pending)
                ckpt_lib.save_train_state(manager, step, current["state"], train_iter, force=True)
                manager.wait_until_finished()
                log.warning("stopped by signal: saved step %d", step)
                summary["preempted"] = True
                break
            if step % ckpt_every == 0 or is_last:
                _check(pending)
                ckpt_lib.save_train_state(
                    manager, step, current["state"], train_iter, force=is_last
                )
            if (eval_every and step % eval_every == 0) or is_last:
                run_eval(step)
    if bar is not None:
        bar.close()
    summary["step"] = step
    if pending is not None:
        summary["last_metrics"] = _check(pending)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    task: Task,
    train_iter: Iterator[dict[str, np.ndarray]],
    steps_per_epoch: int | None = None,
    eval_fn: EvalFn | None = None,
    after_train: Callable[[Predictor, pathlib.Path], None] | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Trains `task` (resuming from the workdir if it holds a checkpoint) and evaluates; a summary.

    Shapes: train_iter yields host-local batches holding the task's `batch_keys`, "image"
    (b, H, W, 3) uint8 RGB, with b = global_batch_size / process_count; a grain iterator is saved
    with the state. eval_fn(predictor, workdir) -> {task.best_metric: ..., ...} and
    after_train(predictor, workdir) (pictures) run on every process: the predictor is collective.
    `model` replaces the module built from config.model (tests use small nets).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    eval_fn = eval_fn if config.eval.enabled else None
    tc = config.train
    setup = make_train_setup(config, task, steps_per_epoch=steps_per_epoch, model=model)
    manager = ckpt_lib.make_manager(
        workdir / "checkpoints", max_to_keep=tc.keep_checkpoints, async_save=tc.async_checkpointing
    )
    best_manager = ckpt_lib.make_manager(
        workdir / "best", max_to_keep=1, async_save=False, best_metric=task.best_metric
    )
    current = {"state": _initial_state(setup, tc, manager, train_iter)}
    predictor = make_predictor(task, setup.apply, setup.mesh, lambda: current["state"].variables)
    writer = log_lib.MetricWriter(workdir, tensorboard=config.log.tensorboard)
    summary: dict[str, Any] = {"start_step": int(current["state"].step), "preempted": False}
    best = {"value": -math.inf}

    def run_eval(step: int) -> None:
        if eval_fn is None:
            return
        stats = eval_fn(predictor, workdir)
        writer.write(step, {f"eval/{k}": float(v) for k, v in stats.items()})
        summary["eval"] = stats
        value = stats.get(task.best_metric, -math.inf)
        log.info("step %d: %s %.4f", step, task.best_metric, value)
        if value > best["value"]:
            best["value"] = value
            variables = current["state"].variables
            ckpt_lib.save_best_variables(best_manager, step, variables, task.best_metric, value)

    try:
        _loop(setup, config, task, train_iter, manager, current, run_eval, writer, summary)
    finally:
        # Pending async saves are of good states: let them land even when the loop raised.
        manager.wait_until_finished()
    manager.close()
    best_manager.close()
    if not summary["preempted"]:
        if jax.process_index() == 0:
            log_lib.plot_loss_curve(writer.path, workdir / "loss_curve.png", config.exp_name)
        if after_train is not None:  # on every process: the predictor is collective
            after_train(predictor, workdir)
    writer.close()
    summary["state"] = current["state"]
    return summary
