"""AggPose's initialisation: random (the release), an ImageNet MiT backbone, or MIM on frames.

Command:  python -m experiments.ablate --study=abl_init [--scale=tiny|full]
          --run.imagenet_mit.train.init_from=mit_b5.pth

The ImageNet row takes the MiT backbone from a file the user gives (it cannot be downloaded here, and
the tiny model has no ImageNet weights: at tiny scale the row is skipped unless a file of the tiny
backbone's shapes is given). MIM pretraining on unlabelled frames is `aggpose_l_mim`; its row waits
for the fine-tuning study.
"""

from experiments.ablations.study import Pending, Required, Study
from experiments.configs.common import MIT_BACKBONE

STUDY = Study(
    title="abl_init: random vs ImageNet MiT vs MIM initialisation",
    base="aggpose_l",
    runs={
        "random": {"train.init_from": ""},
        "imagenet_mit": {
            "train.init_from": Required("an ImageNet MiT weights file"),
            "train.init_take": MIT_BACKBONE,
        },
        "mim_frames": Pending("the fine-tuning study from aggpose_l_mim (docs/pretraining.md)"),
    },
)
