"""AggPose's Table 4: AggPose-L, HRNet-W48, OpenPose and MLN on the infant-21 data.

Command:  python -m experiments.ablate --study=table4_infant [--scale=tiny|full]
          [--config.data.root=/data/InfantPose --run.aggpose_l.train.init_from=workdirs/aggpose_l/best
           --run.hrnet_w48.train.init_from=workdirs/hrnet_w48/best]

At tiny scale the infant configs run on the bundled COCO sample (17 keypoints; no infant images here).
MLN is the bottom-up `mln_infant` (no person boxes; at tiny scale on the COCO-17 sample). OpenPose's
row waits for an `openpose_infant` config.
"""

from experiments.ablations.study import Pending, Study

STUDY = Study(
    title="table4_infant: top-down and bottom-up models on infant-21",
    base="aggpose_l_infant",
    runs={
        "aggpose_l": {"exp": "aggpose_l_infant"},
        "hrnet_w48": {"exp": "hrnet_w48_infant"},
        "openpose": Pending("an openpose_infant config"),
        "mln": {"exp": "mln_infant"},
    },
    paper={
        "aggpose_l": (95.0, "AggPose Table 4"),
        "hrnet_w48": (94.5, "AggPose Table 4"),
    },
    notes="Tiny scale runs the infant recipes on the bundled COCO-17 sample, not on infant data.",
)
