"""AggPose-L on COCO 384x288 (the official 384x288 yaml).

Command (full):  python -m experiments.run --exp=aggpose_l_384 --workdir=workdirs/aggpose_l_384 \
                     --config.data.root=/data/coco
Command (tiny):  python -m experiments.run --exp=aggpose_l_384:tiny --workdir=workdirs/l384_tiny

Paper / release: no 384x288 number is released; the release README says this model was still being
retrained.

Recipe: AdamW lr 1e-3, weight decay 0.01 (torch default), MultiStep x0.1 at epochs 210/280/350 of 400
(one epoch early, as the official loop), global batch 32 (16/GPU x 2), heatmap 96x72, sigma 3.

Hardware: 36.7 GMACs per image (2.4x the 256x192 model); 108 key/value tokens per attention. One 80 GB GPU
holds batch 32 in float32; use bfloat16 or `mesh.fsdp` on smaller cards.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-L, COCO 384x288; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_l_384"
    c.model = common.model_block("aggpose", "l")
    c.data.input_hw = (384, 288)
    c.data.heatmap_hw = (96, 72)
    c.data.sigma = 3.0
    c.train.global_batch_size = 32
    c.train.num_epochs = 400
    c.optim.milestones_epochs = (210, 280, 350)
    return common.finalize(c, arg)
