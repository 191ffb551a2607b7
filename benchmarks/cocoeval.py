"""COCO keypoint scoring speed: aggpose_jax.evaluation.cocoeval against pycocotools, same run.

A COCO-val-sized synthetic set is generated inline (seeded): 5,000 images, about 11,000 persons of
which about 6,400 have labelled keypoints (the rest are crowds or unlabelled people, as in COCO),
and about 110,000 results: noisy copies of the people at several noise levels plus false
positives, up to ~40 per crowded image (so the 20-per-image cut matters). Both scorers start from
the same loaded Python objects (no JSON parsing is timed) and run everything up to the ten stats.

    python -m benchmarks.cocoeval [--json] [--images 5000] [--repeats 1]
"""

import argparse
import contextlib
import io
import json
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


def run_pycocotools(gt: dict, results: list) -> np.ndarray:
    """pycocotools end to end from loaded objects: index, loadRes, evaluate, accumulate, summarize."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        # loadRes writes id/area/bbox into each result; give it shallow copies.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> None:
    """Time both scorers on the synthetic set and print the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each scorer; best is kept")
    args = parser.parse_args()

    gt, results = make_dataset(args.images)
    labelled = sum(a["num_keypoints"] > 0 for a in gt["annotations"])
    print(
        f"{args.images} images, {len(gt['annotations'])} gt persons ({labelled} with keypoints), "
        f"{len(results)} results"
    )
    cocoeval.evaluate(gt, results[:1000])  # warm imports and caches outside the timing

    ours_s, ref_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = cocoeval.evaluate(gt, results)
        ours_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = run_pycocotools(gt, results)
        ref_s.append(time.perf_counter() - t0)
    ours_stats = np.array([ours[k] for k in cocoeval.STAT_NAMES])
    diff = float(np.abs(ours_stats - ref).max())
    print(cocoeval.format_summary(ours_stats))
    figures = {
        "images": args.images,
        "gt_persons": len(gt["annotations"]),
        "gt_with_keypoints": int(labelled),
        "results": len(results),
        "pycocotools_s": round(min(ref_s), 3),
        "ours_s": round(min(ours_s), 3),
        "speedup": round(min(ref_s) / min(ours_s), 1),
        "max_abs_stat_diff": diff,
        "AP": round(ours["AP"], 4),
    }
    print(
        f"pycocotools {figures['pycocotools_s']:.2f} s, ours {figures['ours_s']:.2f} s, "
        f"speed-up {figures['speedup']}x, max |stat difference| {diff:.2e}"
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
