"""AggPose's Table 3: AggPose-S/L against HRNet-W32/W48 and RAM + GPR W32/W48 on COCO val2017.

Command:  python -m experiments.ablate --study=table3 [--scale=tiny|full] [--config.data.root=/data/coco
          --config.data.det_file=/data/coco/person_dets.json]

Each row keeps its paper's protocol (HRNet-style recipes: detector boxes; AggPose: GT boxes). At tiny
scale each pair (S/L, W32/W48) is one tiny model: only the recipes differ.
"""

from experiments.ablations.study import Study

STUDY = Study(
    title="table3: AggPose vs HRNet and RAM + GPR on COCO",
    base="aggpose_l",
    runs={
        "aggpose_s": {"exp": "aggpose_s"},
        "aggpose_l": {"exp": "aggpose_l"},
        "hrnet_w32": {"exp": "hrnet_w32"},
        "hrnet_w48": {"exp": "hrnet_w48"},
        "ramgpr_w32": {"exp": "ramgpr_w32"},
        "ramgpr_w48": {"exp": "ramgpr_w48"},
    },
    paper={
        "aggpose_l": (76.4, "release log, GT boxes"),
        "hrnet_w32": (74.4, "HRNet Table 1, det. boxes"),
        "hrnet_w48": (75.1, "HRNet Table 1, det. boxes"),
        "ramgpr_w32": (76.0, "RAM+GPR Table 1, det. boxes"),
        "ramgpr_w48": (76.5, "RAM+GPR Table 1, det. boxes"),
    },
)
