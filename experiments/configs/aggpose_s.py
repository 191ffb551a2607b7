"""AggPose-S on COCO 256x192 (the paper's MiT-B2 variant, trained with the AggPose-L recipe).

Command (full):  python -m experiments.run --exp=aggpose_s --workdir=workdirs/aggpose_s \
                     --config.data.root=/data/coco
Command (tiny):  python -m experiments.run --exp=aggpose_s:tiny --workdir=workdirs/aggpose_s_tiny

Paper: the AggPose paper lists AggPose-S next to AggPose-L; the release ships no S config or weights, so
no released number is reproduced here. S is the MiT-B2 mapping, layers [[3,3,3,3],[4,3,3],[6,3],[3]].

Recipe: the official L recipe (AdamW 1e-3, wd 0.01, MultiStep x0.1 at 170/200/240 of 500, one epoch
early, batch 64, sigma 2); the release has no separate S recipe.

Hardware: 39.5 M params, 7.3 GMACs per 256x192 image (the paper states 9.0 GFLOPs; unresolved). Batch 64
in float32 fits one 40 GB GPU.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-S, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_s"
    c.model = common.model_block("aggpose", "s")
    return common.finalize(c, arg)
