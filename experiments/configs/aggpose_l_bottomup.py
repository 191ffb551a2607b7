"""AggPose-L, bottom-up: AggPose's trunk with joint-map and PAF heads at stride 4 (no detector).

Command (full):  python -m experiments.run --exp=aggpose_l_bottomup --workdir=workdirs/aggpose_l_bu \
                     --config.data.root=/data/coco \
                     --config.train.init_from=workdirs/aggpose_l/best --config.train.init_take=""
Command (tiny):  python -m experiments.run --exp=aggpose_l_bottomup:tiny --workdir=workdirs/agg_bu_tiny

Paper: none: the AggPose paper is top-down only (COCO val 0.787 AP with detector boxes, Table 3;
its Table 4 compares with the bottom-up OpenPose on infants). This is the project's bottom-up
AggPose, which also gives the inference app person boxes without a detector. Model: the official
head's shared Mix-FFN `final`, then `final_layer` (K joint maps) and `final_layer_paf` (2 L PAF
channels), both at 1/4 (`models/aggpose.py`, head="paf"); one supervised output (no stages). The
top-down checkpoint loads into everything but `final_layer_paf` (init_from; report lists it).

Recipe: the official AggPose optimiser (AdamW 1e-3, weight decay 0.01, 170/200/240 of 500 epochs is
for crops: here 140 epochs with x0.1 at 90/120, batch 32) on the bottom-up data at 384 x 384 (a
multiple of 32, as the trunk needs), stride 4, sigma 7 input pixels.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-L with a PAF head, COCO bottom-up at stride 4; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_l_bottomup"
    c.model = common.model_block("aggpose", "l")
    c.model.options.head = "paf"
    common.bottomup_recipe(c, stride=4)
    c.data.input_hw = (384, 384)
    c.data.heatmap_hw = (96, 96)
    c.train.global_batch_size = 32
    c.train.num_epochs = 140
    c.optim.milestones_epochs = (90, 120)
    c.optim.one_epoch_early = False
    return common.finalize(c, arg)
