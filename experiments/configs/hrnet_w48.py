"""HRNet-W48 on COCO 256x192: the HRNet pose release, a baseline of AggPose's Table 3.

Command (full):  python -m experiments.run --exp=hrnet_w48 --workdir=workdirs/hrnet_w48 \
                     --config.data.root=/data/coco --config.data.det_file=/data/coco/person_dets.json
Command (tiny):  python -m experiments.run --exp=hrnet_w48:tiny --workdir=workdirs/hrnet_tiny

Paper: 75.1 AP on COCO val2017 with the person detector's boxes (HRNet's Table 1; AggPose's Table 3).

Recipe: `common.hrnet_recipe` (Adam 1e-3, MultiStep 170/200 of 210 epochs, batch 128, sigma 2).

Hardware: 63.6 M params, 14.6 GMACs per 256x192 image (docs/models.md).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """HRNet-W48, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "hrnet_w48"
    c.model = common.model_block("hrnet", "w48")
    common.hrnet_recipe(c)
    return common.finalize(c, arg)
