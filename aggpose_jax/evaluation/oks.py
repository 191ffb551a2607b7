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
    out = np.empty(pair_dt.shape[0], dtype=np.float64)
    # Chunks bound the (pairs, K) temporaries on crowded sets.
    for s in range(0, pair_dt.shape[0], chunk):
        pd, pg = pair_dt[s : s + chunk], pair_gt[s : s + chunk]
        xd, yd = dt_xy[pd, :, 0], dt_xy[pd, :, 1]
        g = gt_keypoints[pg]
        visible = g[:, :, 2] > 0
        k1 = np.count_nonzero(visible, axis=1)
        bb = gt_bbox[pg]
        x0, x1 = bb[:, :1] - bb[:, 2:3], bb[:, :1] + bb[:, 2:3] * 2
        y0, y1 = bb[:, 1:2] - bb[:, 3:4], bb[:, 1:2] + bb[:, 3:4] * 2
        has_vis = (k1 > 0)[:, None]
        dx = np.where(has_vis, xd - g[:, :, 0], np.maximum(0, x0 - xd) + np.maximum(0, xd - x1))
        dy = np.where(has_vis, yd - g[:, :, 1], np.maximum(0, y0 - yd) + np.maximum(0, yd - y1))
        e = (dx**2 + dy**2) / variances / (gt_area[pg][:, None] + _EPS) / 2
        sim = np.exp(-e)
        res = out[s : s + chunk]
        none = k1 == 0
        res[none] = np.sum(sim[none], axis=1) / num_kpts
        # Sum only the visible terms, packed, one visible-count at a time: the same summation
        # order as pycocotools' np.sum(np.exp(-e[v > 0])).
        for k in np.unique(k1[~none]):
            rows = np.flatnonzero(k1 == k)
            res[rows] = np.sum(sim[rows][visible[rows]].reshape(rows.size, k), axis=1) / k
    return out
