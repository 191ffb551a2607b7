import hashlib
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from aggpose_jax.keypoints import metainfo
from data_pipelines import synthetic


def _digest(paths: synthetic.SyntheticPaths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths.root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(paths.root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module", params=["coco", "infant"])
def made(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"syn_{request.param}")
    paths = synthetic.make_synthetic_coco(
        out, num_images=24, fmt=request.param, seed=3, image_hw=(96, 128)
    )
    return request.param, paths


def test_pycocotools_loads_it_with_the_format_keypoints(made):
    fmt, paths = made
    coco = COCO(str(paths.annotations))
    k = metainfo.get_format(fmt).num_keypoints
    (cat,) = coco.loadCats(coco.getCatIds())
    assert cat["keypoints"] == list(metainfo.get_format(fmt).keypoint_names)
    assert len(cat["keypoints"]) == k == {"coco": 17, "infant": 21}[fmt]
    assert min(min(e) for e in cat["skeleton"]) == 1  # 1-based, as COCO writes it
    assert len(coco.getImgIds()) == 24
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert len(ann["keypoints"]) == 3 * k
        v = np.asarray(ann["keypoints"]).reshape(k, 3)[:, 2]
        assert ann["num_keypoints"] == int((v > 0).sum())
        assert coco.annToMask(ann).shape == (96, 128)
    for img in coco.loadImgs(coco.getImgIds()):
        pic = cv2.imread(str(paths.image_dir / img["file_name"]))
        assert pic.shape == (img["height"], img["width"], 3)
        assert img["file_name"][-10:-4].isdigit()  # the infant evaluation parses a 6-digit id
    dets = coco.loadRes(str(paths.detections))
    scores = np.array([d["score"] for d in dets.loadAnns(dets.getAnnIds())])
    assert scores.min() < 0.5 <= scores.max()  # false positives below true detections


def test_visibility_flags_crowds_and_boxes(made):
    fmt, paths = made
    gt = json.loads(paths.annotations.read_text())
    k = metainfo.get_format(fmt).num_keypoints
    persons = [a for a in gt["annotations"] if not a["iscrowd"]]
    crowds = [a for a in gt["annotations"] if a["iscrowd"]]
    assert crowds, "no iscrowd region in 24 images"
    for a in crowds:
        rle = mask_utils.frPyObjects(a["segmentation"], *a["segmentation"]["size"])
        assert mask_utils.area(rle) == a["area"] > 0
    per_image = np.bincount([a["image_id"] for a in persons])
    assert per_image.max() >= 2
    kpts = np.array([a["keypoints"] for a in persons]).reshape(len(persons), k, 3)
    assert set(np.unique(kpts[..., 2])) == {0, 1, 2}
    assert np.all(kpts[kpts[..., 2] == 0][:, :2] == 0)  # unlabelled keypoints are (0, 0, 0)
    for a, kp in zip(persons, kpts, strict=True):
        x, y, w, h = a["bbox"]
        lab = kp[kp[:, 2] > 0]
        assert np.all(lab[:, 0] >= x) and np.all(lab[:, 0] <= x + w)
        assert np.all(lab[:, 1] >= y) and np.all(lab[:, 1] <= y + h)
        assert 0 < a["area"] <= w * h


def test_overlapping_persons_exist(made):
    _, paths = made
    coco = COCO(str(paths.annotations))
    overlaps = 0
    for img_id in coco.getImgIds():
        boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))]
        if len(boxes) > 1:
            iou = mask_utils.iou(boxes, boxes, [0] * len(boxes))
            overlaps += int((np.triu(iou, 1) > 0.1).sum())
    assert overlaps > 0


def test_deterministic_for_a_seed(tmp_path):
    make = lambda d, seed: synthetic.make_synthetic_coco(
        tmp_path / d, num_images=4, fmt="infant", seed=seed, image_hw=(64, 80)
    )
    a, b, c = make("a", 7), make("b", 7), make("c", 8)
    assert _digest(a) == _digest(b)
    first = "000000000001.jpg"
    assert (a.image_dir / first).read_bytes() != (c.image_dir / first).read_bytes()
    assert (
        json.loads(a.annotations.read_text())["annotations"]
        != json.loads(c.annotations.read_text())["annotations"]
    )


def test_command_line(tmp_path):
    synthetic.main(
        [str(tmp_path), "--num-images", "2", "--format", "infant", "--image-hw", "48", "64"]
    )
    gt = json.loads((tmp_path / "annotations" / "person_keypoints_train2017.json").read_text())
    assert len(gt["images"]) == 2
    assert len(gt["categories"][0]["keypoints"]) == 21
