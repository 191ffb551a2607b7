"""AggPose's Table 5: the SegFormer-B5 pose baseline (no aggregation) vs AggPose-L, with WGNet.

Command:  python -m experiments.ablate --study=table5 [--scale=tiny|full] [--config.data.root=/data/coco]

The claim under test: the aggregation MLPs beat the same MiT-B5 encoder without aggregation. WGNet,
the window/grid lightweight model, is the third row (its own recipe: detector boxes).
"""

from experiments.ablations.study import Study

STUDY = Study(
    title="table5: SegFormer-B5 pose vs AggPose-L, and WGNet",
    base="aggpose_l",
    runs={
        "segformer_b5": {"exp": "segformer_b5_pose"},
        "aggpose_l": {"exp": "aggpose_l"},
        "wgnet": {"exp": "wgnet"},
    },
    paper={
        "aggpose_l": (76.4, "release log, GT boxes"),
        "wgnet": (72.1, "WGNet Table 2, det. boxes"),
    },
)
