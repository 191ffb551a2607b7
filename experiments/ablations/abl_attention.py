"""AggPose's attention: the release's efficient (sequence-reduction) attention or window + grid.

Command:  python -m experiments.ablate --study=abl_attention [--scale=tiny|full]

`efficient` is the official AggPose-L (SegFormer's spatial-reduction attention); `window_grid`
alternates local windows and a dilated grid (WGNet's window / "global" attention,
`aggpose_jax/models/blocks/transformer.py`). No paper reports this exact comparison.
"""

from experiments.ablations.study import Study

STUDY = Study(
    title="abl_attention: sequence-reduction vs window/grid attention in AggPose",
    base="aggpose_l",
    runs={
        "efficient": {"model.options.attention": "efficient"},
        "window_grid": {"model.options.attention": "window_grid"},
    },
)
