"""Optimizer and learning-rate schedules: the official AdamW + MultiStep recipe, plus common options.

The official loop (torch MultiStepLR, gamma 0.1) calls `scheduler.step()` at the start of every epoch,
before training, so each decay lands one epoch early: 0-indexed epoch e trains with
lr * gamma ** (number of milestones <= e + 1). `one_epoch_early=True` reproduces that; False gives the
textbook schedule (milestones <= e).
"""

from collections.abc import Sequence

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
) -> optax.Schedule:
    """Learning rate per optimizer step (shapes: step () int -> lr () float32).

    kind: "multistep" (the official MultiStepLR), "cosine" (to 0 at total_steps) or "constant". A linear
    warm-up from 0 over `warmup_steps` multiplies any of them.
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
        base = optax.cosine_decay_schedule(base_lr, max(1, total_steps - warmup_steps))
    elif kind == "constant":
        base = optax.constant_schedule(base_lr)
    else:
        raise ValueError(f"unknown schedule {kind!r}; known: multistep, cosine, constant")

    if warmup_steps <= 0:
        return base

    def schedule(step):
        warm = jnp.minimum(1.0, (step + 1) / warmup_steps)
        shifted = base(jnp.maximum(step - warmup_steps, 0)) if kind == "cosine" else base(step)
        return warm * shifted

    return schedule


def make_optimizer(
    schedule: optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    clip_grad_norm: float = 0.0,
) -> optax.GradientTransformation:
    """AdamW as torch.optim.AdamW(params, lr) in the official code, with optional global-norm clipping.

    Weight decay applies to every parameter (one param group, no exclusion of norms or biases), and is
    decoupled and scaled by the learning rate as in torch. `clip_grad_norm` <= 0 means no clipping.
    """
    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if clip_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(clip_grad_norm), adamw)
    return adamw
