"""Top-down COCO keypoint evaluation: predict every crop, rescore, NMS, write results, score.

The trainer calls `run_evaluation` with a predict function (a jitted model apply) and an iterable of
host batches; nothing here holds state or imports models. The order is the official release's:
flip test -> DARK decode -> image coordinates -> rescoring -> OKS-NMS per image -> COCOeval.
With several processes each one predicts its share of the crops; the predictions are gathered (in
record order) before NMS, so every process scores the whole set and gets the same numbers.
"""

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from aggpose_jax.evaluation import nms as nms_lib
from aggpose_jax.evaluation import predict, results
from aggpose_jax.keypoints import geometry
from aggpose_jax.keypoints.metainfo import KeypointFormat

Scorer = Callable[[Any, list, np.ndarray], Mapping[str, float]]


@dataclasses.dataclass(frozen=True)
class PersonPredictions:
    """Decoded keypoints of N top-down crops, before rescoring and NMS.

    Attributes: coords (N, K, 2) image pixels, maxvals (N, K) joint confidences, centers (N, 2),
    scales (N, 2), box_scores (N,) (1 for ground-truth boxes), image_ids (N,) int64,
    record_indices (N,) int64 (each crop's place in the evaluation records: it orders the rows).
    """

    coords: np.ndarray
    maxvals: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    box_scores: np.ndarray
    image_ids: np.ndarray
    record_indices: np.ndarray


def collect_predictions(
    predict_fn: predict.PredictFn,
    batches: Iterable[Mapping[str, np.ndarray]],
    fmt: KeypointFormat,
    *,
    flip_test: bool = True,
    method: str = "dark",
    heatmap_wh: tuple[int, int] | None = None,
) -> PersonPredictions:
    """Run `predict.predict_keypoints` over host batches and stack the valid rows.

    Shapes: each batch has "image" (B, H, W, 3) (what predict_fn takes: the loaders' uint8 RGB),
    "center" (B, 2), "scale" (B, 2), "score" (B,), "image_id" (B,) int and optionally "valid" (B,)
    bool (False for the padding of a final batch; those rows are dropped) and "record_index" (B,)
    int (the running row number when absent) -> PersonPredictions with N = number of valid rows.
    """
    flip = fmt.flip_indices if flip_test else None
    parts = {f.name: [] for f in dataclasses.fields(PersonPredictions)}
    row = 0
    for i, batch in enumerate(batches):
        missing = {"image", "center", "scale", "score", "image_id"} - set(batch)
        if missing:
            raise KeyError(f"evaluation batch {i} lacks {sorted(missing)}")
        centers = np.asarray(batch["center"], np.float64)
        scales = np.asarray(batch["scale"], np.float64)
        coords, maxvals = predict.predict_keypoints(
            predict_fn,
            batch["image"],
            centers,
            scales,
            flip_indices=flip,
            heatmap_wh=heatmap_wh,
            method=method,
        )
        if maxvals.shape[1] != fmt.num_keypoints:
            raise ValueError(
                f"predict_fn gave {maxvals.shape[1]} keypoints, format {fmt.name!r} has {fmt.num_keypoints}"
            )
        valid = np.asarray(batch.get("valid", np.ones(len(centers), bool)), bool)
        rows = np.arange(row, row + len(centers))
        row += len(centers)
        for name, value in (
            ("coords", coords),
            ("maxvals", maxvals),
            ("centers", centers),
            ("scales", scales),
            ("box_scores", np.asarray(batch["score"], np.float64)),
            ("image_ids", np.asarray(batch["image_id"], np.int64)),
            ("record_indices", np.asarray(batch.get("record_index", rows), np.int64)),
        ):
            parts[name].append(value[valid])
    if not parts["coords"]:
        k = fmt.num_keypoints
        empty = {"coords": (0, k, 2), "maxvals": (0, k), "centers": (0, 2), "scales": (0, 2)}
        return PersonPredictions(
            **{n: np.zeros(s) for n, s in empty.items()},
            box_scores=np.zeros(0),
            image_ids=np.zeros(0, np.int64),
            record_indices=np.zeros(0, np.int64),
        )
    return PersonPredictions(**{n: np.concatenate(v) for n, v in parts.items()})


def gather_predictions(preds: PersonPredictions) -> PersonPredictions:
    """Every process's predictions, on every process, sorted by record index.

    Shapes: this process's N_p persons -> N = sum over processes of N_p. A collective: every process
    calls it. With one process it only sorts. Records sharded `shard_index::shard_count` over the
    processes come back in the order one process would have predicted them.
    """
    fields = [f.name for f in dataclasses.fields(preds)]
    if jax.process_count() > 1:
        counts = np.asarray(multihost_utils.process_allgather(np.int64(len(preds.image_ids))))
        most = int(counts.max())

        def gather(x: np.ndarray) -> np.ndarray:
            # As bytes: JAX without x64 would round float64 (and int64) rows to 32 bits.
            width = int(np.prod(x.shape[1:], dtype=np.int64))
            rows = np.ascontiguousarray(x).reshape(len(x), width).view(np.uint8)
            padded = np.zeros((most, rows.shape[1]), np.uint8)
            padded[: len(x)] = rows
            stacked = np.asarray(multihost_utils.process_allgather(padded))  # (P, most, bytes)
            joined = np.concatenate([part[:n] for part, n in zip(stacked, counts, strict=True)])
            return joined.view(x.dtype).reshape(-1, *x.shape[1:])

        preds = PersonPredictions(**{n: gather(getattr(preds, n)) for n in fields})
    order = np.argsort(preds.record_indices, kind="stable")
    return PersonPredictions(**{n: getattr(preds, n)[order] for n in fields})


def select_persons(
    preds: PersonPredictions,
    fmt: KeypointFormat,
    *,
    nms: str | None = "oks",
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    category_id: int = 1,
) -> list[dict]:
    """Rescore every person, run NMS per image, and build the COCO result entries of the kept ones.

    Shapes: preds with N persons -> M <= N result entries. score = (mean joint confidence above
    `vis_thr`) * box score; NMS ("oks", "soft" or None) uses area = (200 s_x)(200 s_y) and the
    format's OKS sigmas. The official release uses "oks" for COCO and None for the infant set.
    """
    scores = nms_lib.rescore_persons(preds.maxvals, preds.box_scores, vis_thr)
    areas = np.prod(preds.scales * geometry.PIXEL_STD, axis=-1)
    keep = nms_lib.nms_per_image(
        preds.image_ids, preds.coords, scores, areas, fmt.sigmas_array, nms, oks_thr
    )
    return results.make_results(
        preds.coords[keep],
        preds.maxvals[keep],
        scores[keep],
        preds.image_ids[keep],
        preds.centers[keep],
        preds.scales[keep],
        category_id,
    )


def _default_scorer(gt, entries, sigmas):
    # Imported here so that this module stays importable on its own (the scorer is a peer module).
    from aggpose_jax.evaluation import cocoeval

    return cocoeval.evaluate(gt, entries, sigmas)


def evaluate_predictions(
    preds: PersonPredictions,
    gt: Any,
    fmt: KeypointFormat,
    *,
    nms: str | None = "oks",
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    results_path: str | None = None,
    category_id: int = 1,
    scorer: Scorer | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Rescore, NMS, optionally write the results JSON, and score against the ground truth.

    Shapes: preds with N persons, gt a COCO-format dict or JSON path -> (stats {"AP", "AP50", "AP75",
    "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}, M result entries). `scorer(gt, results,
    sigmas)` defaults to `cocoeval.evaluate`.
    """
    entries = select_persons(
        preds, fmt, nms=nms, vis_thr=vis_thr, oks_thr=oks_thr, category_id=category_id
    )
    if results_path is not None:
        results.write_results(entries, results_path)
    score = scorer or _default_scorer
    stats = {k: float(v) for k, v in score(gt, entries, fmt.sigmas_array).items()}
    return stats, entries


def run_evaluation(
    predict_fn: predict.PredictFn,
    batches: Iterable[Mapping[str, np.ndarray]],
    gt: Any,
    fmt: KeypointFormat,
    *,
    flip_test: bool = True,
    nms: str | None = "oks",
    results_path: str | None = None,
    method: str = "dark",
    heatmap_wh: tuple[int, int] | None = None,
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    scorer: Scorer | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """The whole top-down evaluation: `collect_predictions`, `gather_predictions`, then scoring.

    Shapes: batches as in `collect_predictions`, this process's share of the records (all of them
    on one process); gt a COCO-format dict or JSON path -> (stats dict, result entries of the whole
    set), the same on every process; process 0 alone writes `results_path`. Official settings:
    flip_test=True, method="dark", nms="oks" (COCO) or None (infant), vis_thr 0.2, oks_thr 0.9.
    """
    preds = collect_predictions(
        predict_fn, batches, fmt, flip_test=flip_test, method=method, heatmap_wh=heatmap_wh
    )
    preds = gather_predictions(preds)
    if jax.process_index() != 0:
        results_path = None
    return evaluate_predictions(
        preds,
        gt,
        fmt,
        nms=nms,
        vis_thr=vis_thr,
        oks_thr=oks_thr,
        results_path=results_path,
        scorer=scorer,
    )
