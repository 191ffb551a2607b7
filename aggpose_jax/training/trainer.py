"""train_and_evaluate: the one function that reads a config and runs a training job.

Order of a run: mesh -> model, schedule, AdamW -> eval_shape(init) -> shardings -> jit(init,
out_shardings) -> resume (latest checkpoint of the workdir: state + grain iterator) or `init_from`
(params only) or `init_from_mit` (MiT ImageNet backbone) -> the loop (host batch -> global array ->
donated, jitted step) with logging, periodic checkpoints and evaluation (best params kept by AP) ->
final checkpoint, evaluation and pictures.

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
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from aggpose_jax.keypoints import metainfo
from aggpose_jax.models import summary as model_summary
from aggpose_jax.models import variants
from aggpose_jax.training import checkpoint as ckpt_lib
from aggpose_jax.training import logger as log_lib
from aggpose_jax.training import optim, steps
from aggpose_jax.training import sharding as sharding_lib
from aggpose_jax.training.state import make_init_fn

log = logging.getLogger(__name__)

EvalFn = Callable[[Callable[[np.ndarray], np.ndarray], pathlib.Path], dict[str, float]]


class NonFiniteError(FloatingPointError):
    """A train step produced a non-finite loss or gradient (the state was left untouched)."""


def make_model_from_config(config: ml_collections.ConfigDict):
    """The flax module named by config.model, with the keypoint count of config.data."""
    m = config.model
    overrides = dict(
        dtype=jnp.dtype(m.dtype), remat=m.remat, scan_blocks=m.scan_blocks,
        drop_path_rate=m.drop_path_rate,
    )  # fmt: skip
    if m.attention_impl:
        overrides["attention_impl"] = m.attention_impl
    if m.embed_dims:
        overrides["embed_dims"] = tuple(m.embed_dims)
    if m.depths:
        overrides["depths"] = tuple(m.depths)
    num_keypoints = metainfo.get_format(config.data.keypoint_format).num_keypoints
    return variants.make_model(m.name, num_keypoints, **overrides)


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


def _to_float(x) -> float:
    return float(np.asarray(x))


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | pathlib.Path,
    *,
    train_iter: Iterator[dict[str, np.ndarray]],
    steps_per_epoch: int | None = None,
    eval_fn: EvalFn | None = None,
    after_train: Callable[[Callable, pathlib.Path], None] | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Trains (resuming from the workdir if it holds a checkpoint) and evaluates; returns a summary.

    Shapes: train_iter yields host-local batches {"image" (b, H, W, 3) uint8 RGB,
    "heatmaps" (b, H/4, W/4, K), "target_weight" (b, K)} with b = global_batch_size / process_count;
    a grain iterator is saved with the state. eval_fn(predict, workdir) -> {"AP": ..., ...} runs the
    evaluation with predict(images (b, H, W, 3) uint8, this process's rows) -> their heatmaps
    (b, H/4, W/4, K); predict is collective, so eval_fn and after_train(predict, workdir), which
    draws pictures, run on every process. `model` replaces the module built from config.model
    (tests use a small conv net).
    """
    workdir = pathlib.Path(workdir)
    eval_fn = eval_fn if config.eval.enabled else None
    workdir.mkdir(parents=True, exist_ok=True)
    tc, oc = config.train, config.optim
    mesh = sharding_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    n_dev = mesh.devices.size
    gbs = tc.global_batch_size
    if gbs % n_dev or gbs % tc.grad_accum_steps:
        raise ValueError(f"global batch {gbs} must divide by {n_dev} devices and the accumulation")
    spe = tc.steps_per_epoch if tc.steps_per_epoch > 0 else steps_per_epoch
    if not spe:
        raise ValueError("steps_per_epoch unknown: set train.steps_per_epoch or pass it")
    total_steps = tc.total_steps if tc.total_steps > 0 else tc.num_epochs * spe
    ckpt_every = tc.checkpoint_every_steps if tc.checkpoint_every_steps > 0 else spe
    eval_every = {-1: spe, 0: 0}.get(config.eval.every_steps, config.eval.every_steps)

    model = make_model_from_config(config) if model is None else model
    schedule = optim.make_lr_schedule(
        base_lr=oc.lr, total_steps=total_steps, steps_per_epoch=spe, kind=oc.schedule,
        milestones_epochs=oc.milestones_epochs, gamma=oc.gamma,
        one_epoch_early=oc.one_epoch_early, warmup_steps=oc.warmup_steps,
    )  # fmt: skip
    tx = optim.make_optimizer(
        schedule, b1=oc.b1, b2=oc.b2, eps=oc.eps, weight_decay=oc.weight_decay,
        clip_grad_norm=oc.clip_grad_norm,
    )  # fmt: skip

    init_fn = make_init_fn(model, tx, tuple(config.data.input_hw))
    rng = jax.random.PRNGKey(config.seed)
    abstract = jax.eval_shape(init_fn, rng)
    state_sh = sharding_lib.infer_shardings(
        abstract, mesh, rules=tuple(map(tuple, config.mesh.rules)),
        min_size=config.mesh.fsdp_min_size,
    )  # fmt: skip
    t_init = time.perf_counter()
    state = jax.jit(init_fn, out_shardings=state_sh)(rng)
    log.info("initialised %s on a %s mesh in %.1f s", config.model.name, dict(mesh.shape),
             time.perf_counter() - t_init)  # fmt: skip

    manager = ckpt_lib.make_manager(
        workdir / "checkpoints", max_to_keep=tc.keep_checkpoints, async_save=tc.async_checkpointing
    )
    best_manager = ckpt_lib.make_manager(
        workdir / "best", max_to_keep=1, async_save=False, best_metric="AP"
    )
    if manager.latest_step() is not None:
        abstract_sh = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh
        )
        state = ckpt_lib.restore_train_state(manager, abstract_sh, train_iter)
        log.info("resumed from %s at step %d", manager.directory, int(state.step))
    elif tc.init_from:
        params, fresh = ckpt_lib.load_init_params(
            tc.init_from, state.params, reinit=tc.init_reinit, shardings=state_sh.params
        )
        state = state.replace(params=params)
        log.info("params from %s (re-initialised: %s)", tc.init_from, fresh or "none")
    elif tc.init_from_mit:
        params, report = ckpt_lib.load_mit_init(
            tc.init_from_mit, state.params, shardings=state_sh.params
        )
        state = state.replace(params=params)
        log.info(
            "MiT backbone from %s: %d tensors loaded, %d model tensors left initialised, "
            "%d file keys ignored", tc.init_from_mit, len(report["loaded"]),
            len(report["initialised"]), len(report["ignored"]),
        )  # fmt: skip

    train_step = steps.jit_train_step(
        steps.make_train_step(model, tx, schedule, grad_accum_steps=tc.grad_accum_steps),
        state_sh, mesh,
    )  # fmt: skip
    predict = steps.make_predict_fn(model, lambda: state.params, mesh)
    writer = log_lib.MetricWriter(workdir, tensorboard=config.log.tensorboard)
    peak = log_lib.device_peak_flops()
    start_step = int(state.step)
    summary: dict[str, Any] = {"start_step": start_step, "preempted": False}
    best_ap = -math.inf

    def run_eval(step: int) -> None:
        nonlocal best_ap
        if eval_fn is None:
            return
        stats = eval_fn(predict, workdir)
        writer.write(step, {f"eval/{k}": float(v) for k, v in stats.items()})
        summary["eval"] = stats
        log.info("step %d: AP %.4f", step, stats.get("AP", float("nan")))
        if stats.get("AP", -1) > best_ap:
            best_ap = stats["AP"]
            ckpt_lib.save_best_params(best_manager, step, state.params, best_ap)

    bar = None
    if config.log.progress_bar and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(total=total_steps * gbs, initial=start_step * gbs, unit="img", unit_scale=True,
                   desc=config.exp_name or "train", dynamic_ncols=True)  # fmt: skip
    compiled, flops_per_step = None, None
    if peak:  # MFU only where the device's peak is known (not on CPU): skip tracing the forward.
        # Model FLOPs (6 x forward MACs per image): XLA's cost analysis counts a scan body once.
        flops_per_step = 6 * model_summary.forward_macs(model, tuple(config.data.input_hw))[0] * gbs
    pending: tuple[int, Any] | None = None  # (step, metrics) not yet fetched: keeps dispatch async
    t_log, wait_s, steps_since = time.perf_counter(), 0.0, 0
    step = start_step

    def check(pending_metrics) -> dict[str, float]:
        s, m = pending_metrics
        host = {k: _to_float(v) for k, v in m.items()}
        if host["is_finite"] < 1.0:
            raise NonFiniteError(
                f"non-finite loss or gradient at step {s} (loss={host['loss']}, "
                f"grad_norm={host['grad_norm']}); the update was skipped, no checkpoint written "
                f"after step {s - 1}"
            )
        return host

    try:
        with _StopFlag() as stop:
            while step < total_steps:
                t0 = time.perf_counter()
                host_batch = next(train_iter)
                wait_s += time.perf_counter() - t0
                if tc.debug_nan_step == step + 1:
                    host_batch = dict(
                        host_batch, heatmaps=np.full_like(host_batch["heatmaps"], np.nan)
                    )
                batch = sharding_lib.make_global_batch(
                    {k: host_batch[k] for k in ("image", "heatmaps", "target_weight")}, mesh
                )
                if compiled is None:
                    t_c = time.perf_counter()
                    compiled = train_step.lower(state, batch).compile()
                    log.info("compiled the train step in %.1f s", time.perf_counter() - t_c)
                state, metrics = compiled(state, batch)
                step += 1
                steps_since += 1
                if pending is not None:
                    last = check(pending)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last['loss']:.3g}", lr=f"{last['lr']:.2g}")
                pending = (step, metrics)
                if bar is not None:
                    bar.update(gbs)

                is_last = step == total_steps
                if step % tc.log_every_steps == 0 or is_last:
                    host = check(pending)
                    dt = time.perf_counter() - t_log
                    ips = steps_since * gbs / dt
                    mfu = None
                    if peak and flops_per_step:
                        mfu = flops_per_step * steps_since / dt / (n_dev * peak)
                    writer.write(step, {
                        "train/loss": host["loss"], "train/grad_norm": host["grad_norm"],
                        "train/param_norm": host["param_norm"], "train/lr": host["lr"],
                        "perf/img_per_s": ips, "perf/img_per_s_per_device": ips / n_dev,
                        "perf/data_wait_frac": wait_s / dt, "perf/mfu": mfu,
                        "perf/gflops_per_img": flops_per_step / gbs / 1e9 if flops_per_step else None,
                        "epoch": step / spe,
                    })  # fmt: skip
                    t_log, wait_s, steps_since = time.perf_counter(), 0.0, 0

                if stop.should_stop(step):
                    check(pending)
                    ckpt_lib.save_train_state(manager, step, state, train_iter, force=True)
                    manager.wait_until_finished()
                    log.warning("stopped by signal: saved step %d", step)
                    summary["preempted"] = True
                    break
                if step % ckpt_every == 0 or is_last:
                    check(pending)
                    ckpt_lib.save_train_state(manager, step, state, train_iter, force=is_last)
                if (eval_every and step % eval_every == 0) or (is_last and eval_fn is not None):
                    run_eval(step)

    finally:
        # Pending async saves are of good states: let them land even when the loop raised.
        manager.wait_until_finished()
    if bar is not None:
        bar.close()
    if pending is not None:
        summary["last_metrics"] = check(pending)
    manager.wait_until_finished()
    manager.close()
    best_manager.close()
    summary["step"] = step
    if not summary["preempted"]:
        if jax.process_index() == 0:
            log_lib.plot_loss_curve(writer.path, workdir / "loss_curve.png", config.exp_name)
        if after_train is not None:  # on every process: predict is collective
            after_train(predict, workdir)
    writer.close()
    summary["state"] = state
    return summary
