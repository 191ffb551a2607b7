"""The train state: one pytree holding everything a step changes, saved whole by the checkpoint."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """step () int32; params, model_state (e.g. {"batch_stats": ...}, {} for models without state)
    and opt_state pytrees; rng a key array (the run's base dropout key)."""

    step: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    rng: jax.Array

    @property
    def variables(self) -> dict[str, Any]:
        """{"params": ..., **model_state}: what `model.apply` takes."""
        return {"params": self.params, **self.model_state}


def make_init_fn(
    init_variables: Callable[[jax.Array], dict[str, Any]],
    tx: optax.GradientTransformation,
    param_prng_impl: str = "unsafe_rbg",
) -> Callable[[jax.Array], TrainState]:
    """Returns init(rng) -> TrainState; pure, for jax.eval_shape and jax.jit(out_shardings=...).

    Shapes: rng a raw uint32 key (jax.random.PRNGKey); `init_variables(key)` -> the model's variables
    ({"params": ..., "batch_stats": ...}), e.g. model.init on a dummy (1, H, W, 3) image.

    The params are drawn from a key of `param_prng_impl` ("unsafe_rbg": XLA's RngBitGenerator; the
    distributions are the model's own, only the bit source differs). Why: XLA:CPU compiles a threefry
    init of AggPose's ~400 tensors in about 90 s, the RngBitGenerator one in about 15 s, and its values
    do not depend on the mesh (checked in tests/training/test_sharding.py). "threefry2x32" restores
    the default.
    """

    def init(rng: jax.Array) -> TrainState:
        seed_rng, dropout_rng = jax.random.split(rng)
        if param_prng_impl == "threefry2x32":
            param_rng = seed_rng
        else:
            impl_shape = jax.random.key_data(jax.random.key(0, impl=param_prng_impl)).shape
            bits = jax.random.bits(seed_rng, impl_shape, jnp.uint32)
            param_rng = jax.random.wrap_key_data(bits, impl=param_prng_impl)
        variables = dict(init_variables(param_rng))
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=variables,
            opt_state=tx.init(params),
            rng=dropout_rng,
        )

    return init
