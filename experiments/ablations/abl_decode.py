"""Decoding and test-time choices on one checkpoint (evaluation only; nothing is trained).

Command:  python -m experiments.ablate --study=abl_decode --checkpoint=RUN_DIR_OR_PARAMS
          (a run folder, or a weights file of aggpose_l / --exp=NAME, a converted official one too)

DARK (the release) vs HRNet's quarter-pixel offset vs the plain argmax, flip test on and off, and
ground-truth vs person-detector boxes (the bundled sample carries detector boxes; at full scale give
--config.data.det_file). Every row fixes all three so the rows differ from `dark` in one choice.
"""

from experiments.ablations.study import Study

BASE = {"task.decode": "dark", "eval.flip_test": False, "eval.use_gt_bbox": True}

STUDY = Study(
    title="abl_decode: decoding, flip test and boxes on one checkpoint",
    base="aggpose_l",
    runs={
        "dark": BASE,
        "quarter": {**BASE, "task.decode": "quarter"},
        "argmax": {**BASE, "task.decode": "argmax"},
        "dark+flip": {**BASE, "eval.flip_test": True},
        "dark+det_boxes": {**BASE, "eval.use_gt_bbox": False},
    },
    columns=("AP", "AP50", "AP75", "AR", "params_M", "GMACs", "eval_s"),
    eval_only=True,
)
