"""AggPose-L on COCO 256x192: the official recipe of the release.

Command (full):  python -m experiments.run --exp=aggpose_l --workdir=workdirs/aggpose_l \
                     --config.data.root=/data/coco
Command (tiny):  python -m experiments.run --exp=aggpose_l:tiny --workdir=workdirs/quickstart

Paper / release: 76.4 AP on COCO val2017 (the release log; the official yaml evaluates with ground-truth
boxes, USE_GT_BBOX true, so compare with GT-box numbers, not the usual AP_H_56 detector-box ones).

Recipe (official code, not its yaml): AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on
every parameter (torch's default; the yaml's 1e-4 is never passed), MultiStep x0.1 at epochs 170/200/240 of
500 with each decay one epoch early (`optim.one_epoch_early`), global batch 64 (32/GPU x 2 V100), sigma 2,
no warm-up, no clipping, no EMA, drop path 0.1, training from random init.

Hardware: 96.8 M params, 15.6 GMACs per 256x192 image. The release trained on 2x V100 (32 GB); in JAX
one 80 GB GPU holds batch 64 in bfloat16 (`--config.model.dtype=bfloat16`), or use `mesh.fsdp` to spread
params and optimizer state over devices.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-L, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_l"
    c.model = common.model_block("aggpose", "l")
    return common.finalize(c, arg)
