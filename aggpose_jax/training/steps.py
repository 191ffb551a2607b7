"""The jitted train step and the predict function handed to the evaluator.

One train step = one optimizer update. With `grad_accum_steps` > 1 the global batch is split into that
many micro-batches whose gradients are averaged in a `lax.scan` (same update as one big batch, less
activation memory). Stochastic depth draws from fold_in(state.rng, state.step), so a resumed run repeats
the same masks. A step whose loss or gradient is not finite leaves the state untouched and reports
`is_finite` = 0; the trainer stops the run with the step named.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from aggpose_jax.models import preprocess
from aggpose_jax.training import sharding as sharding_lib
from aggpose_jax.training.losses import joints_mse_loss
from aggpose_jax.training.state import TrainState


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    grad_accum_steps: int = 1,
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns train_step(state, batch) -> (state, metrics); not jitted (see `jit_train_step`).

    Shapes: batch["image"] (B, H, W, 3) uint8 RGB (normalised here: `preprocess.normalize_images`),
    batch["heatmaps"] (B, H/4, W/4, K), batch["target_weight"] (B, K); metrics are scalars: loss,
    grad_norm, param_norm, lr, is_finite.
    """

    def loss_fn(params, images, targets, weights, rng):
        heatmaps = model.apply({"params": params}, images, train=True, rngs={"dropout": rng})
        return joints_mse_loss(heatmaps, targets, weights)

    grad_fn = jax.value_and_grad(loss_fn)

    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        images = preprocess.normalize_images(batch["image"])
        targets, weights = batch["heatmaps"], batch["target_weight"]
        if grad_accum_steps == 1:
            loss, grads = grad_fn(state.params, images, targets, weights, rng)
        else:
            a = grad_accum_steps

            def split(x):
                # (B, ...) -> (A, B/A, ...) taking every A-th sample, so each micro-batch keeps
                # samples from every device's shard.
                return jnp.moveaxis(x.reshape(x.shape[0] // a, a, *x.shape[1:]), 1, 0)

            micro = (split(images), split(targets), split(weights), jnp.arange(a))

            def body(carry, xs):
                loss_sum, grad_sum = carry
                im, tg, wt, i = xs
                loss, grads = grad_fn(state.params, im, tg, wt, jax.random.fold_in(rng, i))
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro)
            loss, grads = loss / a, jax.tree.map(lambda g: g / a, grads)

        grad_norm = optax.global_norm(grads)
        is_finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        # Never let a non-finite step touch the state: the last good params stay checkpointable.
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(is_finite, n, o), new, old)
        new_state = state.replace(
            step=state.step + is_finite.astype(jnp.int32),
            params=keep(new_params, state.params),
            opt_state=keep(new_opt_state, state.opt_state),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "param_norm": optax.global_norm(new_state.params),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
            "is_finite": is_finite.astype(jnp.float32),
        }
        return new_state, metrics

    return train_step


def jit_train_step(train_step, state_shardings: Any, mesh: Mesh):
    """jit with explicit shardings: state in/out as given (donated), batch over data x fsdp."""
    batch_sh = sharding_lib.batch_sharding(mesh)
    return jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_sh),
        out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
        donate_argnums=(0,),
    )


def make_predict_fn(
    model: nn.Module, params_fn: Callable[[], Any], mesh: Mesh
) -> Callable[[np.ndarray], np.ndarray]:
    """predict(images (b, H, W, 3) uint8 RGB numpy, this process's rows) -> (b, h, w, K) numpy.

    `params_fn` returns the current (sharded) params, so one predict function serves a whole run.
    Every process calls predict together (it runs one global batch) with the same b, each with its
    own rows, and gets the heatmaps of its own rows back; on one process that is the whole batch.
    The rows are padded to a multiple of the process's device count, so any b splits over the mesh.
    """

    def forward(params, images):
        heatmaps = model.apply({"params": params}, preprocess.normalize_images(images), train=False)
        return heatmaps.astype(jnp.float32)

    apply = jax.jit(forward)
    local_devices = len(mesh.local_devices)
    batch_spec = sharding_lib.batch_sharding(mesh).spec

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        b = images.shape[0]
        pad = -b % local_devices
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        x = sharding_lib.make_global_batch({"image": images}, mesh)["image"]
        out = apply(params_fn(), x)
        local = multihost_utils.global_array_to_host_local_array(out, mesh, batch_spec)
        return np.asarray(local)[:b]

    return predict
