"""COCO keypoint scoring (OKS AP/AR), a vectorised port of pycocotools' COCOeval('keypoints').

The protocol is the COCO keypoint challenge's (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014): OKS between results and ground truth, greedy matching per image at ten OKS
thresholds 0.50:0.05:0.95, 101-point interpolated precision, AP/AR over the area ranges all, medium
(32^2..96^2) and large (96^2..), at most 20 results per image and category.

By default (`strict_pycocotools=True`) the figures are those of pycocotools 2.0.x, quirks included;
docs/evaluation.md lists them and what `strict_pycocotools=False` changes.

    python -m aggpose_jax.evaluation.cocoeval GT.json RESULTS.json [--sigmas coco|infant|FILE]
"""

import argparse
import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from aggpose_jax.evaluation import coco_json, coco_tables, matching, oks
from aggpose_jax.keypoints import metainfo

MAX_DETS = 20
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = np.array([[0.0, 1e5**2], [32.0**2, 96.0**2], [96.0**2, 1e5**2]])
AREA_LABELS = ("all", "medium", "large")
# (name, is AP, OKS threshold or None for the mean over all ten, area label), pycocotools' order.
STATS = (
    ("AP", True, None, "all"),
    ("AP50", True, 0.5, "all"),
    ("AP75", True, 0.75, "all"),
    ("APm", True, None, "medium"),
    ("APl", True, None, "large"),
    ("AR", False, None, "all"),
    ("AR50", False, 0.5, "all"),
    ("AR75", False, 0.75, "all"),
    ("ARm", False, None, "medium"),
    ("ARl", False, None, "large"),
)
STAT_NAMES = tuple(s[0] for s in STATS)


@dataclasses.dataclass(frozen=True)
class KeypointEval:
    """Everything the scorer computed. T = 10 thresholds, R = 101 recall points, C categories,
    A = 3 area ranges.

    Attributes:
      stats: (10,) in STAT_NAMES order; -1 (strict) or NaN where no category has a regular gt.
      precision: (T, R, C, A) interpolated precision, -1 for a category without a regular gt.
      recall: (T, C, A) final recall, -1 likewise.
      category_ids: (C,) the category ids along the C axis.
    """

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    category_ids: list

    def as_dict(self) -> dict[str, float]:
        """The ten figures by name, as Python floats."""
        return {name: float(v) for name, v in zip(STAT_NAMES, self.stats, strict=True)}


def resolve_sigmas(sigmas, num_keypoints: int | None) -> np.ndarray:
    """OKS sigmas as a (K,) float64 array: None means COCO-17 (only when K is 17); "coco" and
    "infant" name the built-in formats; anything else is a sequence of K numbers.

    Shapes: -> (K,).
    """
    if isinstance(sigmas, str):
        formats = {"coco": metainfo.COCO, "infant": metainfo.INFANT}
        if sigmas not in formats:
            raise ValueError(f"unknown sigmas {sigmas!r}: use 'coco', 'infant' or numbers")
        sigmas = None if sigmas == "coco" else formats[sigmas].sigmas_array
    if sigmas is None:
        if num_keypoints not in (None, metainfo.COCO.num_keypoints):
            raise ValueError(
                f"the data has {num_keypoints} keypoints: pass their OKS sigmas (the COCO-17 "
                "defaults only fit 17), e.g. metainfo.INFANT.sigmas_array for the infant set"
            )
        # pycocotools builds its defaults as [.26, .25, ...] / 10.0, which differs from 0.026...
        # in the last bit; rebuild it that way so OKS agrees to the bit.
        return np.round(metainfo.COCO.sigmas_array * 10.0, 2) / 10.0
    out = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if num_keypoints is not None and out.size != num_keypoints:
        raise ValueError(f"{out.size} sigmas given for data with {num_keypoints} keypoints")
    if not np.all(out > 0):
        raise ValueError("OKS sigmas must be positive")
    return out


def _load_tables(gt, results, sigmas, strict: bool):
    gt_source, results_source = coco_json.source_of(gt), coco_json.source_of(results)
    gt, results = coco_json.load_json(gt), coco_json.load_json(results)
    sig = resolve_sigmas(sigmas, coco_json.infer_num_keypoints(gt, results))
    gtt = coco_tables.load_ground_truth(gt, sig.size, strict=strict, source=gt_source)
    dtt = coco_tables.load_results(
        results, gtt, sig.size, MAX_DETS, strict=strict, source=results_source
    )
    return sig, gtt, dtt


def _prepare(gt, results, sigmas, strict: bool):
    # Objects parsed from files die when _load_tables returns, before the collector is back.
    with coco_json.paused_gc():
        sig, gtt, dtt = _load_tables(gt, results, sigmas, strict)
    pair_dt, pair_gt = oks.pair_indices(dtt.key, gtt.key)
    values = oks.pairwise_oks(dtt.xy, gtt.keypoints, gtt.bbox, gtt.area, sig, pair_dt, pair_gt)
    return gtt, dtt, pair_dt, pair_gt, values


def compute_oks(
    gt, results, sigmas=None, *, strict_pycocotools: bool = True
) -> dict[tuple, np.ndarray]:
    """Per (image, category) OKS matrices, as pycocotools' `COCOeval.ious`.

    Rows are the results of that image and category sorted by score (descending, ties in input
    order) and cut at 20; columns the gts in file order. pycocotools stores `[]` where either side
    is empty; here that is an array with a zero dimension.

    Shapes: -> {(image_id, category_id): (num_dt, num_gt) float64} for every image and category.
    """
    gtt, dtt, pair_dt, pair_gt, values = _prepare(gt, results, sigmas, strict_pycocotools)
    n_cat = len(gtt.category_ids)
    n_keys = len(gtt.image_ids) * n_cat
    num_gt = np.bincount(gtt.key, minlength=n_keys)
    num_dt = np.bincount(dtt.key, minlength=n_keys)
    pair_start = np.searchsorted(dtt.key[pair_dt], np.arange(n_keys))
    out = {}
    for key in range(n_keys):
        d, g = int(num_dt[key]), int(num_gt[key])
        block = values[pair_start[key] : pair_start[key] + d * g] if d and g else np.zeros(0)
        img, cat = gtt.image_ids[key // n_cat], gtt.category_ids[key % n_cat]
        out[img, cat] = block.reshape(d, g)
    return out


def score(gt, results, sigmas=None, *, strict_pycocotools: bool = True) -> KeypointEval:
    """Evaluate keypoint results against COCO-format ground truth.

    Args:
      gt: a COCO-format dict (images, annotations, categories) or a path to its JSON.
      results: a list of {image_id, category_id, keypoints [x, y, s] * K, score} or a JSON path.
      sigmas: (K,) OKS sigmas, "coco", "infant", or None (COCO-17 defaults; K must be 17).
      strict_pycocotools: reproduce pycocotools' quirks (default); False corrects them.

    Shapes: -> KeypointEval with stats (10,), precision (10, 101, C, 3), recall (10, C, 3).
    """
    gtt, dtt, pair_dt, pair_gt, values = _prepare(gt, results, sigmas, strict_pycocotools)
    gt_ignore = gtt.ignore | (gtt.area < AREA_RANGES[:, :1]) | (gtt.area > AREA_RANGES[:, 1:])
    matches = matching.match_greedy(
        values, pair_dt, pair_gt, dtt.key, dtt.rank, gtt.key, gt_ignore, gtt.iscrowd, OKS_THRESHOLDS
    )
    n_cat = len(gtt.category_ids)
    dt_cat, dt_img = dtt.key % n_cat, dtt.key // n_cat
    # pycocotools concatenates images in id order, then sorts by score with a stable sort.
    dt_order = np.lexsort((dtt.rank, dt_img, -dtt.score, dt_cat))
    precision, recall = matching.accumulate(
        matches,
        dt_cat,
        dt_order,
        dtt.area,
        gtt.key % n_cat,
        gt_ignore,
        ~gtt.ann_id_is_zero if strict_pycocotools else np.ones(gtt.key.size, bool),
        AREA_RANGES,
        RECALL_THRESHOLDS,
        n_cat,
    )
    stats = np.array(
        [
            _summarize(precision, recall, ap, thr, area, strict_pycocotools)
            for _, ap, thr, area in STATS
        ]
    )
    return KeypointEval(stats, precision, recall, list(gtt.category_ids))


def _summarize(precision, recall, ap: bool, thr, area: str, strict: bool) -> float:
    a = AREA_LABELS.index(area)
    s = precision[..., a] if ap else recall[..., a]
    if thr is not None:
        s = s[np.flatnonzero(OKS_THRESHOLDS == thr)]
    s = s[s > -1]
    if s.size == 0:
        return -1.0 if strict else float("nan")
    return float(np.mean(s))


def evaluate(gt, results, sigmas=None, *, strict_pycocotools: bool = True) -> dict[str, float]:
    """COCO keypoint AP/AR: the ten summary figures of pycocotools, by name.

    Args: as `score`.

    Shapes: -> {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}: float.
    """
    return score(gt, results, sigmas, strict_pycocotools=strict_pycocotools).as_dict()


def format_summary(stats: Sequence[float]) -> str:
    """pycocotools' summary table, one line per figure.

    Shapes: stats (10,) in STAT_NAMES order -> 10 lines.
    """
    lines = []
    for value, (_, ap, thr, area) in zip(stats, STATS, strict=True):
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={MAX_DETS:>3d} ] "
            f"= {value:0.3f}"
        )
    return "\n".join(lines)


def _read_sigmas(arg: str) -> str | list[float]:
    """--sigmas: a built-in name, or the K numbers of a file (a JSON list, or separated by
    whitespace or commas). Shapes: -> (K,)."""
    if arg in ("coco", "infant"):
        return arg
    with open(arg) as f:
        text = f.read()
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = text.replace(",", " ").split()
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(
            f"{arg}: not K numbers (a JSON list, or whitespace/comma separated)"
        ) from None


def _one_line(err: Exception) -> str:
    """An input error as one line: the message, or for an OSError the file and the reason."""
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print the summary table of RESULTS.json scored against GT.json.

    Bad input (a missing file, invalid JSON, a malformed entry) exits with status 1 and one line
    on stderr naming the file and the entry, never a traceback.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gt", help="COCO-format ground-truth JSON")
    parser.add_argument("results", help="keypoint results JSON (a list)")
    parser.add_argument(
        "--sigmas",
        default=None,
        help="coco, infant, or a file of K numbers (JSON list or whitespace/comma separated); "
        "default: COCO-17",
    )
    parser.add_argument(
        "--no-strict",
        dest="strict",
        action="store_false",
        help="correct pycocotools' quirks instead of reproducing them",
    )
    args = parser.parse_args(argv)
    try:
        sigmas = None if args.sigmas is None else _read_sigmas(args.sigmas)
        result = score(args.gt, args.results, sigmas, strict_pycocotools=args.strict)
    except (OSError, ValueError) as err:
        parser.exit(1, f"{parser.prog}: error: {_one_line(err)}\n")
    print(format_summary(result.stats))


if __name__ == "__main__":
    main()
