"""COCO keypoint results: entries, JSON round trip, and errors that name the file and entry."""

import json

import numpy as np
import pytest

from aggpose_jax.evaluation import results as res


def _entries(rng, n=3, k=17):
    coords = rng.uniform(0, 640, (n, k, 2))
    maxvals = rng.uniform(0, 1, (n, k))
    return (
        res.make_results(
            coords,
            maxvals,
            rng.uniform(0, 1, n),
            np.array([785, 785, 40083][:n], dtype=np.int64),
            centers=rng.uniform(0, 600, (n, 2)),
            scales=rng.uniform(0.1, 2, (n, 2)),
        ),
        coords,
        maxvals,
    )


def test_make_results_layout():
    rng = np.random.default_rng(0)
    entries, coords, maxvals = _entries(rng)
    assert len(entries) == 3
    e = entries[1]
    assert set(e) == {"image_id", "category_id", "keypoints", "score", "center", "scale"}
    assert e["image_id"] == 785 and type(e["image_id"]) is int and e["category_id"] == 1
    kp = np.array(e["keypoints"]).reshape(17, 3)
    np.testing.assert_array_equal(kp[:, :2], coords[1])
    np.testing.assert_array_equal(kp[:, 2], maxvals[1])


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    entries, _, _ = _entries(rng)
    path = tmp_path / "sub" / "results.json"
    res.write_results(entries, path)
    assert res.read_results(path, num_keypoints=17) == entries
    assert json.loads(path.read_text()) == entries


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda e: e.pop("score"), r"entry 1: missing key\(s\) \['score'\]"),
        (lambda e: e.update(image_id="785"), "entry 1: image_id must be an integer"),
        (lambda e: e.update(image_id=True), "entry 1: image_id must be an integer"),
        (
            lambda e: e.update(keypoints=e["keypoints"][:-1]),
            "entry 1: keypoints must be a flat list",
        ),
        (
            lambda e: e.update(keypoints=e["keypoints"][:-3]),
            "entry 1: keypoints has 48 values, expected 51",
        ),
        (
            lambda e: e["keypoints"].__setitem__(4, None),
            "entry 1: keypoints value 4 is not a finite",
        ),
        (
            lambda e: e["keypoints"].__setitem__(7, True),
            "entry 1: keypoints value 7 is not a finite number: True",
        ),
        (lambda e: e.update(category_id=1.0), "entry 1: category_id must be an integer"),
        (lambda e: e.update(score=float("nan")), "entry 1: score must be a finite number"),
        (lambda e: e.update(score="0.5"), "entry 1: score must be a finite number"),
        (lambda e: e.update(scale=[1.0, float("inf")]), "entry 1: scale must be two finite"),
        (lambda e: e.update(center=[1.0]), "entry 1: center must be two finite numbers"),
    ],
)
def test_reader_errors_name_file_and_entry(tmp_path, mutate, message):
    rng = np.random.default_rng(2)
    entries, _, _ = _entries(rng)
    mutate(entries[1])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=message) as info:
        res.read_results(path)
    assert str(path) in str(info.value)
    # The writer refuses the same entry before touching the disk.
    with pytest.raises(ValueError, match=message):
        res.write_results(entries, tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists()


def test_reader_file_level_errors(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"r\.json: not valid JSON"):
        res.read_results(path)
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="expected a list of result entries"):
        res.read_results(path)
    rng = np.random.default_rng(3)
    entries, _, _ = _entries(rng)
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="entry 0: keypoints has 51 values, expected 63"):
        res.read_results(path, num_keypoints=21)
