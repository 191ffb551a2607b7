"""HRNet-W48 fine-tuned on the infant pose dataset (21 keypoints): AggPose's Table 4 baseline.

Command (full):  python -m experiments.run --exp=hrnet_w48_infant --workdir=workdirs/hrnet_w48_infant \
                     --config.data.root=/data/InfantPose \
                     --config.train.init_from=workdirs/hrnet_w48/best
Command (tiny):  python -m experiments.run --exp=hrnet_w48_infant:tiny --workdir=workdirs/hrnet_inf_tiny
                 (COCO-format bundled sample with the infant recipe's optimizer: no infant images)

Paper: 94.5 AP / 95.6 AR on the AggPose infant test set (AggPose's Table 4; AggPose-L 95.0). Every
COCO-trained parameter is loaded except the 21-joint head (`final_layer`), re-initialised.

Recipe: as aggpose_l_infant (Adam 1e-4, MultiStep 50/80 of 100 epochs, batch 64, sigma 2, OKS sigmas
0.05, no OKS-NMS), with HRNet's evaluation (flip shift, quarter offset) on ground-truth boxes.

Hardware: as hrnet_w48 (63.6 M params, 14.6 GMACs per image).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """HRNet-W48, infant 21 keypoints; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "hrnet_w48_infant"
    c.model = common.model_block("hrnet", "w48")
    common.hrnet_recipe(c)
    c.data.keypoint_format = "infant"
    c.train.num_epochs = 100
    c.train.global_batch_size = 64
    c.train.init_reinit = "^params/final_layer/"
    c.task.nms = "none"
    c.eval.use_gt_bbox = True
    c.optim.lr = 1e-4
    c.optim.milestones_epochs = (50, 80)
    c = common.finalize(c, arg)
    if arg == "tiny":
        with c.unlocked():
            c.data.keypoint_format = "coco"
            c.train.init_reinit = ""
            c.task.nms = "oks"
    return c
