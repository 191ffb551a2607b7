"""Everything a run sets up before its first step, shared by the trainer and the benchmarks.

mesh -> model (sized by the task) -> schedule and optimizer -> eval_shape(init) -> shardings ->
jit(init, out_shardings) -> the donated, jitted train step. Reads the config's `model`, `optim`,
`train`, `mesh` and `data.input_hw` groups.
"""

import dataclasses
import logging
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from aggpose_jax import runtime
from aggpose_jax.models import build, preprocess
from aggpose_jax.tasks import Task
from aggpose_jax.training import optim, steps
from aggpose_jax.training.state import TrainState, make_init_fn

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainSetup:
    """A run's model, optimizer, sharded initial state and jitted step (see `make_train_setup`)."""

    mesh: Mesh
    model: nn.Module
    apply: steps.ModelApply  # apply(variables, uint8 images, *, train, rngs, mutable)
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    state: TrainState
    abstract_state: TrainState  # ShapeDtypeStructs with the state's shardings (for restoring)
    state_shardings: Any
    train_step: Any  # jit(train_step), donating the state
    total_steps: int
    steps_per_epoch: int


def make_model(config: ml_collections.ConfigDict, task: Task) -> nn.Module:
    """config.model's family and variant, options from config.model.options, sized by the task."""
    m = config.model
    return build.make_model(
        m.family, m.variant, out_channels=task.out_channels, **m.options.to_dict()
    )


def make_apply(model: nn.Module) -> steps.ModelApply:
    """The model's apply on uint8 RGB images, normalised on the device (`models.preprocess`)."""

    def apply(variables, images, *, train=False, rngs=None, mutable=False, **inputs):
        x = preprocess.normalize_images(images)
        return model.apply(variables, x, train=train, rngs=rngs, mutable=mutable, **inputs)

    return apply


def compile_init(init: Any, *args: Any) -> Any:
    """Compiles a jitted init for `args`; on CPU without XLA's backend optimisations.

    Init runs once, and optimising its thousands of random draws dominates start-up on a CPU (a tiny
    HRNet: 60 s -> 4 s on 2 cores). The values agree with the optimised program's to float32 rounding.
    """
    lowered = init.lower(*args)
    if jax.default_backend() != "cpu":
        return lowered.compile()
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})


def make_train_setup(
    config: ml_collections.ConfigDict,
    task: Task,
    *,
    steps_per_epoch: int | None = None,
    model: nn.Module | None = None,
) -> TrainSetup:
    """Builds the run's set-up. `model` replaces the one of config.model (tests use small nets);
    `steps_per_epoch` is used when config.train.steps_per_epoch is -1 (from the data)."""
    tc, oc = config.train, config.optim
    mesh = runtime.make_mesh(config.mesh.data, config.mesh.fsdp)
    gbs, n_dev = tc.global_batch_size, mesh.devices.size
    if gbs % n_dev or gbs % tc.grad_accum_steps:
        raise ValueError(f"global batch {gbs} must divide by {n_dev} devices and the accumulation")
    spe = tc.steps_per_epoch if tc.steps_per_epoch > 0 else steps_per_epoch
    if not spe:
        raise ValueError("steps_per_epoch unknown: set train.steps_per_epoch or pass it")
    total_steps = tc.total_steps if tc.total_steps > 0 else tc.num_epochs * spe

    model = make_model(config, task) if model is None else model
    schedule = optim.make_lr_schedule(
        base_lr=oc.lr, total_steps=total_steps, steps_per_epoch=spe, kind=oc.schedule,
        milestones_epochs=oc.milestones_epochs, gamma=oc.gamma,
        one_epoch_early=oc.one_epoch_early, warmup_steps=oc.warmup_steps, min_lr=oc.min_lr,
        decay_epochs=oc.decay_epochs, restart_epochs=oc.restart_epochs,
        restart_mult=oc.restart_mult,
    )  # fmt: skip
    tx = optim.make_optimizer(
        schedule, b1=oc.b1, b2=oc.b2, eps=oc.eps, weight_decay=oc.weight_decay,
        clip_grad_norm=oc.clip_grad_norm, no_decay=oc.no_decay,
    )  # fmt: skip
    image = jnp.zeros((1, *config.data.input_hw, 3), jnp.float32)
    init_fn = make_init_fn(lambda key: model.init({"params": key}, image, train=False), tx)
    rng = jax.random.PRNGKey(config.seed)
    abstract = jax.eval_shape(init_fn, rng)
    state_sh = runtime.infer_shardings(
        abstract, mesh, rules=tuple(map(tuple, config.mesh.rules)),
        min_size=config.mesh.fsdp_min_size,
    )  # fmt: skip
    t0 = time.perf_counter()
    state = compile_init(jax.jit(init_fn, out_shardings=state_sh), rng)(rng)
    log.info("initialised the model on a %s mesh in %.1f s", dict(mesh.shape),
             time.perf_counter() - t0)  # fmt: skip
    apply = make_apply(model)
    step = steps.make_train_step(apply, task, tx, schedule, grad_accum_steps=tc.grad_accum_steps)
    abstract_sh = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh
    )
    return TrainSetup(
        mesh=mesh, model=model, apply=apply, schedule=schedule, tx=tx, state=state,
        abstract_state=abstract_sh, state_shardings=state_sh,
        train_step=steps.jit_train_step(step, state_sh, mesh), total_steps=total_steps,
        steps_per_epoch=spe,
    )  # fmt: skip
