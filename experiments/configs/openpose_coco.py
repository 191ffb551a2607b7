"""OpenPose on COCO (bottom-up): the CMU 6-stage, 2-branch network (Cao et al., CVPR 2017).

Command (full):  python -m experiments.run --exp=openpose_coco --workdir=workdirs/openpose_coco \
                     --config.data.root=/data/coco \
                     --config.train.init_from=vgg19-dcbb9e9d.pth  (torchvision's ImageNet VGG-19)
Command (tiny):  python -m experiments.run --exp=openpose_coco:tiny --workdir=workdirs/openpose_tiny

Paper: COCO test-dev AP 0.618 (Cao et al.; with its refinement and a person detector's help as in the
challenge entry); MLN's Table 1 re-measured the released model at AP 0.584 (AP50 0.815, AP75 0.626, APM
0.544, APL 0.651) and 20.4 FPS on a Tesla P40; Table 2: 52.3 M parameters and 159.6 GFLOPs (conv weights,
exactly 52,298,816 here; multiply-adds at 368 x 432: ours 159.57 G). The AggPose paper's Table 4
compares with OpenPose on infants (its COCO-18 release; here COCO-17 keypoints and our limb table).

Recipe: OpenPose's (368 x 368 crops, stride 8, sigma 7 pixels, rotation 40 -> our 30, scale 0.5-1.1 ->
our 0.75-1.5, flip; L2 on all six stages' outputs with the unannotated-people mask), Adam 1e-4 as its
PyTorch reimplementations in place of Caffe's SGD 4e-5, batch 10 x 2 GPUs -> 20, 100 epochs with x0.1
at 60/80.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """OpenPose (CMU), COCO bottom-up at stride 8; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "openpose_coco"
    c.model = common.model_block("openpose", "cmu")
    common.bottomup_recipe(c, stride=8)
    c.train.init_take = common.VGG_BACKBONE
    c.train.global_batch_size = 20
    c.train.num_epochs = 100
    c.optim.lr = 1e-4
    c.optim.weight_decay = 5e-4
    c.optim.milestones_epochs = (60, 80)
    c.optim.one_epoch_early = False
    return common.finalize(c, arg)
