import importlib.util
import pickle
import shutil
import sys

import cv2
import grain
import numpy as np
import pytest

from aggpose_jax.keypoints import metainfo
from data_pipelines import sources, synthetic, tfds_builders


def _coco_manual_dir(sample_dir, root):
    """The bundled sample laid out as a COCO 2017 manual dir (val2017 only, images/<set>/)."""
    (root / "annotations").mkdir(parents=True)
    shutil.copy(sample_dir / "test_coco.json", root / "annotations/person_keypoints_val2017.json")
    (root / "images" / "val2017").mkdir(parents=True)
    for jpg in sample_dir.glob("*.jpg"):
        shutil.copy(jpg, root / "images" / "val2017" / jpg.name)
    return root


def _assert_same_records(tfds_source, json_records):
    assert len(tfds_source) == len(json_records) > 0
    dataset = grain.MapDataset.source(tfds_source)  # the grain read path
    for got, want in zip(dataset, json_records, strict=True):
        assert set(got) == set(want) - {"image_path"} | {"image_bytes", "file_name"}
        with open(want["image_path"], "rb") as f:
            assert got["image_bytes"] == f.read()
        assert want["image_path"].endswith(got["file_name"])
        for key in set(want) - {"image_path"}:
            g, w = np.asarray(got[key]), np.asarray(want[key])
            assert g.dtype == w.dtype and g.shape == w.shape, key
            np.testing.assert_array_equal(g, w, err_msg=key)


def test_coco_sample_round_trip_without_tensorflow(sample_dir, tmp_path):
    manual = _coco_manual_dir(sample_dir, tmp_path / "manual")
    builder = tfds_builders.build("coco_keypoints", manual, tmp_path / "tfds")
    files = list(builder.data_path.glob("*.array_record*"))
    assert files, "no ArrayRecord shards written"
    assert builder.info.splits["validation"].num_examples == 4  # every image, one example each
    source = tfds_builders.TfdsPersonSource(
        "coco_keypoints", "validation", data_dir=tmp_path / "tfds"
    )
    paths = sources.sample_paths()
    _assert_same_records(source, sources.load_coco_records(paths.gt_json, paths.image_root))
    # Built and read with no TensorFlow anywhere in the process.
    assert importlib.util.find_spec("tensorflow") is None
    assert "tensorflow" not in sys.modules


def test_synthetic_infant_round_trip_and_other_aspect(tmp_path):
    made = synthetic.make_synthetic_coco(
        tmp_path / "manual", num_images=12, fmt="infant", seed=5, image_hw=(64, 96),
        split="val2017", detections=False,
    )  # fmt: skip
    builder = tfds_builders.build("infant_keypoints", made.root, tmp_path / "tfds")
    kwargs = dict(fmt=metainfo.INFANT, require_area=False)
    for input_hw in [(256, 192), (384, 384)]:
        source = tfds_builders.TfdsPersonSource(builder.data_path, "validation", input_hw=input_hw)
        want = sources.load_coco_records(
            made.annotations, made.image_dir, input_hw=input_hw, **kwargs
        )
        _assert_same_records(source, want)
    assert source[0]["keypoints"].shape == (21, 2) and source.num_keypoints == 21


def test_source_pickles_and_decodes(sample_dir, tmp_path):
    manual = _coco_manual_dir(sample_dir, tmp_path / "manual")
    builder = tfds_builders.build("coco_keypoints", manual, tmp_path / "tfds")
    source = pickle.loads(
        pickle.dumps(tfds_builders.TfdsPersonSource(builder.data_path, "validation"))
    )
    record = source[-1]
    image = cv2.imdecode(np.frombuffer(record["image_bytes"], np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(image, cv2.imread(str(sample_dir / record["file_name"])))
    with pytest.raises(IndexError):
        source[len(source)]


def test_manual_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="person_keypoints_"):
        tfds_builders.find_splits(tmp_path)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train2017.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        tfds_builders.find_splits(tmp_path)
    (tmp_path / "train2017").mkdir()
    assert tfds_builders.find_splits(tmp_path) == {
        "train": (tmp_path / "annotations/person_keypoints_train2017.json", tmp_path / "train2017")
    }
