"""AggPose in JAX/Flax: models, keypoint codecs, COCO evaluation and sharded training.

Importing the package sets one XLA:CPU flag, `--xla_cpu_use_fusion_emitters=false`, unless XLA_FLAGS
already names it. The CPU backend's newer fusion emitters compile an elementwise loop that reads a
dynamic slice (how a scanned block group reads its layer's params and saved activations) about 5x
slower than the classic emitter: AggPose-L's CPU training step takes 4.5 s instead of 5.4 s, the
forward 0.8 s instead of 1.1 s (docs/benchmarks.md). XLA reads the flag when it creates its CPU
backend, so import aggpose_jax before running any jax computation; other backends ignore it.
jaxlib 0.11 dropped the flag (an unknown flag aborts XLA at start-up), so it is set only for the
jaxlib releases that know it (< 0.11; requirements.txt pins 0.10.2).
"""

import os
from importlib import metadata


def _jaxlib_knows_the_emitter_flag() -> bool:
    try:
        major, minor = (int(x) for x in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) < (0, 11)


_CPU_EMITTER_FLAG = "--xla_cpu_use_fusion_emitters=false"
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", "") and (
    _jaxlib_knows_the_emitter_flag()
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CPU_EMITTER_FLAG}".strip()
