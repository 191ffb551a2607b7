"""WGNet on COCO 256x192: a lightweight hourglass with window and "global" (grid) attention.

Command (full):  python -m experiments.run --exp=wgnet --workdir=workdirs/wgnet \
                     --config.data.root=/data/coco --config.data.det_file=/data/coco/person_dets.json
Command (tiny):  python -m experiments.run --exp=wgnet:tiny --workdir=workdirs/wgnet_tiny

Paper (WGNet, Table 2): 72.1 AP on COCO val2017 (AP50 89.6, AP75 79.5), 5.8 M params, 3.6 GFLOPs,
24 ms per image on an i7-8700 CPU; widths and depths chosen to land there are documented in
`aggpose_jax/models/wgnet.py` and docs/models.md.

Recipe (the paper's section 4.2): 200 epochs, lr 1e-3 with a cosine decay reaching 1e-5 at epoch 170,
then held. The paper names neither optimizer nor batch size: Adam (as HRNet, whose augmentation and
evaluation protocol it follows) and HRNet's batch of 128 are assumed.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """WGNet, COCO 256x192; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "wgnet"
    c.model = common.model_block("wgnet", "base")
    common.hrnet_recipe(c)
    c.train.num_epochs = 200
    c.optim.schedule = "cosine"
    c.optim.min_lr = 1e-5
    c.optim.decay_epochs = 170
    return common.finalize(c, arg)
