"""AggPose-L fine-tuned on the infant pose dataset (21 keypoints), from a COCO checkpoint.

Command (full):  python -m experiments.run --exp=aggpose_l_infant --workdir=workdirs/aggpose_l_infant \
                     --config.data.root=/data/InfantPose \
                     --config.train.init_from=workdirs/aggpose_l/best
Command (tiny):  python -m experiments.run --exp=aggpose_l_infant:tiny --workdir=workdirs/infant_tiny
                 (the tiny variant runs the COCO-format bundled sample with the infant recipe's
                 optimizer; it has no infant images)

Paper: the AggPose paper reports results on its infant dataset; the number is not stated here (the release
ships no infant log). The release's infant yaml trains from random init: the paper's COCO pre-training ->
infant fine-tuning is a manual step there; here it is `train.init_from` (every param loaded except the
21-joint head, `final_layer/fc2`, which is re-initialised).

Recipe: AdamW lr 1e-4, weight decay 0.01, MultiStep x0.1 at epochs 50/80 of 100 (one epoch early), global
batch 64, sigma 2, 256x192, GT boxes at test time, OKS sigmas 0.05 for all joints, no OKS-NMS.

Hardware: as aggpose_l (96.8 M params, 15.6 GMACs per image).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-L, infant 21 keypoints; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_l_infant"
    c.model = common.model_block("aggpose", "l")
    c.data.keypoint_format = "infant"
    c.train.num_epochs = 100
    c.train.init_reinit = "^params/final_layer/fc2/"
    c.task.nms = "none"  # the official infant evaluation has no OKS-NMS
    c.optim.lr = 1e-4
    c.optim.milestones_epochs = (50, 80)
    c = common.finalize(c, arg)
    if arg == "tiny":
        # Only bundled COCO images exist here: the tiny run keeps the infant recipe on COCO-17 data.
        with c.unlocked():
            c.data.keypoint_format = "coco"
            c.train.init_reinit = ""
            c.task.nms = "oks"
    return c
