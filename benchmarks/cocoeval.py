"""COCO keypoint scoring speed: aggpose_jax.evaluation.cocoeval against pycocotools, same run.

A COCO-val-sized synthetic set is generated inline (seeded): 5,000 images, about 9,800 persons of
which about 6,400 have labelled keypoints (the rest are crowds or unlabelled people, as in COCO),
and about 116,000 results: noisy copies of the people at several noise levels plus false
positives, up to ~40 per crowded image (so the 20-per-image cut matters). Both scorers are timed
two ways, everything up to the ten stats: from the same loaded Python objects (no JSON parsing),
and from the same two JSON files (written untimed with `json.dump`; each scorer parses them its own
way: pycocotools with `json.load` in `COCO(path)` and `loadRes(path)`).

    python -m benchmarks.cocoeval [--json] [--images 5000] [--repeats 1]
"""

import argparse
import contextlib
import io
import json
import os
import tempfile
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from aggpose_jax.evaluation import cocoeval


def make_dataset(num_images: int, seed: int = 0) -> tuple[dict, list]:
    """A synthetic COCO-format person keypoint set and detector-like results.

    Shapes: -> (gt dict with num_images images, list of results with 17 keypoints each).
    """
    rng = np.random.default_rng(seed)
    per_image = rng.choice(
        [0, 1, 2, 3, 5, 8, 13], size=num_images, p=[0.3, 0.3, 0.15, 0.1, 0.08, 0.05, 0.02]
    )
    n = int(per_image.sum())
    image_of = np.repeat(np.arange(1, num_images + 1), per_image)
    wh = np.exp(rng.normal(4.0, 0.8, (n, 2))).clip(4, 600)
    xy0 = rng.uniform(0, 600, (n, 2))
    kp_xy = xy0[:, None] + rng.uniform(0, 1, (n, 17, 2)) * wh[:, None]
    vis = rng.choice([0, 1, 2], (n, 17), p=[0.35, 0.1, 0.55])
    unlabelled = rng.uniform(size=n) < 0.35
    crowd = unlabelled & (rng.uniform(size=n) < 0.05)
    vis[unlabelled] = 0
    area = wh[:, 0] * wh[:, 1] * rng.uniform(0.4, 0.8, n)
    anns = []
    for i in range(n):
        kp = np.concatenate([kp_xy[i] * (vis[i, :, None] > 0), vis[i, :, None]], 1)
        anns.append(
            {"id": i + 1, "image_id": int(image_of[i]), "category_id": 1,
             "keypoints": kp.ravel().tolist(), "num_keypoints": int((vis[i] > 0).sum()),
             "bbox": [*xy0[i].tolist(), *wh[i].tolist()], "area": float(area[i]),
             "iscrowd": int(crowd[i])}
        )  # fmt: skip
    # True positives at several noise levels (relative to the person's size), then false positives.
    copies = rng.choice([0, 3, 6, 12], size=n, p=[0.1, 0.3, 0.4, 0.2])
    src = np.repeat(np.arange(n), copies)
    scale = np.sqrt(area[src])[:, None, None]
    tp_xy = kp_xy[src] + rng.normal(0, 1, (src.size, 17, 2)) * scale * rng.choice(
        [0.02, 0.05, 0.1, 0.3], (src.size, 1, 1)
    )
    fp_count = rng.poisson(12, num_images)
    fp_img = np.repeat(np.arange(1, num_images + 1), fp_count)
    fp_xy = rng.uniform(0, 600, (fp_img.size, 1, 2)) + rng.uniform(0, 150, (fp_img.size, 17, 2))
    all_xy = np.concatenate([tp_xy, fp_xy])
    all_img = np.concatenate([image_of[src], fp_img])
    scores = np.concatenate([rng.beta(5, 2, src.size), rng.beta(2, 5, fp_img.size)]).round(4)
    kp_all = np.concatenate([all_xy, rng.uniform(0, 1, all_xy.shape[:2] + (1,))], 2).reshape(
        len(all_img), -1
    )
    results = [
        {"image_id": int(i), "category_id": 1, "keypoints": k, "score": float(s)}
        for i, k, s in zip(all_img.tolist(), kp_all.tolist(), scores.tolist(), strict=True)
    ]
    order = rng.permutation(len(results))
    gt = {"images": [{"id": i} for i in range(1, num_images + 1)], "annotations": anns,
          "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
    return gt, [results[j] for j in order]


def run_pycocotools(gt: dict | str, results: list | str) -> np.ndarray:
    """pycocotools end to end: index, loadRes, evaluate, accumulate, summarize.

    Shapes: gt a COCO dict or its JSON path, results a list or its JSON path -> (10,) stats.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(gt, str):
            coco_gt = COCO(gt)
        else:
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
        # loadRes writes id/area/bbox into each result; give it shallow copies.
        coco_dt = coco_gt.loadRes(
            results if isinstance(results, str) else [dict(r) for r in results]
        )
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def run_ours(gt: dict | str, results: list | str) -> np.ndarray:
    """aggpose_jax.evaluation.cocoeval end to end. Shapes: as `run_pycocotools`."""
    ours = cocoeval.evaluate(gt, results)
    return np.array([ours[k] for k in cocoeval.STAT_NAMES])


def _best_time(fn, *args, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time of `repeats` calls and the last call's stats."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), stats


def main() -> None:
    """Time both scorers on the synthetic set, from objects and from files; print the speed-ups."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each scorer; best is kept")
    args = parser.parse_args()

    gt, results = make_dataset(args.images)
    labelled = sum(a["num_keypoints"] > 0 for a in gt["annotations"])
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "results.json")
        for path, obj in ((gt_path, gt), (res_path, results)):
            with open(path, "w") as f:
                json.dump(obj, f)
        results_mb = os.path.getsize(res_path) / 1e6
        print(
            f"{args.images} images, {len(gt['annotations'])} gt persons ({labelled} with "
            f"keypoints), {len(results)} results ({results_mb:.0f} MB of JSON)"
        )
        cocoeval.evaluate(gt, results[:1000])  # warm imports and caches outside the timing

        timed = {}  # (way, scorer) -> (seconds, stats); the scorers alternate within each way
        for way, inputs in (("objects", (gt, results)), ("files", (gt_path, res_path))):
            for name, fn in (("ours", run_ours), ("pycocotools", run_pycocotools)):
                timed[way, name] = _best_time(fn, *inputs, repeats=args.repeats)
    ref = timed["objects", "pycocotools"][1]
    diff = max(float(np.abs(stats - ref).max()) for _, stats in timed.values())
    print(cocoeval.format_summary(timed["objects", "ours"][1]))
    figures = {
        "images": args.images,
        "gt_persons": len(gt["annotations"]),
        "gt_with_keypoints": int(labelled),
        "results": len(results),
        "results_mb": round(results_mb, 1),
        "pycocotools_s": round(timed["objects", "pycocotools"][0], 3),
        "ours_s": round(timed["objects", "ours"][0], 3),
        "speedup": round(timed["objects", "pycocotools"][0] / timed["objects", "ours"][0], 1),
        "files_pycocotools_s": round(timed["files", "pycocotools"][0], 3),
        "files_ours_s": round(timed["files", "ours"][0], 3),
        "files_speedup": round(timed["files", "pycocotools"][0] / timed["files", "ours"][0], 1),
        "max_abs_stat_diff": diff,
        "AP": round(float(ref[0]), 4),
    }
    for way, prefix in (("from objects", ""), ("from files", "files_")):
        print(
            f"{way}: pycocotools {figures[prefix + 'pycocotools_s']:.2f} s, "
            f"ours {figures[prefix + 'ours_s']:.2f} s, speed-up {figures[prefix + 'speedup']}x"
        )
    print(f"max |stat difference| over the four runs {diff:.2e}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
