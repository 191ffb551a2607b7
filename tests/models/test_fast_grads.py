"""The Mix-FFN's hand-written gradient (depthwise conv and GELU inside) equals autodiff of a plain one."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.models.blocks import mixffn


def _plain_depthwise(x, kernel, bias):
    out = jax.lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )
    return out + bias


def _close(got, want, tol=1e-5):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


def test_gelu_is_torchs_erf_formula():
    x = jnp.linspace(-8.0, 8.0, 1001)
    # torch's formula x (1 + erf(x / sqrt 2)) / 2, against float64: absolute float32 rounding only.
    exact = [0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in np.asarray(x, np.float64)]
    np.testing.assert_allclose(mixffn.gelu_exact(x), exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mixffn.gelu_exact(x), jax.nn.gelu(x, approximate=False), atol=1e-6)


class _PlainMixFFN(nn.Module):
    """The Mix-FFN with lax's grouped conv and autodiff GELU (same param tree)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(24, name="fc1")(x)
        kernel = self.variables["params"]["dwconv"]["dwconv"]["kernel"]
        bias = self.variables["params"]["dwconv"]["dwconv"]["bias"]
        x = jax.nn.gelu(_plain_depthwise(x, kernel, bias), approximate=False)
        return nn.Dense(7, name="fc2")(x)


def test_mix_ffn_grads_match_plain_formulation():
    x = jax.random.normal(jax.random.key(0), (2, 8, 6, 5))
    module = mixffn.MixFFN(24, 7)
    params = module.init(jax.random.key(1), x)
    params = jax.tree.map(lambda a: a + 0.05, params)  # Non-zero biases.

    def loss(apply):
        return lambda p, x: jnp.sum(jnp.cos(apply(p, x)))

    got = jax.jit(jax.grad(loss(module.apply), argnums=(0, 1)))(params, x)
    want = jax.grad(loss(_PlainMixFFN().apply), argnums=(0, 1))(params, x)
    _close(module.apply(params, x), _PlainMixFFN().apply(params, x))
    _close(got, want)
