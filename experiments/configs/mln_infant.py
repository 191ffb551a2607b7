"""MLN on the infant pose dataset (21 keypoints, bottom-up), fine-tuned from a COCO run.

Command (full):  python -m experiments.run --exp=mln_infant --workdir=workdirs/mln_infant \
                     --config.data.root=/data/InfantPose \
                     --config.train.init_from=workdirs/mln_coco/best
Command (tiny):  python -m experiments.run --exp=mln_infant:tiny --workdir=workdirs/mln_infant_tiny
                 (the tiny variant runs the COCO-format bundled sample with this recipe's optimiser;
                 it has no infant images)

Paper: the AggPose paper's Table 4 compares AggPose with OpenPose on its infant set (the bottom-up
baseline most infant-movement pipelines use); MLN has no infant result. MLN's COCO numbers: mln_coco.
The 21-keypoint head cannot take COCO's 17 joint maps and their PAFs: everything but the four
prediction convs (detection and refinement, joints and limbs) is loaded, those are re-initialised.

Recipe: as the AggPose infant recipe (lr 1e-4 with x0.1 at epochs 50/80 of 100, OKS sigmas 0.05 for all
joints) on MLN's data settings (stride 8, 368 x 368, sigma 7 px); no OKS-NMS.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """MLN, infant 21 keypoints, bottom-up; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "mln_infant"
    c.model = common.model_block("mln", "base")
    common.bottomup_recipe(c, stride=8)
    c.data.keypoint_format = "infant"
    c.train.init_reinit = (
        "^params/(detect_joint/conv5|detect_limb/conv5|refine_joint/out|refine_limb/out)/"
    )
    c.train.global_batch_size = 28
    c.train.num_epochs = 100
    c.optim.lr = 1e-4
    c.optim.weight_decay = 5e-4
    c.optim.milestones_epochs = (50, 80)
    c = common.finalize(c, arg)
    if arg == "tiny":
        # Only bundled COCO images exist here: the tiny run keeps the recipe on COCO-17 data.
        with c.unlocked():
            c.data.keypoint_format = "coco"
            c.train.init_reinit = ""
    return c
