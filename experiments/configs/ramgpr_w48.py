"""RAM + GPR W48 on COCO 256x192: HRNet with resolution-wise attention fusion and a gradual pyramid head.

Command (full):  python -m experiments.run --exp=ramgpr_w48 --workdir=workdirs/ramgpr_w48 \
                     --config.data.root=/data/coco --config.data.det_file=/data/coco/person_dets.json
Command (tiny):  python -m experiments.run --exp=ramgpr_w48:tiny --workdir=workdirs/ramgpr_tiny

Paper (RAM + GPR, Table 1): 76.5 AP on COCO val2017 with the person detector's boxes, 70.0 M params and 15.8 GFLOPs per image
(the widths that land there are documented in `aggpose_jax/models/ramgpr.py` and docs/models.md).

Recipe (the paper's section 4.3): HRNet's augmentation plus cutout (+0.6 AP in its ablation; one square
of a quarter of the input width), SGDR from lr 1e-3 with T0 = 16 epochs and T_mult = 2 (Adam assumed:
the paper names only the schedule) for 240 epochs (four cycles: 16 + 32 + 64 + 128), batch 32,
flip test and the quarter-offset decode.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """RAM + GPR W48, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "ramgpr_w48"
    c.model = common.model_block("ramgpr", "w48")
    common.hrnet_recipe(c)
    c.data.cutout = 0.25
    c.train.global_batch_size = 32
    c.train.num_epochs = 240
    c.optim.schedule = "sgdr"
    c.optim.restart_epochs = 16
    c.optim.restart_mult = 2
    return common.finalize(c, arg)
