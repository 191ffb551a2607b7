"""Random COCO-format scenes and the pycocotools oracle, plus the randomized agreement test.

Other cocoeval tests import `make_scene`, `pycocotools_eval` and `assert_agrees` from here.
"""

import contextlib
import copy
import gc
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from aggpose_jax.evaluation import coco_json, coco_tables, cocoeval, matching, oks


def pycocotools_eval(gt: dict, results: list, sigmas=None) -> COCOeval:
    """pycocotools' COCOeval('keypoints') after evaluate/accumulate/summarize, silenced.

    Works on deep copies (pycocotools writes into its inputs) and accepts empty results (its
    loadRes would index results[0]).
    """
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_agrees(gt: dict, results: list, sigmas=None, *, check_oks: bool = True) -> dict:
    """Stats (and OKS matrices) of ours and pycocotools agree to 1e-6 (OKS to 1e-12)."""
    ref = pycocotools_eval(gt, results, sigmas)
    gt_before, res_before = copy.deepcopy(gt), copy.deepcopy(results)
    ours = cocoeval.evaluate(gt, results, sigmas)
    assert gt == gt_before and results == res_before, "inputs were modified"
    got = np.array([ours[k] for k in cocoeval.STAT_NAMES])
    np.testing.assert_allclose(got, ref.stats, rtol=0, atol=1e-6)
    if check_oks:
        matrices = cocoeval.compute_oks(gt, results, sigmas)
        assert set(matrices) == set(ref.ious)
        for key, want in ref.ious.items():
            if len(want) == 0:
                assert matrices[key].size == 0, key
            else:
                np.testing.assert_allclose(
                    matrices[key], want, rtol=0, atol=1e-12, err_msg=str(key)
                )
    return ours


def _gt_person(rng, ann_id, image_id, cat_id, k, area=None, crowd=False):
    w, h = rng.uniform(5, 250, 2)
    x, y = rng.uniform(0, 400, 2)
    xs, ys = rng.uniform(x, x + w, k), rng.uniform(y, y + h, k)
    v = rng.choice([0, 1, 2], size=k, p=[0.3, 0.2, 0.5])
    if crowd or rng.uniform() < 0.1:
        v[:] = 0
    kp = np.stack([np.where(v > 0, xs, 0), np.where(v > 0, ys, 0), v], 1)
    if area is None:
        area = float(w * h * rng.uniform(0.4, 0.9))
        if rng.uniform() < 0.15:
            area = float(rng.choice([32.0**2, 96.0**2]))  # range borders, exactly
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "keypoints": [float(a) for a in kp.ravel()],
        "num_keypoints": int(np.count_nonzero(v)),
        "bbox": [float(x), float(y), float(w), float(h)],
        "area": area,
        "iscrowd": int(crowd),
    }
    if rng.uniform() < 0.1:
        ann["ignore"] = int(rng.integers(0, 2))  # pycocotools overwrites this field
    return ann


def _result(rng, image_id, cat_id, k, near=None, score=None):
    if near is not None and rng.uniform() < 0.9:
        base = np.array(near["keypoints"], dtype=np.float64).reshape(k, 3)
        bx, by, bw, bh = near["bbox"]
        fill = np.stack([rng.uniform(bx, bx + bw, k), rng.uniform(by, by + bh, k)], 1)
        xy = np.where(base[:, 2:] > 0, base[:, :2], fill)
        xy = xy + rng.normal(0, rng.choice([0.5, 3, 10, 30]), (k, 2))
    else:
        xy = rng.uniform(0, 600, (k, 2))
    kp = np.concatenate([xy, rng.uniform(0, 1, (k, 1))], 1)
    if score is None:
        score = float(rng.choice([0.5, 0.9])) if rng.uniform() < 0.3 else float(rng.uniform())
    return {
        "image_id": image_id,
        "category_id": cat_id,
        "keypoints": [float(a) for a in kp.ravel()],
        "score": score,
    }


def make_scene(seed: int, k: int = 17, num_images: int = 4, num_cats: int = 1) -> tuple[dict, list]:
    """A random ground truth and results with the awkward cases mixed in: crowds, persons without
    keypoints, v=1/v=2, border areas, images without gt, duplicates, score ties, > 20 results."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i)} for i in rng.choice(10_000, num_images, replace=False)]
    cats = [
        {"id": c + 1, "name": f"c{c}", "keypoints": [f"k{j}" for j in range(k)]}
        for c in range(num_cats)
    ]
    anns, results = [], []
    for img in images:
        for cat in cats:
            n = int(rng.choice([0, 1, 2, 4, 8, 14]))
            for _ in range(n):
                crowd = rng.uniform() < 0.08
                anns.append(_gt_person(rng, len(anns) + 1, img["id"], cat["id"], k, crowd=crowd))
                if rng.uniform() < 0.1:  # an identical twin: OKS ties between gts
                    anns.append(dict(copy.deepcopy(anns[-1]), id=len(anns) + 1))
            mine = [a for a in anns if a["image_id"] == img["id"] and a["category_id"] == cat["id"]]
            for a in mine:
                for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
                    results.append(_result(rng, img["id"], cat["id"], k, near=a))
                    if rng.uniform() < 0.1:
                        results.append(copy.deepcopy(results[-1]))  # exact duplicate
            for _ in range(int(rng.choice([0, 1, 3, 25]))):
                results.append(_result(rng, img["id"], cat["id"], k))
    rng.shuffle(results)
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, results


@pytest.mark.parametrize("seed", range(40))
def test_random_scenes_agree_with_pycocotools(seed):
    k, sigmas, num_cats = 17, None, 1
    if seed % 4 == 1:
        k, sigmas = 21, np.full(21, 0.05)
    elif seed % 4 == 2:
        num_cats = 2
    elif seed % 4 == 3:
        k, sigmas = 5, np.random.default_rng(seed).uniform(0.02, 0.1, 5)
    gt, results = make_scene(seed, k=k, num_images=1 + seed % 6, num_cats=num_cats)
    assert_agrees(gt, results, sigmas)


@pytest.mark.parametrize("seed", range(6))
def test_random_scenes_with_result_boxes_agree(seed):
    # A bbox in the first result switches pycocotools' loadRes to box areas for every result.
    gt, results = make_scene(100 + seed, num_images=3)
    rng = np.random.default_rng(seed)
    for r in results:
        xy = np.array(r["keypoints"]).reshape(-1, 3)[:, :2]
        lo = xy.min(0) - rng.uniform(0, 40, 2)
        r["bbox"] = [*lo.tolist(), *(xy.max(0) - lo + rng.uniform(0, 40, 2)).tolist()]
    assert_agrees(gt, results)


def _our_matches(gt, results, sigmas=None):
    """{(image_id, category_id, area_index): (T, D) matched gt id or 0}, pycocotools' dtMatches."""
    k = coco_json.infer_num_keypoints(gt, results)
    sig = cocoeval.resolve_sigmas(sigmas, k)
    gtt = coco_tables.load_ground_truth(gt, k, strict=True)
    dtt = coco_tables.load_results(results, gtt, k, cocoeval.MAX_DETS, strict=True)
    pair_dt, pair_gt = oks.pair_indices(dtt.key, gtt.key)
    values = oks.pairwise_oks(dtt.xy, gtt.keypoints, gtt.bbox, gtt.area, sig, pair_dt, pair_gt)
    ranges = cocoeval.AREA_RANGES
    ignore = gtt.ignore | (gtt.area < ranges[:, :1]) | (gtt.area > ranges[:, 1:])
    m = matching.match_greedy(
        values, pair_dt, pair_gt, dtt.key, dtt.rank, gtt.key, ignore, gtt.iscrowd,
        cocoeval.OKS_THRESHOLDS,
    )  # fmt: skip
    ids = np.where(m >= 0, gtt.ann_id[np.maximum(m, 0)] if gtt.ann_id.size else 0, 0)
    n_cat = len(gtt.category_ids)
    out = {}
    for key in np.unique(dtt.key):
        rows = np.flatnonzero(dtt.key == key)
        img, cat = gtt.image_ids[key // n_cat], gtt.category_ids[key % n_cat]
        for a in range(len(ranges)):
            out[img, cat, a] = ids[a][:, rows]
    return out


@pytest.mark.parametrize("seed", range(12))
def test_random_scenes_match_like_pycocotools(seed):
    gt, results = make_scene(200 + seed, num_images=4, num_cats=1 + seed % 2)
    ref = pycocotools_eval(gt, results)
    ours = _our_matches(gt, results)
    area_of = {tuple(r): i for i, r in enumerate(ref.params.areaRng)}
    seen = 0
    for e in ref.evalImgs:
        if e is None or not e["dtIds"]:
            continue
        got = ours[e["image_id"], e["category_id"], area_of[tuple(e["aRng"])]]
        np.testing.assert_array_equal(got, e["dtMatches"])
        seen += 1
    assert seen == len(ours) > 0


@pytest.mark.parametrize("seed", range(4))
def test_scoring_from_files_equals_from_objects_and_pycocotools(tmp_path, seed):
    k, sigmas = (21, np.full(21, 0.05)) if seed % 2 else (17, None)
    gt, results = make_scene(300 + seed, k=k, num_images=6, num_cats=1 + seed // 2)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    from_objects = assert_agrees(gt, results, sigmas)
    from_files = cocoeval.evaluate(gt_path, str(res_path), sigmas)
    assert from_files == from_objects
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        ref = COCOeval(coco_gt, coco_gt.loadRes(str(res_path)), "keypoints")
        if sigmas is not None:
            ref.params.kpt_oks_sigmas = sigmas
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    np.testing.assert_array_equal([from_files[n] for n in cocoeval.STAT_NAMES], ref.stats)
    oks_files = cocoeval.compute_oks(gt_path, res_path, sigmas)
    oks_objects = cocoeval.compute_oks(gt, results, sigmas)
    assert oks_files.keys() == oks_objects.keys()
    for key, want in oks_objects.items():
        np.testing.assert_array_equal(oks_files[key], want)
    # The collector, paused while files are parsed, is left as it was found.
    assert gc.isenabled()
    gc.disable()
    try:
        cocoeval.evaluate(gt_path, res_path, sigmas)
        assert not gc.isenabled()
    finally:
        gc.enable()
