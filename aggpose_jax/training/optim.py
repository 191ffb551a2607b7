"""Optimizer and learning-rate schedules: the official AdamW + MultiStep recipe, plus common options.

The official loop (torch MultiStepLR, gamma 0.1) calls `scheduler.step()` at the start of every epoch,
before training, so each decay lands one epoch early: 0-indexed epoch e trains with
lr * gamma ** (number of milestones <= e + 1). `one_epoch_early=True` reproduces that; False gives the
textbook schedule (milestones <= e).
"""

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax


def multistep_boundaries(
    milestones_epochs: Sequence[int], steps_per_epoch: int, one_epoch_early: bool
) -> tuple[int, ...]:
    """Optimizer steps at which the learning rate is multiplied by gamma (shapes: scalars)."""
    shift = 1 if one_epoch_early else 0
    return tuple(max(0, (int(m) - shift) * steps_per_epoch) for m in sorted(milestones_epochs))


def make_lr_schedule(
    *,
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    kind: str = "multistep",
    milestones_epochs: Sequence[int] = (),
    gamma: float = 0.1,
    one_epoch_early: bool = True,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    decay_epochs: int = -1,
    restart_epochs: int = 16,
    restart_mult: int = 2,
) -> optax.Schedule:
    """Learning rate per optimizer step (shapes: step () int -> lr () float32).

    kind: "multistep" (the official MultiStepLR); "cosine", from base_lr to `min_lr` over
    `decay_epochs` (-1: the whole run after warm-up), then held (WGNet: to 1e-5 at epoch 170 of 200);
    "sgdr" (Loshchilov & Hutter 2017), cosine cycles from base_lr to `min_lr` restarting after
    `restart_epochs`, each cycle `restart_mult` times longer than the last (RAM + GPR: T0 = 16,
    T_mult = 2); or "constant". A linear warm-up from 0 over `warmup_steps` multiplies any of them.
    """
    if kind == "multistep":
        bounds = jnp.asarray(
            multistep_boundaries(milestones_epochs, steps_per_epoch, one_epoch_early)
            or (2**31 - 1,)
        )
        gamma_ = float(gamma) if milestones_epochs else 1.0

        def base(step):
            return base_lr * gamma_ ** jnp.sum(step >= bounds).astype(jnp.float32)

    elif kind == "cosine":
        steps = decay_epochs * steps_per_epoch if decay_epochs > 0 else total_steps - warmup_steps
        alpha = min_lr / base_lr if base_lr else 0.0
        base = optax.cosine_decay_schedule(base_lr, max(1, steps), alpha=alpha)
    elif kind == "sgdr":
        base = sgdr_schedule(
            base_lr, min_lr, restart_epochs * steps_per_epoch, restart_mult, total_steps
        )
    elif kind == "constant":
        base = optax.constant_schedule(base_lr)
    else:
        raise ValueError(f"unknown schedule {kind!r}; known: multistep, cosine, sgdr, constant")

    if warmup_steps <= 0:
        return base

    def schedule(step):
        warm = jnp.minimum(1.0, (step + 1) / warmup_steps)
        decays = kind in ("cosine", "sgdr")
        shifted = base(jnp.maximum(step - warmup_steps, 0)) if decays else base(step)
        return warm * shifted

    return schedule


def sgdr_schedule(
    base_lr: float, min_lr: float, first_cycle_steps: int, mult: int, total_steps: int
) -> optax.Schedule:
    """SGDR: cosine from base_lr to min_lr within each cycle; cycle i lasts first * mult**i steps.

    Shapes: step () int -> lr () float32. Cycles are listed up to `total_steps`.
    """
    starts, length = [0], max(1, first_cycle_steps)
    while starts[-1] + length < max(total_steps, 1):
        starts.append(starts[-1] + length)
        length *= mult
    starts_arr = jnp.asarray(starts)
    lengths = jnp.asarray([first_cycle_steps * mult**i for i in range(len(starts))])

    def schedule(step):
        cycle = jnp.sum(step >= starts_arr) - 1
        t = (step - starts_arr[cycle]) / jnp.maximum(lengths[cycle], 1)
        t = jnp.clip(t, 0.0, 1.0)
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + jnp.cos(jnp.pi * t))

    return schedule


def make_optimizer(
    schedule: optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    clip_grad_norm: float = 0.0,
    no_decay: str = "",
) -> optax.GradientTransformation:
    """AdamW as torch.optim.AdamW(params, lr) in the official code, with optional global-norm clipping.

    Weight decay is decoupled and scaled by the learning rate as in torch. By default it applies to
    every parameter (the official code: one param group); `no_decay` is a regex of param paths
    ("block1/0/norm1/scale", searched) that it skips (SimMIM: the mask token, biases and norms).
    `clip_grad_norm` <= 0 means no clipping.
    """
    mask = None
    if no_decay:
        pattern = re.compile(no_decay)

        def mask(params):
            return jax.tree_util.tree_map_with_path(
                lambda path, _: (
                    not pattern.search(
                        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
                    )
                ),
                params,
            )

    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    if clip_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(clip_grad_norm), adamw)
    return adamw
