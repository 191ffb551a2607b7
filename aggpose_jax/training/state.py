"""The train state: one pytree holding everything a step changes, saved whole by the checkpoint."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """step () int32; params and opt_state pytrees; rng a key array (the run's base dropout key)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def make_init_fn(model: nn.Module, tx: optax.GradientTransformation, input_hw: tuple[int, int]):
    """Returns init(rng) -> TrainState; pure, for jax.eval_shape and jax.jit(out_shardings=...).

    Shapes: a dummy (1, H, W, 3) image is traced once to create the params.
    """

    def init(rng: jax.Array) -> TrainState:
        param_rng, dropout_rng = jax.random.split(rng)
        images = jnp.zeros((1, *input_hw, 3), jnp.float32)
        params = model.init({"params": param_rng}, images, train=False)["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=dropout_rng,
        )

    return init
