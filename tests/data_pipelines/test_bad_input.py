"""Bad input: malformed annotation files fail clearly; bad images are skipped, counted, or raise."""

import json
import logging
import shutil

import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, metainfo
from data_pipelines import loaders, sources, topdown

CODEC = codecs.HeatmapCodec((64, 48), (16, 12), sigma=1.0)
TRAIN = topdown.TopdownTrainExample(metainfo.COCO, CODEC)
EVAL = topdown.TopdownEvalExample(CODEC)


def _coco(anns):
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}],
    }


def _ann(**kw):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 50.0,
           "bbox": [5, 6, 30, 40], "keypoints": [10, 20, 2] * 17}  # fmt: skip
    ann.update(kw)
    return ann


def _load(tmp_path, data, **kw):
    path = tmp_path / "ann.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return sources.load_coco_records(path, tmp_path, **kw)


def test_invalid_json_names_the_file(tmp_path):
    with pytest.raises(sources.AnnotationError, match=r"ann\.json.*not valid JSON"):
        _load(tmp_path, '{"images": [')


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        sources.load_coco_records(tmp_path / "nope.json", tmp_path)


@pytest.mark.parametrize(
    "bad, field",
    [({"bbox": None}, "bbox"), ({"bbox": [1, 2, 3]}, "bbox"), ({"keypoints": "x"}, "keypoints"),
     ({"bbox": [1, 2, float("nan"), 4]}, "bbox")],
)  # fmt: skip
def test_malformed_annotation_names_file_record_and_field(tmp_path, bad, field):
    ann = _ann(**bad)
    with pytest.raises(sources.AnnotationError) as e:
        _load(tmp_path, _coco([_ann(id=6), ann]))
    msg = str(e.value)
    assert "ann.json" in msg and "annotation id 7 (index 1)" in msg and repr(field) in msg


def test_missing_field(tmp_path):
    ann = _ann()
    del ann["image_id"]
    with pytest.raises(
        sources.AnnotationError, match=r"annotation id 7 \(index 0\) has no field 'image_id'"
    ):
        _load(tmp_path, _coco([ann]))


def test_keypoint_count_disagrees_with_format(tmp_path):
    with pytest.raises(
        sources.AnnotationError, match=r"'keypoints' has 51 values, expected 63.*'infant'"
    ):
        _load(tmp_path, _coco([_ann()]), fmt=metainfo.INFANT)


def test_detection_of_an_unknown_image(tmp_path):
    det = tmp_path / "det.json"
    det.write_text(
        json.dumps([{"image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}])
    )
    with pytest.raises(
        sources.AnnotationError, match=r"det\.json.*detection \[0\].*'image_id' = 99"
    ):
        _load(tmp_path, _coco([_ann()]), det_json=det)


@pytest.fixture()
def bad_records(tmp_path):
    """The sample's 12 records with record 2's image missing and record 5's corrupt."""
    p = sources.sample_paths()
    recs = sources.load_coco_records(p.gt_json, p.image_root, input_hw=(64, 48))
    rows = [recs[i] for i in range(len(recs))]
    rows[2] = dict(rows[2], image_path=str(tmp_path / "missing.jpg"))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    rows[5] = dict(rows[5], image_path=str(corrupt))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    rows[8] = dict(rows[8], image_path=str(empty))
    return sources.PersonRecords.from_records(rows, 17)


def test_train_loader_skips_bad_images_with_a_warning(bad_records, caplog):
    loader = loaders.make_train_loader(bad_records, TRAIN, batch_size=3, seed=0, num_epochs=1)
    with caplog.at_level(logging.WARNING, logger="data_pipelines.loaders"):
        batches = list(loader)
    assert len(batches) == 3  # 9 good records
    kept = np.concatenate([b["record_index"] for b in batches])
    assert sorted(kept) == [0, 1, 3, 4, 6, 7, 9, 10, 11]
    assert loader.skips.count == 3
    assert sorted(loader.skips.paths) == sorted(
        str(bad_records[i]["image_path"]) for i in (2, 5, 8)
    )
    for name in ("missing.jpg", "corrupt.jpg", "empty.jpg"):
        assert any(name in r.getMessage() for r in caplog.records)


def test_strict_mode_raises_naming_the_image(bad_records):
    loader = loaders.make_train_loader(bad_records, TRAIN, batch_size=3, seed=0, strict=True)
    with pytest.raises(loaders.BadRecordError, match=r"(missing|corrupt|empty)\.jpg"):
        list(loader)


def test_eval_marks_bad_images_invalid(bad_records):
    loader = loaders.make_eval_batches(bad_records, EVAL, batch_size=5)
    batches = list(loader)
    valid = np.concatenate([b["valid"] for b in batches])
    index = np.concatenate([b["record_index"] for b in batches])
    assert valid.shape == (15,) and valid.sum() == 9 and loader.skips.count == 3
    np.testing.assert_array_equal(index[:12], np.arange(12))  # skipped slots keep their record
    assert set(np.where(~valid[:12])[0]) == {2, 5, 8}


def test_truncated_jpeg_is_skipped_in_eval(tmp_path, caplog):
    """A half-written JPEG (an interrupted copy): OpenCV refuses it, the slot turns invalid."""
    p = sources.sample_paths()
    data = (p.image_root / "000000000785.jpg").read_bytes()
    (tmp_path / "000000000785.jpg").write_bytes(data[: len(data) // 2])
    shutil.copy(p.gt_json, tmp_path / "gt.json")
    recs = sources.load_coco_records(tmp_path / "gt.json", tmp_path, input_hw=(64, 48))
    keep = [i for i in range(len(recs)) if recs[i]["image_path"].endswith("785.jpg")]
    sub = sources.PersonRecords.from_records([recs[i] for i in keep], 17)
    loader = loaders.make_eval_batches(sub, EVAL, batch_size=len(sub))
    with caplog.at_level(logging.WARNING, logger="data_pipelines.loaders"):
        batches = list(loader)
    assert not batches[0]["valid"].any() and loader.skips.count == len(sub)
    assert "000000000785.jpg" in caplog.text
