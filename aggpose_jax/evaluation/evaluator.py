"""COCO keypoint evaluation of any pose task: persons -> rescoring -> NMS -> results JSON -> score.

The caller gives a `predict_persons(batch) -> Persons` function (a task's device predict followed by
its host mapping to image pixels) and this process's host batches; nothing here holds state or imports
models or tasks. The order is the official release's: rescoring -> OKS-NMS per image -> COCOeval.
With several processes each one predicts its share; the persons are gathered (in record order) before
NMS, so every process scores the whole set and gets the same numbers.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from aggpose_jax.evaluation import nms as nms_lib
from aggpose_jax.evaluation import persons as persons_lib
from aggpose_jax.evaluation import results
from aggpose_jax.evaluation.persons import Persons

Scorer = Callable[[Any, list, np.ndarray], Mapping[str, float]]
PredictPersons = Callable[[Mapping[str, np.ndarray]], Persons]


def collect_persons(
    predict_persons: PredictPersons,
    batches: Iterable[Mapping[str, np.ndarray]],
    num_keypoints: int,
) -> Persons:
    """`predict_persons` over host batches, stacked. Shapes: -> Persons of every batch's persons.

    A batch without "record_index" gets the running row number. A KeyError of `predict_persons` (a
    batch without a key the task needs) is re-raised naming the batch.
    """
    parts, row = [], 0
    for i, batch in enumerate(batches):
        n = len(next(iter(batch.values()))) if batch else 0
        if "record_index" not in batch:
            batch = {**batch, "record_index": np.arange(row, row + n)}
        row += n
        try:
            parts.append(predict_persons(batch))
        except KeyError as e:
            raise KeyError(f"evaluation batch {i} {e.args[0]}") from None
    return persons_lib.concat(parts, num_keypoints)


def select_persons(
    persons: Persons,
    sigmas: np.ndarray,
    *,
    nms: str | None = "oks",
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    category_id: int = 1,
) -> list[dict]:
    """Rescore every person, run NMS per image, and build the COCO result entries of the kept ones.

    Shapes: N persons, sigmas (K,) -> M <= N result entries. score = (mean joint confidence above
    `vis_thr`) * box score; NMS ("oks", "soft" or None) uses the persons' areas and the OKS sigmas.
    The official release uses "oks" for COCO and None for the infant set.
    """
    scores = nms_lib.rescore_persons(persons.keypoint_scores, persons.box_scores, vis_thr)
    keep = nms_lib.nms_per_image(
        persons.image_ids, persons.keypoints, scores, persons.areas, sigmas, nms, oks_thr
    )
    kept = persons.take(keep)
    return results.make_results(
        kept.keypoints, kept.keypoint_scores, scores[keep], kept.image_ids, kept.centers,
        kept.scales, category_id,
    )  # fmt: skip


def _default_scorer(gt, entries, sigmas):
    # Imported here so that this module stays importable on its own (the scorer is a peer module).
    from aggpose_jax.evaluation import cocoeval

    return cocoeval.evaluate(gt, entries, sigmas)


def evaluate_persons(
    persons: Persons,
    gt: Any,
    sigmas: np.ndarray,
    *,
    nms: str | None = "oks",
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    results_path: str | None = None,
    category_id: int = 1,
    scorer: Scorer | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Rescore, NMS, optionally write the results JSON, and score against the ground truth.

    Shapes: N persons, gt a COCO-format dict or JSON path, sigmas (K,) -> (stats {"AP", "AP50",
    "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}, M result entries).
    `scorer(gt, results, sigmas)` defaults to `cocoeval.evaluate`.
    """
    entries = select_persons(
        persons, sigmas, nms=nms, vis_thr=vis_thr, oks_thr=oks_thr, category_id=category_id
    )
    if results_path is not None:
        results.write_results(entries, results_path)
    score = scorer or _default_scorer
    stats = {k: float(v) for k, v in score(gt, entries, np.asarray(sigmas)).items()}
    return stats, entries


def run_evaluation(
    predict_persons: PredictPersons,
    batches: Iterable[Mapping[str, np.ndarray]],
    gt: Any,
    sigmas: np.ndarray,
    *,
    nms: str | None = "oks",
    results_path: str | None = None,
    vis_thr: float = nms_lib.IN_VIS_THRE,
    oks_thr: float = nms_lib.OKS_THRE,
    scorer: Scorer | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """The whole evaluation: `collect_persons`, `persons.gather`, then `evaluate_persons`.

    Shapes: batches are this process's share of the records (all of them on one process); gt a
    COCO-format dict or JSON path; sigmas (K,) -> (stats dict, result entries of the whole set), the
    same on every process; process 0 alone writes `results_path`.
    """
    collected = collect_persons(predict_persons, batches, len(sigmas))
    gathered = persons_lib.gather(collected)
    if jax.process_index() != 0:
        results_path = None
    return evaluate_persons(
        gathered, gt, sigmas, nms=nms, vis_thr=vis_thr, oks_thr=oks_thr,
        results_path=results_path, scorer=scorer,
    )  # fmt: skip
