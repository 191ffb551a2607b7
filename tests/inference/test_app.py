"""The command line on the bundled images, a folder with a corrupt file, a video and a cut copy;
every output well-formed; bad input answered in one line naming the file."""

import csv
import json
import shutil

import av
import numpy as np
import pytest

from aggpose_jax.evaluation import cocoeval
from aggpose_jax.inference.__main__ import main
from aggpose_jax.keypoints import metainfo


@pytest.fixture(scope="module")
def app_out(run_dir, videos, sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("app")
    video, cut = videos
    code = main([str(sample_dir), str(video), str(cut), "--workdir", str(run_dir),
                 "--out", str(out), "--smooth", "savgol"])  # fmt: skip
    assert code == 0
    return out


def test_images_give_results_the_scorer_reads(app_out, sample_dir):
    images = json.loads((app_out / "images.json").read_text())
    stills = [i for i in images if i["file_name"].endswith(".jpg")]
    assert len(stills) == 4 and all(f"{i['id']:012d}.jpg" in i["file_name"] for i in stills)
    entries = json.loads((app_out / "results.json").read_text())
    gt = json.loads((sample_dir / "test_coco.json").read_text())
    gt_ids = {im["id"] for im in gt["images"]}
    on_gt = [e for e in entries if e["image_id"] in gt_ids]
    assert len(on_gt) == 4  # the whole image, one person each
    stats = cocoeval.evaluate(gt, on_gt, metainfo.get_format("coco").sigmas_array)
    assert 0.0 <= stats["AP"] <= 1.0
    assert sorted(p.name for p in (app_out / "overlays").iterdir()) == sorted(
        f"{i['id']:012d}.png" for i in stills
    )


@pytest.mark.parametrize("name, frames", [("baby", 36), ("baby_cut", None)])
def test_video_outputs_agree_with_the_frame_count(app_out, name, frames):
    seq = np.load(app_out / f"{name}.npz")
    t = len(seq["frame_index"])
    if frames is None:
        assert 0 < t < 36  # the cut copy: its frames up to the damage
    else:
        assert t == frames
    assert seq["keypoints"].shape == (t, 1, 17, 3) == seq["keypoints_smoothed"].shape
    np.testing.assert_array_equal(seq["keypoints"][..., 2], seq["keypoints_smoothed"][..., 2])
    assert seq["timestamp"].shape == (t,) and float(seq["fps"]) == 24.0
    assert list(seq["keypoint_names"]) == list(metainfo.get_format("coco").keypoint_names)
    assert seq["skeleton"].shape[1] == 2
    with open(app_out / f"{name}.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "scorer" and rows[2][2:5] == ["x", "y", "likelihood"]
    assert len(rows) == 3 + t and len(rows[3]) == 2 + 3 * 17
    qc = json.loads((app_out / f"{name}_qc.json").read_text())
    assert qc["frames_decoded"] == t and qc["truncated"] == (frames is None)
    assert 0 <= qc["frames_all_keypoints_above"] <= t
    with av.open(str(app_out / f"{name}_overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == t
    images = json.loads((app_out / "images.json").read_text())
    assert sum(1 for i in images if i["file_name"].endswith(f"{name}.mp4")) == t


def test_a_corrupt_image_is_skipped_and_named(run_dir, sample_dir, tmp_path, capsys, caplog):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for p in sorted(sample_dir.glob("*.jpg"))[:2]:
        shutil.copy(p, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    assert main([str(folder), "--workdir", str(run_dir), "--out", str(out)]) == 0
    assert "broken.jpg" in caplog.text
    summary = capsys.readouterr().out
    assert "2 images" in summary and "skipped 1" in summary and "broken.jpg" in summary
    assert len(json.loads((out / "images.json").read_text())) == 2


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line(run_dir, sample_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "o")
    _one_line_error(capsys, [str(empty), "--workdir", str(run_dir), "--out", out], "empty")
    _one_line_error(capsys, ["--workdir", str(run_dir), "--out", out], "no input")
    _one_line_error(capsys, [str(tmp_path / "nope.jpg"), "--workdir", str(run_dir), "--out", out],
                    "nope.jpg")  # fmt: skip
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps([{"image_id": 123, "bbox": [0, 0, 10, 10], "score": 1.0,
                                  "category_id": 1}]))  # fmt: skip
    _one_line_error(capsys, [str(sample_dir), "--workdir", str(run_dir), "--out", out,
                             "--boxes", str(boxes)], "dets.json", "123")  # fmt: skip


def test_params_of_another_format_name_both(run_dir, sample_dir, tmp_path, capsys):
    from flax import serialization

    from aggpose_jax.inference import checkpoint

    variables = checkpoint.read_variables(run_dir)
    params = tmp_path / "tiny_coco.msgpack"
    params.write_bytes(serialization.to_bytes(variables))
    image = str(sorted(sample_dir.glob("*.jpg"))[0])
    argv = [image, "--params", str(params), "--model", "aggpose_tiny", "--input-hw", "128,96",
            "--keypoint-format", "infant", "--out", str(tmp_path / "o")]  # fmt: skip
    _one_line_error(capsys, argv, "tiny_coco.msgpack", "aggpose_tiny", "21 infant")
