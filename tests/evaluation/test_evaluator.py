"""End-to-end top-down evaluation on the bundled COCO sample with a near-perfect predict function."""

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval

from aggpose_jax.evaluation import evaluator, persons, results
from aggpose_jax.keypoints import codecs, geometry
from aggpose_jax.keypoints.metainfo import COCO
from aggpose_jax.tasks.topdown_heatmap import TopdownHeatmap

IN_HW, HM_HW = (256, 192), (64, 48)


def run_evaluation(fn, batches, gt, fmt, *, flip_test=True, nms="oks", **kwargs):
    """The top-down task's persons of a host heatmap function, through the generic evaluation."""
    task = TopdownHeatmap(fmt, flip_test=flip_test, nms=nms)
    return evaluator.run_evaluation(
        task.host_persons_fn(fn), batches, gt, task.sigmas, nms=nms, **kwargs
    )


def collect_predictions(fn, batches, fmt):
    return evaluator.collect_persons(TopdownHeatmap(fmt).host_persons_fn(fn), batches, 17)


def _gt_crops(gt):
    """GT-box crops as the official loader makes them: clean box -> center/scale, joints -> heatmaps."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    crops = []
    for ann in gt["annotations"]:
        if ann["iscrowd"] or ann["category_id"] != 1 or max(ann["keypoints"]) == 0:
            continue
        box = geometry.clean_box(np.array(ann["bbox"]), image_hw=sizes[ann["image_id"]])
        if box is None:
            continue
        center, scale = geometry.box_to_center_scale(box, IN_HW[1] / IN_HW[0])
        kp = np.array(ann["keypoints"], np.float64).reshape(-1, 3)
        hm_xy = geometry.apply_affine(
            kp[:, :2], geometry.affine_transform_matrix(center, scale, 0.0, output_hw=HM_HW)
        )
        target, _ = codecs.encode_heatmaps(hm_xy, kp[:, 2], heatmap_hw=HM_HW, sigma=2.0)
        crops.append(
            {
                "center": center,
                "scale": scale,
                "image_id": ann["image_id"],
                "target": target,
                "labels": kp,
            }
        )
    return crops


def _perfect_predict_fn(targets):
    """A flip-equivariant oracle: channel 1 of the crop holds its index, channel 0 marks its left half.

    For a mirrored crop it returns the mirrored heatmaps with left/right channels swapped, which is
    what an exactly flip-equivariant model would give.
    """
    targets = np.stack(targets)
    mirrored = targets[:, :, ::-1, :][..., COCO.flip_indices]

    def fn(images):
        images = np.asarray(images)
        index = np.rint(images[:, 0, 0, 1]).astype(int)
        flipped = images[:, 0, -1, 0] > 0.5
        return np.where(flipped[:, None, None, None], mirrored[index], targets[index])

    return fn


def _batches(crops, batch_size, box_score=1.0, offset=0):
    """Host batches with a padded final batch (valid=False rows repeat the last crop)."""
    for start in range(0, len(crops), batch_size):
        rows = list(range(start, min(start + batch_size, len(crops))))
        valid = np.ones(batch_size, bool)
        valid[len(rows) :] = False
        rows += [rows[-1]] * (batch_size - len(rows))
        images = np.zeros((batch_size, *IN_HW, 3), np.float32)
        images[:, :, : IN_HW[1] // 2, 0] = 1.0
        images[:, :, :, 1] = np.array(rows, np.float32)[:, None, None] + offset
        yield {
            "image": images,
            "center": np.stack([crops[r]["center"] for r in rows]),
            "scale": np.stack([crops[r]["scale"] for r in rows]),
            "score": np.full(batch_size, box_score, np.float32),
            "image_id": np.array([crops[r]["image_id"] for r in rows]),
            "valid": valid,
        }


@pytest.fixture(scope="module")
def gt(sample_dir):
    return json.loads((sample_dir / "test_coco.json").read_text())


def _pycocotools_stats(gt_path, results_path):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = PyCOCO(str(gt_path))
        ev = COCOeval(coco, coco.loadRes(str(results_path)), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_near_perfect_predictions_score_ap_close_to_one(gt, sample_dir, tmp_path):
    crops = _gt_crops(gt)
    assert len(crops) == 12
    fn = _perfect_predict_fn([c["target"] for c in crops])
    path = tmp_path / "results.json"
    stats, entries = run_evaluation(
        fn, _batches(crops, 5), gt, COCO, flip_test=True, nms="oks", results_path=str(path)
    )
    assert len(entries) == 12  # padding rows dropped, nothing suppressed
    assert stats["AP"] > 0.95 and stats["AR"] > 0.95 and stats["AP50"] == pytest.approx(1.0)
    # Rescored: joints at Gaussian peaks are near 1; box score 1.
    assert min(e["score"] for e in entries) > 0.9
    # The file is what was returned, and pycocotools scores it the same.
    assert results.read_results(path, num_keypoints=17) == entries
    ref = _pycocotools_stats(sample_dir / "test_coco.json", path)
    np.testing.assert_allclose(
        [stats[k] for k in ("AP", "AP50", "AP75", "APm", "APl")], ref[:5], atol=1e-9
    )
    np.testing.assert_allclose(
        [stats[k] for k in ("AR", "AR50", "AR75", "ARm", "ARl")], ref[5:], atol=1e-9
    )

    # Each kept person's keypoints land on its labelled ones (matched through the crop center).
    errs = []
    for entry in entries:
        crop = next(c for c in crops if np.allclose(c["center"], entry["center"]))
        pred = np.array(entry["keypoints"]).reshape(-1, 3)
        vis = crop["labels"][:, 2] > 0
        errs.append(np.abs(pred[vis, :2] - crop["labels"][vis, :2]).max())
    assert np.median(errs) < 0.01 and max(errs) < 1.0  # the integer argmax alone is off by ~2 px


def test_duplicates_are_suppressed_and_nms_options(gt):
    crops = _gt_crops(gt)
    fn = _perfect_predict_fn([c["target"] for c in crops] * 2)
    # Every crop twice: the second copy with box score 0.5 and a fresh index into the oracle.
    batches = list(_batches(crops, 4)) + list(_batches(crops, 4, box_score=0.5, offset=len(crops)))
    stats_oks, kept = run_evaluation(fn, batches, gt, COCO, nms="oks")
    assert len(kept) == 12 and all(e["score"] > 0.9 for e in kept)
    _, soft = run_evaluation(fn, batches, gt, COCO, nms="soft")
    assert len(soft) == 24  # soft-NMS keeps everyone here (at most 20 per image)
    stats_none, every = run_evaluation(fn, batches, gt, COCO, nms=None, flip_test=False)
    assert len(every) == 24
    assert stats_oks["AP"] > 0.95 and stats_none["AP"] == pytest.approx(stats_oks["AP"], abs=0.02)


def test_scorer_injection_and_empty_input(gt):
    seen = {}

    def scorer(g, entries, sigmas):
        seen.update(n=len(entries), sigmas=sigmas)
        return {"AP": 0.5}

    stats, entries = run_evaluation(lambda x: x, [], gt, COCO, scorer=scorer)
    assert entries == [] and stats == {"AP": 0.5} and seen["n"] == 0
    np.testing.assert_array_equal(seen["sigmas"], COCO.sigmas_array)
    with pytest.raises(KeyError, match="batch 0 lacks"):
        run_evaluation(lambda x: x, [{"image": np.zeros((1, 4, 4, 3))}], gt, COCO, scorer=scorer)


def test_predictions_carry_record_indices_and_gather_in_record_order(gt):
    crops = _gt_crops(gt)
    fn = _perfect_predict_fn([c["target"] for c in crops])
    preds = collect_predictions(fn, _batches(crops, 5), COCO)
    # Without "record_index" in the batches: the running row number, padding rows dropped.
    np.testing.assert_array_equal(preds.record_indices, np.arange(12))
    # A shard's rows in any order come back sorted by record index, every field alike.
    order = np.array([5, 0, 11, 3, 7, 1, 9, 2, 10, 4, 8, 6])
    fields = [f.name for f in dataclasses.fields(preds)]
    shuffled = persons.Persons(**{n: getattr(preds, n)[order] for n in fields})
    gathered = persons.gather(shuffled)
    for n in fields:
        np.testing.assert_array_equal(getattr(gathered, n), getattr(preds, n))
    with_index = [dict(b, record_index=np.arange(5) + 100) for b in _batches(crops[:5], 5)]
    assert collect_predictions(fn, with_index, COCO).record_indices.tolist() == [
        100, 101, 102, 103, 104
    ]  # fmt: skip
