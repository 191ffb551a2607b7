"""Person records from COCO-format files (spec 2.1) on the bundled sample and small hand-made files."""

import json

import grain
import numpy as np
import pytest

from aggpose_jax.keypoints import geometry, metainfo
from data_pipelines import sources


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _coco(anns, width=100, height=80):
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": width, "height": height}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }


def _ann(i, kps=None, **kw):
    kps = kps if kps is not None else [10, 20, 2] * 17
    return {"id": i, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 50.0,
            "bbox": [5, 6, 30, 40], "keypoints": kps, **kw}  # fmt: skip


def test_sample_ground_truth_records(sample_dir):
    paths = sources.sample_paths()
    assert paths.image_root == sample_dir
    recs = sources.load_coco_records(paths.gt_json, paths.image_root)
    raw = json.loads(paths.gt_json.read_text())
    keep = [a for a in raw["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0]
    assert len(recs) == len(keep) == 12
    sizes = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    for i, ann in enumerate(keep):
        r = recs[i]
        assert r["image_id"] == ann["image_id"]
        kps = np.asarray(ann["keypoints"], float).reshape(17, 3)
        np.testing.assert_array_equal(r["keypoints"], kps[:, :2])
        np.testing.assert_array_equal(r["visibility"], np.minimum(kps[:, 2], 1))
        x, y, w, h = ann["bbox"]
        img_w, img_h = sizes[ann["image_id"]]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(img_w - 1, x1 + max(0, w - 1)), min(img_h - 1, y1 + max(0, h - 1))
        bw, bh = x2 - x1, y2 - y1
        np.testing.assert_allclose(r["center"], [x1 + bw / 2, y1 + bh / 2])
        if bw > 0.75 * bh:
            bh = bw / 0.75
        else:
            bw = 0.75 * bh
        np.testing.assert_allclose(r["scale"], np.array([bw, bh]) / 200 * 1.25)
        assert r["score"] == 1.0 and r["scale"].dtype == np.float64
        assert r["image_path"].endswith(f"{ann['image_id']:012d}.jpg")
    # grain takes the records as a random-access source.
    ds = grain.MapDataset.source(recs)
    assert len(ds) == 12 and ds[3]["image_id"] == recs[3]["image_id"]


def test_sample_detection_records_and_threshold():
    paths = sources.sample_paths()
    dets = json.loads(paths.det_json.read_text())
    for thr in (0.0, 0.5):
        recs = sources.load_coco_records(
            paths.gt_json, paths.image_root, det_json=paths.det_json, det_score_threshold=thr
        )
        kept = [d for d in dets if d["category_id"] == 1 and d["score"] >= thr]
        assert len(recs) == len(kept)
        np.testing.assert_allclose(recs.scores, [d["score"] for d in kept], rtol=1e-6)
        c, s = geometry.box_to_center_scale(np.asarray(kept[0]["bbox"]), 0.75)
        np.testing.assert_allclose(recs[0]["center"], c)
        np.testing.assert_allclose(recs[0]["scale"], s)
        assert not recs.visibility.any()
    assert len(recs) < len(dets)


def test_filters_crowd_zero_keypoints_area_and_boxes(tmp_path):
    anns = [
        _ann(1),
        _ann(2, iscrowd=1),
        _ann(3, kps=[0] * 51),
        _ann(4, area=0.0),
        _ann(5, bbox=[200, 6, 30, 40]),  # wholly right of the 100 px image: x2 < x1
        _ann(6, category_id=2),
    ]
    path = _write(tmp_path, _coco(anns))
    coco = sources.load_coco_records(path, tmp_path)
    assert len(coco) == 1 and coco.visibility.max() == 1.0
    # The infant loader skips the area test.
    infant_like = sources.load_coco_records(path, tmp_path, require_area=False)
    assert len(infant_like) == 2


def test_box_is_cleaned_to_the_image(tmp_path):
    path = _write(tmp_path, _coco([_ann(1, bbox=[-10, -5, 300, 30])]))
    rec = sources.load_coco_records(path, tmp_path)[0]
    np.testing.assert_allclose(rec["bbox"], [0, 0, 99, 29])


def test_infant_format_and_coco_layout(tmp_path):
    data = _coco([_ann(1, kps=[10, 20, 1] * 21)])
    path = _write(tmp_path, data)
    recs = sources.load_coco_records(path, tmp_path, fmt=metainfo.INFANT, require_area=False)
    assert recs.keypoints.shape == (1, 21, 2)
    p = sources.coco_paths("/data/coco", "val")
    assert str(p.gt_json) == "/data/coco/annotations/person_keypoints_val2017.json"
    assert str(p.image_root) == "/data/coco/images/val2017"


def test_from_records_round_trip():
    recs = sources.load_coco_records(sources.sample_paths().gt_json, sources.SAMPLE_DIR)
    again = sources.PersonRecords.from_records([recs[i] for i in range(len(recs))], 17)
    for i in range(len(recs)):
        for k, v in recs[i].items():
            np.testing.assert_array_equal(again[i][k], v)
    with pytest.raises(IndexError):
        recs[len(recs)]
