"""The SegFormer (MiT-B5) pose baseline of the release: the "without aggregation" ablation.

Command (full):  python -m experiments.run --exp=segformer_b5_pose --workdir=workdirs/segformer_b5 \
                     --config.data.root=/data/coco
Command (tiny):  python -m experiments.run --exp=segformer_b5_pose:tiny --workdir=workdirs/seg_tiny

Paper: the AggPose paper compares against this baseline in its ablation; the release ships no log for it,
so no number is reproduced here.

Recipe: the AggPose-L COCO recipe (AdamW 1e-3, wd 0.01, MultiStep x0.1 at 170/200/240 of 500, one epoch
early, batch 64, sigma 2, 256x192).

Hardware: 81.6 M params, 11.6 GMACs per 256x192 image.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """SegFormer-B5 pose baseline, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "segformer_b5_pose"
    c.model = common.model_block("segformer", "b5")
    return common.finalize(c, arg)
