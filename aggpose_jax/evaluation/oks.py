"""Object keypoint similarity (OKS) for every (result, ground truth) pair of the same group.

OKS is the COCO keypoint challenge's similarity (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014; cocodataset.org/#keypoints-eval), computed here as pycocotools'
`COCOeval.computeOks` does, but for all pairs of all images at once:

    OKS = mean over the visible gt keypoints of exp(-d^2 / (2 * area * (2 * sigma)^2))

A ground truth with no visible keypoint (v > 0) is measured differently: each result keypoint's
distance to the gt box grown by its own width and height on every side (a box three times as wide),
averaged over all K keypoints. That lets results land on crowd regions and unlabelled people.
"""

import numpy as np

# pycocotools adds np.spacing(1) to the gt area so that an area of 0 does not divide by zero.
_EPS = np.spacing(1)


def pair_indices(dt_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (result, ground truth) pairs sharing a group key, result-major, then gt order.

    Shapes: dt_key (D,) and gt_key (G,) ascending -> pair_dt (P,), pair_gt (P,) int64 indices.
    """
    lo = np.searchsorted(gt_key, dt_key, side="left")
    count = np.searchsorted(gt_key, dt_key, side="right") - lo
    pair_dt = np.repeat(np.arange(dt_key.size), count)
    first = np.cumsum(count) - count
    pair_gt = np.repeat(lo - first, count) + np.arange(pair_dt.size)
    return pair_dt, pair_gt.astype(np.int64)


def pairwise_oks(
    dt_xy: np.ndarray,
    gt_keypoints: np.ndarray,
    gt_bbox: np.ndarray,
    gt_area: np.ndarray,
    sigmas: np.ndarray,
    pair_dt: np.ndarray,
    pair_gt: np.ndarray,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """OKS of each listed pair, with the arithmetic order of pycocotools so the values agree to
    the last bit in practice.

    Shapes: dt_xy (D, K, 2), gt_keypoints (G, K, 3), gt_bbox (G, 4) x/y/w/h, gt_area (G,),
    sigmas (K,), pair_dt/pair_gt (P,) -> (P,) float64.
    """
    num_kpts = sigmas.shape[0]
    variances = (sigmas * 2) ** 2
    labelled = np.count_nonzero(gt_keypoints[:, :, 2] > 0, axis=1)  # (G,)
    bb = gt_bbox
    # The no-visible-keypoint case measures against the box grown by (w, h) on every side.
    lo = np.stack([bb[:, 0] - bb[:, 2], bb[:, 1] - bb[:, 3]], 1)[:, None]  # (G, 1, 2)
    hi = np.stack([bb[:, 0] + bb[:, 2] * 2, bb[:, 1] + bb[:, 3] * 2], 1)[:, None]
    # Pairs grouped by their gt's labelled count: each group sums the same number of terms.
    order = np.argsort(labelled[pair_gt], kind="stable")
    out = np.empty(pair_dt.shape[0], dtype=np.float64)
    # Chunks bound the (pairs, K) temporaries on crowded sets.
    for s in range(0, order.size, chunk):
        idx = order[s : s + chunk]
        pd, pg = pair_dt[idx], pair_gt[idx]
        k1 = labelled[pg]
        d = dt_xy[pd]  # (c, K, 2)
        g = gt_keypoints[pg]  # (c, K, 3)
        n0 = int(np.searchsorted(k1, 1))
        res = np.empty(idx.size)
        if n0:
            dist = np.maximum(0, lo[pg[:n0]] - d[:n0]) + np.maximum(0, d[:n0] - hi[pg[:n0]])
            res[:n0] = np.sum(_similarity(dist, variances, gt_area[pg[:n0]]), axis=1) / num_kpts
        sim = _similarity(d[n0:] - g[n0:, :, :2], variances, gt_area[pg[n0:]])
        visible = g[n0:, :, 2] > 0
        bounds = np.searchsorted(k1[n0:], np.arange(1, num_kpts + 2))
        # Sum only the visible terms, packed: pycocotools' np.sum(np.exp(-e[v > 0])) order.
        for k in range(1, num_kpts + 1):
            a, b = bounds[k - 1], bounds[k]
            if b > a:
                res[n0 + a : n0 + b] = np.sum(sim[a:b][visible[a:b]].reshape(b - a, k), axis=1) / k
        out[idx] = res
    return out


def _similarity(dxy: np.ndarray, variances: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per-keypoint exp(-e), with pycocotools' order of operations.

    Shapes: dxy (N, K, 2) offsets, variances (K,), area (N,) -> (N, K).
    """
    e = (dxy[:, :, 0] ** 2 + dxy[:, :, 1] ** 2) / variances / (area[:, None] + _EPS) / 2
    return np.exp(-e)
