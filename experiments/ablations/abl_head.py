"""AggPose's head: the release's Mix-FFN head or the gradual pyramid refinement (GPR) head.

Command:  python -m experiments.ablate --study=abl_head [--scale=tiny|full]

`mixffn` is the official AggPose-L; `gpr` is the RAM + GPR paper's pyramid head on AggPose's
features (`aggpose_jax/models/blocks/heads.py`). No paper reports this exact comparison.
"""

from experiments.ablations.study import Study

STUDY = Study(
    title="abl_head: Mix-FFN vs pyramid (GPR) head in AggPose",
    base="aggpose_l",
    runs={
        "mixffn": {"model.options.head": "mixffn"},
        "gpr": {"model.options.head": "gpr"},
    },
)
