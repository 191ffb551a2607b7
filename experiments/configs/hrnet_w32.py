"""HRNet-W32 on COCO 256x192: the HRNet pose release (Sun et al., CVPR 2019), a baseline of AggPose's Table 3.

Command (full):  python -m experiments.run --exp=hrnet_w32 --workdir=workdirs/hrnet_w32 \
                     --config.data.root=/data/coco --config.data.det_file=/data/coco/person_dets.json
Command (tiny):  python -m experiments.run --exp=hrnet_w32:tiny --workdir=workdirs/hrnet_tiny

Paper: 74.4 AP on COCO val2017 with the person detector's boxes (HRNet's Table 1; AggPose's Table 3
quotes the same). ImageNet init: `--config.train.init_from=hrnet_w32-36af842e.pth` (the classification
release's backbone; its head-only tensors are ignored and reported).

Recipe: `common.hrnet_recipe` (Adam 1e-3, MultiStep 170/200 of 210 epochs, batch 128, sigma 2).

Hardware: 28.5 M params, 7.1 GMACs per 256x192 image (docs/models.md).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """HRNet-W32, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "hrnet_w32"
    c.model = common.model_block("hrnet", "w32")
    common.hrnet_recipe(c)
    return common.finalize(c, arg)
