"""The matmul / shifted-sum convolutions equal flax's nn.Conv with the same params."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models.blocks import layers


@pytest.mark.parametrize(
    "module,conv",
    [
        (layers.StridedConv(8, 7, 4), nn.Conv(8, (7, 7), 4, padding=((3, 3), (3, 3)))),
        (layers.StridedConv(8, 3, 2), nn.Conv(8, (3, 3), 2, padding=((1, 1), (1, 1)))),
        (layers.PatchConv(6, 4), nn.Conv(6, (4, 4), 4, padding="VALID")),
    ],
)
def test_conv_forms_match_lax_conv(module, conv):
    x = jax.random.normal(jax.random.key(0), (2, 16, 24, 6))
    params = module.init(jax.random.key(1), x)
    ref_shapes = jax.eval_shape(conv.init, jax.random.key(1), x)
    assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, ref_shapes)
    params = jax.tree.map(lambda a: a + 0.1, params)  # Non-zero bias.
    got, want = module.apply(params, x), conv.apply(params, x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    g1 = jax.grad(lambda p: jnp.sum(module.apply(p, x) ** 2))(params)
    g2 = jax.grad(lambda p: jnp.sum(conv.apply(p, x) ** 2))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g1, g2)


def test_init_statistics():
    # Conv: Normal(0, sqrt(2 / fan_out)), fan_out = kh * kw * out / groups; depthwise 3x3: sqrt(2/9).
    k = layers.conv_kernel_init(groups=512)(jax.random.key(0), (3, 3, 1, 512))
    assert abs(float(jnp.std(k)) - np.sqrt(2 / 9)) < 0.02
    k = layers.conv_kernel_init()(jax.random.key(0), (3, 3, 64, 128))
    assert abs(float(jnp.std(k)) - np.sqrt(2 / (9 * 128))) < 0.005
    w = layers.dense_kernel_init(jax.random.key(0), (256, 256))
    assert abs(float(jnp.std(w)) - 0.02) < 0.001
