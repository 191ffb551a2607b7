"""cocoeval: agreement with pycocotools on the real sample and on hand-made edge cases, the quirks
(strict and corrected), the errors, and the command line."""

import contextlib
import copy
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from test_cocoeval_scenes import assert_agrees, make_scene, pycocotools_eval

from aggpose_jax.evaluation import cocoeval
from aggpose_jax.keypoints import metainfo

NAMES = cocoeval.STAT_NAMES


def _load(sample_dir):
    with open(sample_dir / "test_coco.json") as f:
        gt = json.load(f)
    with open(sample_dir / "test_coco_det_AP_H_56.json") as f:
        dets = json.load(f)
    return gt, dets


def _as_result(ann, score=1.0, noise=0.0, rng=None):
    kp = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    if noise:
        kp[:, :2] += rng.normal(0, noise, kp[:, :2].shape)
    return {
        "image_id": ann["image_id"],
        "category_id": ann["category_id"],
        "keypoints": kp.ravel().tolist(),
        "score": score,
    }


# ---- the real sample ---------------------------------------------------------------------------


def test_ground_truth_as_results_scores_one(sample_dir):
    gt, _ = _load(sample_dir)
    results = [_as_result(a) for a in gt["annotations"] if a["num_keypoints"] > 0]
    ours = assert_agrees(gt, results)
    assert all(ours[k] == 1.0 for k in NAMES), ours


def test_perturbed_results_agree(sample_dir):
    gt, _ = _load(sample_dir)
    rng = np.random.default_rng(0)
    results = [
        _as_result(a, score=float(rng.uniform()), noise=noise, rng=rng)
        for a in gt["annotations"]
        for noise in (2.0, 8.0, 25.0)
    ]
    ours = assert_agrees(gt, results)
    assert 0.0 < ours["AP"] < 1.0


def _box_iou(a, b):
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_detector_boxes_with_synthesised_keypoints_agree(sample_dir):
    gt, dets = _load(sample_dir)
    rng = np.random.default_rng(1)
    results = []
    for det in dets:
        x, y, w, h = det["bbox"]
        same = [a for a in gt["annotations"] if a["image_id"] == det["image_id"]]
        best = max(same, key=lambda a: _box_iou(a["bbox"], det["bbox"]), default=None)
        kp = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)], 1)
        if best is not None and _box_iou(best["bbox"], det["bbox"]) > 0.3:
            g = np.array(best["keypoints"], dtype=np.float64).reshape(17, 3)
            kp = np.where(g[:, 2:] > 0, g[:, :2], kp) + rng.normal(
                0, 0.03 * np.sqrt(w * h), (17, 2)
            )
        kp = np.concatenate([kp, rng.uniform(0, 1, (17, 1))], 1)
        results.append(
            {"image_id": det["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
             "score": det["score"]}
        )  # fmt: skip
    ours = assert_agrees(gt, results)
    assert 0.0 < ours["AP"] < 1.0


def test_paths_and_objects_give_the_same(sample_dir, tmp_path):
    gt, _ = _load(sample_dir)
    results = [_as_result(a, 0.5, 5.0, np.random.default_rng(2)) for a in gt["annotations"]]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    by_path = cocoeval.evaluate(sample_dir / "test_coco.json", str(res_path))
    assert by_path == cocoeval.evaluate(gt, results)
    assert all(isinstance(v, float) for v in by_path.values())


def test_command_line_prints_the_pycocotools_table(sample_dir, tmp_path):
    gt, _ = _load(sample_dir)
    results = [_as_result(a, 0.5, 5.0, np.random.default_rng(3)) for a in gt["annotations"]]
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    ref = io.StringIO()
    with contextlib.redirect_stdout(ref):
        pycocotools_eval(gt, results).summarize()
    want = [line for line in ref.getvalue().splitlines() if line.startswith(" Average")]
    out = subprocess.run(
        [sys.executable, "-m", "aggpose_jax.evaluation.cocoeval",
         str(sample_dir / "test_coco.json"), str(res_path), "--sigmas", "coco"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines() == want
    assert len(want) == 10


# ---- edge cases against pycocotools -----------------------------------------------------------


def _person(ann_id, image_id, xy, vis=2, area=5000.0, crowd=0, cat=1, bbox=None, k=17):
    xy = np.asarray(xy, dtype=np.float64).reshape(k, 2)
    v = np.broadcast_to(np.asarray(vis), (k,))
    if bbox is None:
        lo, hi = xy.min(0), xy.max(0)
        bbox = [*lo.tolist(), *(hi - lo).tolist()]
    return {
        "id": ann_id, "image_id": image_id, "category_id": cat, "iscrowd": crowd, "area": area,
        "keypoints": np.concatenate([xy * (v[:, None] > 0), v[:, None]], 1).ravel().tolist(),
        "num_keypoints": int(np.count_nonzero(v)), "bbox": bbox,
    }  # fmt: skip


def _res(image_id, xy, score, cat=1, **extra):
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    kp = np.concatenate([xy, np.ones((xy.shape[0], 1))], 1).ravel().tolist()
    return {"image_id": image_id, "category_id": cat, "keypoints": kp, "score": score, **extra}


def _gt(anns, images=(1, 2, 3), cats=(1,)):
    return {"images": [{"id": i} for i in images], "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in cats]}  # fmt: skip


def _pose(rng, x=100.0, y=100.0, size=80.0, k=17):
    return np.stack([rng.uniform(x, x + size, k), rng.uniform(y, y + size, k)], 1)


def test_crowd_region_absorbs_many_results():
    rng = np.random.default_rng(4)
    p = _pose(rng)
    crowd = _person(
        2, 1, np.zeros((17, 2)), vis=0, area=40000.0, crowd=1, bbox=[300, 300, 200, 200]
    )
    gt = _gt([_person(1, 1, p), crowd])
    # One true positive and five results inside the crowd box: the five are ignored, not false.
    results = [_res(1, p, 0.5)] + [_res(1, _pose(rng, 350, 350, 100), 0.9) for _ in range(5)]
    ours = assert_agrees(gt, results)
    assert ours["AP"] == pytest.approx(1.0)  # 1 / (1 + eps): pycocotools' precision guard


def test_people_without_keypoints_are_ignored_and_use_the_tripled_box():
    rng = np.random.default_rng(5)
    p = _pose(rng)
    quiet = _person(2, 1, np.zeros((17, 2)), vis=0, area=900.0, bbox=[400, 100, 30, 60])
    gt = _gt([_person(1, 1, p), quiet])
    inside = _pose(rng, 375, 50, 80)  # within [x - w, x + 2w] x [y - h, y + 2h]
    results = [_res(1, p, 0.5), _res(1, inside, 0.9)]
    oks = cocoeval.compute_oks(gt, results)[1, 1]
    assert oks[0, 1] == 1.0  # the higher-scored result is row 0
    ours = assert_agrees(gt, results)
    assert ours["AP"] == pytest.approx(1.0)  # 1 / (1 + eps): pycocotools' precision guard
    # Just outside the box by d on x: exp(-d^2 / (2 area (2 sigma)^2)), averaged over the 17.
    outside = np.full((17, 2), [400 + 60 + 5.0, 130.0])
    got = cocoeval.compute_oks(gt, [_res(1, outside, 1.0)])[1, 1][0, 1]
    sig = cocoeval.resolve_sigmas(None, 17)
    want = np.mean(np.exp(-(5.0**2) / (2 * 900.0 * (2 * sig) ** 2)))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_v1_and_v2_both_count_as_labelled():
    rng = np.random.default_rng(6)
    p = _pose(rng)
    vis = rng.choice([1, 2], 17)
    noisy = p + rng.normal(0, 4, p.shape)
    a = cocoeval.compute_oks(_gt([_person(1, 1, p, vis=vis)]), [_res(1, noisy, 1.0)])[1, 1]
    b = cocoeval.compute_oks(_gt([_person(1, 1, p, vis=2)]), [_res(1, noisy, 1.0)])[1, 1]
    assert a[0, 0] == b[0, 0] and 0 < a[0, 0] < 1
    vis[:5] = 0  # unlabelled keypoints drop out of the mean
    c = cocoeval.compute_oks(_gt([_person(1, 1, p, vis=vis)]), [_res(1, noisy, 1.0)])[1, 1]
    assert c[0, 0] != a[0, 0]
    assert_agrees(_gt([_person(1, 1, p, vis=vis)]), [_res(1, noisy, 1.0)])


def test_results_on_images_without_ground_truth_are_false_positives():
    rng = np.random.default_rng(7)
    p = _pose(rng)
    gt = _gt([_person(1, 1, p)])
    results = [_res(1, p, 0.5), _res(2, _pose(rng), 0.9), _res(3, _pose(rng), 0.8)]
    ours = assert_agrees(gt, results)
    assert ours["AR"] == 1.0 and ours["AP"] < 1.0


def test_duplicates_and_score_ties_keep_input_order():
    rng = np.random.default_rng(8)
    poses = [_pose(rng, 100 * i, 50, 70) for i in range(4)]
    gt = _gt([_person(i + 1, 1 + i % 2, q) for i, q in enumerate(poses)])
    good = [_res(1 + i % 2, q, 0.7) for i, q in enumerate(poses)]
    bad = [_res(1 + i % 2, _pose(rng, 100 * i, 50, 70), 0.7) for i in range(4)]
    seen = set()
    for perm in range(6):
        results = list(np.random.default_rng(perm).permutation(good + bad + good[:2]))
        seen.add(round(assert_agrees(gt, results)["AP"], 9))
    assert len(seen) > 1  # tie order changes AP, the same way as in pycocotools


def test_only_the_top_twenty_results_per_image_count():
    rng = np.random.default_rng(9)
    p = _pose(rng)
    gt = _gt([_person(1, 1, p)])
    junk = [_res(1, _pose(rng, 400, 400), 0.9 - 0.01 * i) for i in range(20)]
    ours = assert_agrees(gt, [*junk, _res(1, p, 0.1)])
    assert ours["AR"] == 0.0  # the perfect 21st result is cut
    ours = assert_agrees(gt, [*junk[:19], _res(1, p, 0.1)])
    assert ours["AR"] == 1.0


@pytest.mark.parametrize("area", [32.0**2, 96.0**2, 32.0**2 - 1e-9, 96.0**2 + 1e-9])
def test_area_range_borders_are_inclusive(area):
    rng = np.random.default_rng(10)
    p = _pose(rng)
    gt = _gt([_person(1, 1, p, area=area)])
    ours = assert_agrees(gt, [_res(1, p, 1.0)])
    assert ours["ARm"] == (1.0 if 32**2 <= area <= 96**2 else -1.0)
    assert ours["ARl"] == (1.0 if area >= 96**2 else -1.0)


def test_infant_21_keypoints_with_their_sigmas():
    rng = np.random.default_rng(11)
    poses = [_pose(rng, 80 * i, 60, 60, k=21) for i in range(3)]
    gt = _gt([_person(i + 1, 1, q, k=21, area=3000.0) for i, q in enumerate(poses)])
    results = [_res(1, q + rng.normal(0, s, q.shape), 1 - s / 10) for q in poses for s in (1, 3, 6)]
    sig = metainfo.INFANT.sigmas_array
    ours = assert_agrees(gt, results, sig)
    assert cocoeval.evaluate(gt, results, "infant") == ours
    assert cocoeval.evaluate(gt, results, list(sig)) == ours
    with pytest.raises(ValueError, match="21 keypoints"):
        cocoeval.evaluate(gt, results)


def test_categories_without_ground_truth_are_left_out_of_the_mean():
    rng = np.random.default_rng(12)
    p, q = _pose(rng), _pose(rng, 300)
    gt = _gt([_person(1, 1, p), _person(2, 1, q, cat=3)], cats=(1, 2, 3))
    results = [
        _res(1, p, 0.9),
        _res(1, q, 0.8, cat=2),
        _res(1, q + 9, 0.7, cat=3),
        _res(1, p, 1, cat=7),
    ]
    ours = assert_agrees(gt, results)
    full = cocoeval.score(gt, results)
    assert np.all(full.precision[:, :, 1] == -1) and full.category_ids == [1, 2, 3]
    assert ours["AP"] == pytest.approx(np.mean(full.precision[:, :, [0, 2], 0]))


def test_no_usable_ground_truth_gives_minus_one_or_nan():
    rng = np.random.default_rng(13)
    gt = _gt([_person(1, 1, np.zeros((17, 2)), vis=0, crowd=1, bbox=[0, 0, 50, 50])])
    results = [_res(1, _pose(rng), 0.5)]
    ours = assert_agrees(gt, results)
    assert all(v == -1.0 for v in ours.values())
    loose = cocoeval.evaluate(gt, results, strict_pycocotools=False)
    assert all(np.isnan(v) for v in loose.values())


def test_empty_results_score_zero():
    gt, _ = make_scene(14)
    ours = assert_agrees(gt, [])
    assert all(v == 0.0 for v in ours.values())


def test_many_crowded_images():
    gt, results = make_scene(15, num_images=12)
    assert_agrees(gt, results)


# ---- quirks: reproduced by default, corrected on request --------------------------------------


def _two_people(rng):
    p, q = _pose(rng), _pose(rng, 300)
    return p, q, [_person(1, 1, p), _person(2, 1, q)]


def test_quirk_ignore_field_is_overwritten():
    rng = np.random.default_rng(16)
    p, q, anns = _two_people(rng)
    anns[1]["ignore"] = 1
    gt, results = _gt(anns), [_res(1, p, 0.9)]
    assert assert_agrees(gt, results)["AR"] == 0.5  # the `ignore` flag had no effect
    assert cocoeval.evaluate(gt, results, strict_pycocotools=False)["AR"] == 1.0


def test_quirk_match_to_ground_truth_id_zero_is_a_false_positive():
    rng = np.random.default_rng(17)
    p, q, anns = _two_people(rng)
    anns[0]["id"] = 0
    gt, results = _gt(anns), [_res(1, p, 0.9), _res(1, q, 0.8)]
    strict = assert_agrees(gt, results)
    assert strict["AR"] == 0.5
    assert cocoeval.evaluate(gt, results, strict_pycocotools=False)["AR"] == 1.0


def test_quirk_duplicate_ground_truth_ids_keep_the_last():
    rng = np.random.default_rng(18)
    p, q, anns = _two_people(rng)
    anns[1]["id"] = 1  # both id 1: pycocotools evaluates the second one twice
    gt, results = _gt(anns), [_res(1, p, 0.9), _res(1, q, 0.8)]
    strict = assert_agrees(gt, results)
    assert strict["AR"] == 0.5
    assert cocoeval.evaluate(gt, results, strict_pycocotools=False)["AR"] == 1.0


def test_quirk_num_keypoints_field_decides_ignore():
    rng = np.random.default_rng(19)
    p, q, anns = _two_people(rng)
    anns[1]["num_keypoints"] = 0  # labelled keypoints, but the field says none
    gt, results = _gt(anns), [_res(1, p, 0.9)]
    assert assert_agrees(gt, results)["AR"] == 1.0
    assert cocoeval.evaluate(gt, results, strict_pycocotools=False)["AR"] == 0.5


def test_quirk_first_result_bbox_sets_every_area():
    rng = np.random.default_rng(20)
    p = _pose(rng, size=40)  # a medium gt; results around it
    gt = _gt([_person(1, 1, p, area=40.0**2)])
    far = _pose(rng, 300, 300, 40)
    results = [_res(1, p, 0.5, bbox=[0, 0, 10, 10]), _res(1, far, 0.9, bbox=[0, 0, 10, 10])]
    strict = assert_agrees(gt, results)
    # The unmatched result's box area (100) is outside "medium", so it is ignored there.
    assert strict["APm"] == pytest.approx(1.0)
    assert cocoeval.evaluate(gt, results, strict_pycocotools=False)["APm"] < 1.0
    missing = [results[0], {k: v for k, v in results[1].items() if k != "bbox"}]
    with pytest.raises(ValueError, match="result 1 has none"):
        cocoeval.evaluate(gt, missing)


def test_inputs_are_not_modified():
    gt, results = make_scene(21)
    before = copy.deepcopy((gt, results))
    cocoeval.evaluate(gt, results)
    cocoeval.evaluate(gt, results, strict_pycocotools=False)
    assert (gt, results) == before


# ---- errors ------------------------------------------------------------------------------------


def test_error_names_the_unknown_image():
    rng = np.random.default_rng(22)
    gt = _gt([_person(1, 1, _pose(rng))])
    with pytest.raises(ValueError, match="result 1 references image_id 99"):
        cocoeval.evaluate(gt, [_res(1, _pose(rng), 0.5), _res(99, _pose(rng), 0.5)])


def test_error_names_the_result_with_wrong_keypoint_count():
    rng = np.random.default_rng(23)
    gt = _gt([_person(1, 1, _pose(rng))])
    results = [_res(1, _pose(rng), 0.5), _res(1, _pose(rng), 0.5), _res(1, _pose(rng, k=16), 0.5)]
    with pytest.raises(ValueError, match="result 2 has 48 keypoint values, expected 51"):
        cocoeval.evaluate(gt, results)


def test_error_on_sigma_count_mismatch():
    rng = np.random.default_rng(24)
    gt = _gt([_person(1, 1, _pose(rng))])
    with pytest.raises(ValueError, match="21 sigmas"):
        cocoeval.evaluate(gt, [_res(1, _pose(rng), 0.5)], sigmas="infant")


def test_error_on_non_finite_results():
    rng = np.random.default_rng(25)
    gt = _gt([_person(1, 1, _pose(rng))])
    broken = _pose(rng)
    broken[3, 0] = np.nan
    with pytest.raises(ValueError, match="result 1 has non-finite keypoint"):
        cocoeval.evaluate(gt, [_res(1, _pose(rng), 0.5), _res(1, broken, 0.4)])
    with pytest.raises(ValueError, match="result 0 has a non-finite score"):
        cocoeval.evaluate(gt, [_res(1, _pose(rng), float("nan"))])


def test_command_line_reads_a_sigma_file(tmp_path):
    rng = np.random.default_rng(26)
    poses = [_pose(rng, 90 * i, 40, 70, k=21) for i in range(3)]
    gt = _gt([_person(i + 1, 1, q, k=21) for i, q in enumerate(poses)])
    results = [_res(1, q + rng.normal(0, 4, q.shape), 0.5 + 0.1 * i) for i, q in enumerate(poses)]
    sigmas = rng.uniform(0.03, 0.09, 21)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    (tmp_path / "sigmas.txt").write_text(", ".join(repr(float(s)) for s in sigmas))
    argv = [str(tmp_path / n) for n in ("gt.json", "res.json")] + ["--sigmas"]
    for arg, sig in ((str(tmp_path / "sigmas.txt"), sigmas), ("infant", "infant")):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cocoeval.main([*argv, arg])
        want = cocoeval.format_summary(cocoeval.score(gt, results, sig).stats)
        assert out.getvalue().strip("\n") == want


def test_a_category_without_keypoints_in_the_ground_truth():
    rng = np.random.default_rng(27)
    p = _pose(rng)
    thing = {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 50, 50], "area": 2500.0,
             "iscrowd": 0, "num_keypoints": 0}  # fmt: skip
    gt = _gt([_person(1, 1, p), thing], cats=(1, 2))
    ours = assert_agrees(gt, [_res(1, p, 0.9)])
    assert ours["AP"] == pytest.approx(1.0)


# ---- the command line on bad input: one line on stderr, naming the file and the entry --------


def _valid_pair():
    rng = np.random.default_rng(30)
    poses = [_pose(rng, 120 * i) for i in range(3)]
    gt = _gt([_person(i + 1, 1 + i % 2, p) for i, p in enumerate(poses)])
    return gt, [_res(1 + i % 2, p + 2, 0.9 - 0.1 * i) for i, p in enumerate(poses)]


_DELETE = object()


def _spoiled(obj, path, value=_DELETE) -> str:
    """JSON of a copy of obj with the item at `path` deleted, replaced, or mapped by `value`."""
    root = copy.deepcopy(obj)
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value(parent[path[-1]]) if callable(value) else value
    return json.dumps(root)


# (the file spoiled, its text from the valid gt and results, the message after "FILE: ")
BAD_INPUT = {
    "results truncated": ("res", lambda gt, res: json.dumps(res)[:-40], r"not valid JSON \("),
    "results not a list": (
        "res",
        lambda gt, res: json.dumps({"results": res}),
        "results must be a list of objects, got dict",
    ),
    "result without keypoints": (
        "res",
        lambda gt, res: _spoiled(res, [1, "keypoints"]),
        r"result 1 lacks \['keypoints'\]",
    ),
    "wrong keypoint count": (
        "res",
        lambda gt, res: _spoiled(res, [2, "keypoints"], lambda kp: kp[:-3]),
        r"result 2 has 48 keypoint values, expected 51 \(17 keypoints",
    ),
    "non-numeric keypoint value": (
        "res",
        lambda gt, res: _spoiled(res, [1, "keypoints", 7], "abc"),
        "result 1: keypoints value 7 is not a number: 'abc'",
    ),
    "null keypoint value": (
        "res",
        lambda gt, res: _spoiled(res, [0, "keypoints", 4], None),
        "result 0: keypoints value 4 is not a number: None",
    ),
    "non-numeric score": (
        "res",
        lambda gt, res: _spoiled(res, [2, "score"], "high"),
        "result 2: score is not a number: 'high'",
    ),
    "NaN written by json.dump": (
        "res",
        lambda gt, res: _spoiled(res, [1, "keypoints", 0], float("nan")),
        "result 1 has non-finite keypoint coordinates",
    ),
    "result on an unknown image": (
        "res",
        lambda gt, res: _spoiled(res, [1, "image_id"], 99),
        "result 1 references image_id 99",
    ),
    "ground truth not JSON": ("gt", lambda gt, res: "this is not JSON", r"not valid JSON \("),
    "ground truth without annotations": (
        "gt",
        lambda gt, res: _spoiled(gt, ["annotations"]),
        "ground truth lacks 'annotations'",
    ),
    "ground truth without images": (
        "gt",
        lambda gt, res: _spoiled(gt, ["images"]),
        "ground truth lacks 'images'",
    ),
    "annotation with a short keypoints list": (
        "gt",
        lambda gt, res: _spoiled(gt, ["annotations", 1, "keypoints"], lambda kp: kp[:-1]),
        "ground-truth annotation 1 has 50 keypoint values, expected 51",
    ),
    "annotation with a non-numeric keypoint": (
        "gt",
        lambda gt, res: _spoiled(gt, ["annotations", 2, "keypoints", 4], "x"),
        "ground-truth annotation 2: keypoints value 4 is not a number: 'x'",
    ),
    "annotation whose keypoints are not a list": (
        "gt",
        lambda gt, res: _spoiled(gt, ["annotations", 0, "keypoints"], None),
        "ground-truth annotation 0: keypoints must be a list, got None",
    ),
}


def _run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "aggpose_jax.evaluation.cocoeval", *map(str, args)],
        capture_output=True,
        text=True,
    )


def _assert_one_line_error(out: subprocess.CompletedProcess, path, message: str) -> None:
    assert out.returncode != 0 and out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert re.search(re.escape(f"{path}: ") + message, lines[0]), lines[0]


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_command_line_bad_input_is_one_line(tmp_path, case):
    which, spoil, message = BAD_INPUT[case]
    gt, results = _valid_pair()
    paths = {"gt": tmp_path / "gt.json", "res": tmp_path / "res.json"}
    paths["gt"].write_text(json.dumps(gt))
    paths["res"].write_text(json.dumps(results))
    paths[which].write_text(spoil(gt, results))
    _assert_one_line_error(_run_cli(paths["gt"], paths["res"]), paths[which], message)


def test_command_line_missing_files_are_one_line(tmp_path):
    gt, results = _valid_pair()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    missing = tmp_path / "nope.json"
    for args in ((tmp_path / "gt.json", missing), (missing, tmp_path / "res.json")):
        _assert_one_line_error(_run_cli(*args), missing, "No such file or directory")
    out = _run_cli(tmp_path / "gt.json", tmp_path / "res.json", "--sigmas", missing)
    _assert_one_line_error(out, missing, "No such file or directory")
    (tmp_path / "sigmas.txt").write_text("0.1 high 0.3")
    out = _run_cli(tmp_path / "gt.json", tmp_path / "res.json", "--sigmas", tmp_path / "sigmas.txt")
    _assert_one_line_error(out, tmp_path / "sigmas.txt", "not K numbers")
    # The valid pair itself scores.
    out = _run_cli(tmp_path / "gt.json", tmp_path / "res.json")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 10, out.stderr
