"""Test set-up: 8 fake CPU devices for sharding tests, a compilation cache, and the gpu marker.

JAX's persistent compilation cache (`.cache/xla` in the repository, or $JAX_COMPILATION_CACHE_DIR)
serves every test process and the scripts they start: a program compiled once (the tiny AggPose's
step, say) is read back in later tests and later runs instead of compiled again.
"""

import os
import pathlib

# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
_CACHE = pathlib.Path(__file__).resolve().parents[1] / ".cache" / "xla"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data_pipelines" / "sample_data" / "coco_sample"


def pytest_collection_modifyitems(config, items):
    import jax

    if any(d.platform != "cpu" for d in jax.devices()):
        return
    skip_gpu = pytest.mark.skip(reason="needs an accelerator")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def sample_dir() -> pathlib.Path:
    """The bundled real COCO sample (4 images, keypoint GT, detector boxes)."""
    return SAMPLE_DIR
