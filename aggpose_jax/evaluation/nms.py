"""Person rescoring and OKS-based non-maximum suppression, as pure numpy functions.

The official release (and Simple Baselines / HRNet before it) rescores each top-down person by its
confident joints, then runs OKS-NMS per image before COCOeval. N = persons in one image, K = joints.
"""

import numpy as np

IN_VIS_THRE = 0.2
OKS_THRE = 0.9
SOFT_NMS_MAX_DETS = 20


def rescore_persons(maxvals: np.ndarray, box_scores: np.ndarray, vis_thr: float = IN_VIS_THRE):
    """Person score = (mean of the joint confidences above `vis_thr`, 0 if none) * box score.

    Shapes: maxvals (N, K), box_scores (N,) -> (N,) float64. Box scores are 1 for ground-truth boxes
    and the detector score otherwise.
    """
    maxvals = np.asarray(maxvals, dtype=np.float64)
    confident = maxvals > vis_thr
    count = confident.sum(axis=-1)
    total = np.where(confident, maxvals, 0.0).sum(axis=-1)
    kpt_score = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return kpt_score * np.asarray(box_scores, dtype=np.float64)


def oks_matrix(
    keypoints: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    scores: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Pairwise object keypoint similarity between persons, as the NMS of the official release uses.

    Shapes: keypoints (N, K, 2), areas (N,), sigmas (K,), scores (N, K) joint confidences -> (N, N).
    e = d^2 / (2 sigma)^2 / ((area_a + area_b) / 2 + eps) / 2 per joint, OKS = mean of exp(-e). With
    `vis_thr`, only joints confident (> vis_thr) in both persons count, and a pair with none has OKS 0
    (the official NMS passes no threshold: all joints count).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((kp[:, None] - kp[None, :]) ** 2).sum(axis=-1)  # (N, N, K)
    mean_area = (areas[:, None] + areas[None, :]) / 2.0 + np.spacing(1)
    sim = np.exp(-(d2 / var / mean_area[..., None] / 2.0))
    if vis_thr is None:
        return sim.mean(axis=-1)
    conf = np.asarray(scores) > vis_thr
    both = conf[:, None, :] & conf[None, :, :]
    count = both.sum(axis=-1)
    return np.where(count > 0, (sim * both).sum(axis=-1) / np.maximum(count, 1), 0.0)


def _descending(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep the later person first (a reversed stable sort)."""
    return np.argsort(scores, kind="stable")[::-1]


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    thr: float = OKS_THRE,
    joint_scores: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Greedy OKS-NMS: keep the best person, drop those with OKS > thr to it, repeat.

    Shapes: keypoints (N, K, 2), scores (N,), areas (N,), sigmas (K,), joint_scores (N, K) -> kept
    indices (M,) int64 in the order picked (descending score). Official: thr 0.9, all joints.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    oks = oks_matrix(keypoints, areas, sigmas, joint_scores, vis_thr)
    order = _descending(scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][oks[i, order[1:]] <= thr]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    thr: float = OKS_THRE,
    max_dets: int = SOFT_NMS_MAX_DETS,
    joint_scores: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS: Gaussian rescoring instead of dropping, at most `max_dets` persons kept.

    Shapes: as `oks_nms` -> kept indices (M,) int64 in the order picked, and their scores at the
    moment they were picked (M,). After each pick the remaining scores become
    score * exp(-oks^2 / thr) and are re-sorted ("Soft-NMS", Bodla et al., ICCV 2017, with OKS in
    place of IoU). The official release keeps the original person scores in its results; only the
    selection uses the decayed ones.
    """
    scores = np.asarray(scores, dtype=np.float64)
    oks = oks_matrix(keypoints, areas, sigmas, joint_scores, vis_thr)
    order = _descending(scores)
    current = scores[order]
    keep, picked = [], []
    while order.size and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        picked.append(current[0])
        order, current = order[1:], current[1:] * np.exp(-(oks[i, order[1:]] ** 2) / thr)
        resort = _descending(current)
        order, current = order[resort], current[resort]
    return np.asarray(keep, dtype=np.int64), np.asarray(picked, dtype=np.float64)


def nms_per_image(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    sigmas: np.ndarray,
    method: str | None = "oks",
    thr: float = OKS_THRE,
) -> np.ndarray:
    """Run OKS-NMS ("oks"), soft OKS-NMS ("soft") or nothing (None) separately within each image.

    Shapes: image_ids (N,), keypoints (N, K, 2), scores (N,), areas (N,), sigmas (K,) -> indices of
    the kept persons (M,) int64 into the N inputs, images in first-seen order.
    """
    if method not in ("oks", "soft", None):
        raise ValueError(f"unknown nms method {method!r}; expected 'oks', 'soft' or None")
    image_ids = np.asarray(image_ids)
    if method is None:
        return np.arange(len(image_ids), dtype=np.int64)
    kept = []
    _, first = np.unique(image_ids, return_index=True)
    for image_id in image_ids[np.sort(first)]:
        rows = np.flatnonzero(image_ids == image_id)
        args = (keypoints[rows], scores[rows], areas[rows], sigmas, thr)
        keep = oks_nms(*args) if method == "oks" else soft_oks_nms(*args)[0]
        kept.append(rows[keep])
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
