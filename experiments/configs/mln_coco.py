"""MLN on COCO (bottom-up): the Multi-Level Network (Huang, Zhuang and Qin, ICIP 2019).

Command (full):  python -m experiments.run --exp=mln_coco --workdir=workdirs/mln_coco \
                     --config.data.root=/data/coco \
                     --config.train.init_from=vgg19-dcbb9e9d.pth  (torchvision's ImageNet VGG-19)
Command (tiny):  python -m experiments.run --exp=mln_coco:tiny --workdir=workdirs/mln_tiny

Paper: COCO test-dev AP 0.584 (AP50 0.821, AP75 0.626, APM 0.537, APL 0.658), the same as its
OpenPose baseline (0.584) at 42.2 FPS against 20.4 on a Tesla P40 (368 x 432 inputs); 21.2 M
parameters and 82.5 GFLOPs (Table 2: conv weights and multiply-adds at 368 x 432; ours 21.50 M, 83.06 G:
docs/models.md). Evaluation: whole images, no detector, flip test, no OKS-NMS.

Recipe: the paper's data and loss (joint maps and PAFs at stride 8 from 368 x 368 crops, rotation,
scaling and flipping, masked L2 on both of its supervised outputs) and an ImageNet VGG-19 front.
The paper trains with SGD (lr 6e-5, momentum 0.9, weight decay 5e-4, batch 28) in Caffe and states no
schedule length; the trainer's optimiser is AdamW, so this recipe uses OpenPose's later PyTorch
practice: Adam 1e-4, batch 28, 100 epochs with x0.1 steps at 60/80. Hardware: docs/models.md.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """MLN, COCO bottom-up at stride 8; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "mln_coco"
    c.model = common.model_block("mln", "base")
    common.bottomup_recipe(c, stride=8)
    c.train.init_take = common.VGG_BACKBONE
    c.train.global_batch_size = 28
    c.train.num_epochs = 100
    c.optim.lr = 1e-4
    c.optim.weight_decay = 5e-4
    c.optim.milestones_epochs = (60, 80)
    c.optim.one_epoch_early = False
    return common.finalize(c, arg)
