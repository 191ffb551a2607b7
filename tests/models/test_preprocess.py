"""The device-side input normalisation that every jitted step applies to uint8 host batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models import preprocess


def test_imagenet_constants_per_channel():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    got = jax.jit(preprocess.normalize_images)(images)
    assert got.dtype == jnp.float32 and got.shape == images.shape
    np.testing.assert_allclose(got, (images / 255.0 - mean) / std, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="uint8"):
        preprocess.normalize_images(np.zeros((1, 4, 4, 3), dtype))
