"""How AggPose fuses its resolutions: the release's merge MLPs, merge plus a residual, or RAM.

Command:  python -m experiments.ablate --study=abl_fusion [--scale=tiny|full]

`merge` is the official AggPose-L; `ram` is the resolution-wise attention fusion of the RAM + GPR
paper transplanted into AggPose (`aggpose_jax/models/blocks/fusion.py`). No paper reports this exact
comparison, so no number is printed beside ours.
"""

from experiments.ablations.study import Study

STUDY = Study(
    title="abl_fusion: AggPose's fusion of resolutions",
    base="aggpose_l",
    runs={
        "merge": {"model.options.fusion": "merge"},
        "merge_residual": {"model.options.fusion": "merge_residual"},
        "ram": {"model.options.fusion": "ram"},
    },
)
