"""The jitted train step: the task's loss, one optimizer update, model state (BatchNorm) carried along.

One train step = one optimizer update. With `grad_accum_steps` > 1 the global batch is split into that
many micro-batches whose gradients are averaged in a `lax.scan` (same update as one big batch, less
activation memory; model state passes through the micro-batches in order). Stochastic depth draws from
fold_in(state.rng, state.step), so a resumed run repeats the same masks. A step whose loss or gradient
is not finite leaves the state untouched and reports `is_finite` = 0; the trainer stops the run with
the step named.

BatchNorm statistics need no cross-device reduction here: under jit the batch axis of a sharded global
batch is one array, so the batch mean is already global.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from aggpose_jax import runtime
from aggpose_jax.tasks import Task
from aggpose_jax.training.state import TrainState

# apply(variables, images (B, H, W, 3) uint8, *, train, rngs, mutable) -> outputs or (outputs, state)
ModelApply = Callable[..., Any]
Batch = Mapping[str, jax.Array]


def make_train_step(
    apply: ModelApply,
    task: Task,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns train_step(state, batch) -> (state, metrics); not jitted (see `jit_train_step`).

    Shapes: batch holds the task's `batch_keys`, each (B, ...), "image" (B, H, W, 3) uint8 RGB;
    metrics are scalars: loss, grad_norm, param_norm, lr, is_finite, and the task's own.
    """

    def loss_fn(params, model_state, batch, rng):
        new_state = {}

        def model(images, **inputs):  # inputs: the task's other model inputs (e.g. a mask)
            outputs, updated = apply(
                {"params": params, **model_state}, images, train=True, rngs={"dropout": rng},
                mutable=list(model_state), **inputs,
            )  # fmt: skip
            new_state.update(updated)
            return outputs

        loss, aux = task.loss(model, batch)
        return loss, (aux, {**model_state, **new_state})

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        batch = {k: batch[k] for k in task.batch_keys}
        if grad_accum_steps == 1:
            (loss, (aux, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
        else:
            a = grad_accum_steps

            def split(x):
                # (B, ...) -> (A, B/A, ...) taking every A-th sample, so each micro-batch keeps
                # samples from every device's shard.
                return jnp.moveaxis(x.reshape(x.shape[0] // a, a, *x.shape[1:]), 1, 0)

            def body(carry, xs):
                loss_sum, grad_sum, ms = carry
                micro, i = xs
                (loss, (aux, ms)), grads = grad_fn(
                    state.params, ms, micro, jax.random.fold_in(rng, i)
                )
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads), ms), aux

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            carry = (jnp.zeros((), jnp.float32), zeros, state.model_state)
            xs = (jax.tree.map(split, batch), jnp.arange(a))
            (loss, grads, model_state), auxs = jax.lax.scan(body, carry, xs)
            loss, grads = loss / a, jax.tree.map(lambda g: g / a, grads)
            aux = jax.tree.map(lambda x: jnp.mean(x, axis=0), auxs)

        grad_norm = optax.global_norm(grads)
        is_finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        # Never let a non-finite step touch the state: the last good params stay checkpointable.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(is_finite, n, o), new, old)
        new_state = state.replace(
            step=state.step + is_finite.astype(jnp.int32),
            params=keep(new_params, state.params),
            model_state=keep(model_state, state.model_state),
            opt_state=keep(new_opt_state, state.opt_state),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "param_norm": optax.global_norm(new_state.params),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "is_finite": is_finite.astype(jnp.float32),
            **aux,
        }
        return new_state, metrics

    return train_step


def jit_train_step(train_step, state_shardings: Any, mesh: Mesh):
    """jit with explicit shardings: state in/out as given (donated), batch over data x fsdp."""
    return jax.jit(
        train_step,
        in_shardings=(state_shardings, runtime.batch_sharding(mesh)),
        out_shardings=(state_shardings, runtime.replicated(mesh)),
        donate_argnums=(0,),
    )
