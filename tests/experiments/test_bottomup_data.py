"""experiments.data for a bottom-up config: whole-image training batches, evaluation plumbing."""

import json

import numpy as np
import pytest

from aggpose_jax.keypoints import metainfo, part_fields
from data_pipelines import sources
from experiments import data as data_lib
from experiments.configs import common


def _config():
    c = common.get_base_config()
    c.task.name = "bottomup_paf"
    c.task.nms = "none"
    c.data.input_hw = (368, 496)
    c.data.heatmap_hw = (46, 62)
    c.data.sigma = 0.875
    c.train.global_batch_size = 2
    c.eval.batch_size = 3
    return c


class _EncodedTruth:
    """A predictor whose maps are the encoded annotated people of each evaluation image (placed
    by the example's letterbox), grouped back by the bottom-up task's `to_persons`."""

    def __init__(self, task, input_hw, stride):
        self.task, self.input_hw, self.stride = task, input_hw, stride
        gt = json.loads(sources.sample_paths().gt_json.read_text())
        self.people = {}
        for a in gt["annotations"]:
            if a["num_keypoints"] > 0:
                kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
                self.people.setdefault(a["image_id"], []).append(kp)

    def persons(self, batch):
        h, w = self.input_hw[0] // self.stride, self.input_hw[1] // self.stride
        peaks = np.zeros((len(batch["image_id"]), 17, 8, 3))
        pafs = np.zeros((len(batch["image_id"]), h, w, len(self.task.limbs), 2), np.float32)
        for i, image_id in enumerate(batch["image_id"]):
            if image_id < 0:
                continue
            kp = np.stack(self.people[int(image_id)])
            kp[..., :2] = kp[..., :2] * batch["scale"][i] + batch["offset"][i]
            maps = part_fields.encode(
                kp, input_hw=self.input_hw, stride=self.stride, limbs=self.task.limbs
            )
            found = part_fields.find_peaks(maps["heatmaps"], 0.1, stride=self.stride)
            peaks[i, :, : found.shape[1]] = found
            pafs[i] = maps["pafs"]
        stride = np.full(len(peaks), float(self.stride))
        return self.task.to_persons({"peaks": peaks, "pafs": pafs, "stride": stride}, batch)


def test_bottomup_config_gets_whole_image_batches_and_evaluation(tmp_path):
    config = _config()
    task = data_lib.make_task(config)
    run = data_lib.make_bottomup_data(config, task)
    batch = next(run.train_iter)
    num_limbs = len(part_fields.limbs_for(metainfo.COCO))
    assert batch["image"].shape == (2, 368, 496, 3) and batch["image"].dtype == np.uint8
    assert batch["heatmaps"].shape == (2, 46, 62, 17)
    assert batch["pafs"].shape == (2, 46, 62, num_limbs, 2)
    assert batch["mask"].shape == (2, 46, 62)
    # every evaluation image through the letterbox, encoded, grouped and mapped back
    stats = run.eval_fn(_EncodedTruth(task, (368, 496), 8), tmp_path)
    assert stats["AP"] >= 0.9, stats
    assert (tmp_path / "results" / "keypoints_val.json").is_file()


def test_bottomup_stride_must_be_one_integer():
    config = _config()
    config.data.heatmap_hw = (46, 46)
    with pytest.raises(ValueError, match="one integer stride"):
        data_lib.make_data(config, data_lib.make_task(config))
