"""Greedy OKS matching and precision/recall accumulation, vectorised across images.

The COCO detection protocol (Lin et al., ECCV 2014) as pycocotools' `COCOeval.evaluateImg` and
`COCOeval.accumulate` implement it. Per (image, category, area range, OKS threshold), results are
taken in score order; each takes the best still-free ground truth whose OKS reaches the threshold,
preferring any non-ignored gt over an ignored one; crowd gts may take any number of results.

pycocotools runs that loop per image in Python. Here the loop runs over the result rank only (at most
max_dets steps), with every image, area range and threshold handled at once; images are bucketed
by their gt count (next power of two) so that one crowded image does not pad all others.
"""

import numpy as np

# pycocotools caps the threshold just below 1 so that a perfect OKS of 1.0 still matches at "1.0".
_MAX_THRESHOLD = 1 - 1e-10


def match_greedy(
    oks: np.ndarray,
    pair_dt: np.ndarray,
    pair_gt: np.ndarray,
    dt_key: np.ndarray,
    dt_rank: np.ndarray,
    gt_key: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """The gt each result matches, per area range and threshold.

    Shapes: oks/pair_dt/pair_gt (P,) from `oks.pair_indices` order; dt_key/dt_rank (D,) sorted by
    (key, rank); gt_key (G,) ascending; gt_ignore (A, G) bool, ignore flag per area range;
    gt_crowd (G,) bool; thresholds (T,) -> (A, T, D) int64 gt index, -1 where unmatched.
    """
    num_a, num_t, num_d = gt_ignore.shape[0], thresholds.shape[0], dt_key.shape[0]
    # Built as (D, A, T) so that each result's 30 outcomes are written in one contiguous row.
    matches = np.full((num_d, num_a, num_t), -1, dtype=np.int64)
    if oks.size == 0:
        return np.moveaxis(matches, 0, -1)
    thr = np.minimum(thresholds, _MAX_THRESHOLD)[None, :, None, None]
    # Groups holding both results and gts, and where each starts.
    first_dt = np.flatnonzero((dt_rank == 0) & np.isin(dt_key, gt_key))
    gkey = dt_key[first_dt]
    gt_start = np.searchsorted(gt_key, gkey, side="left")
    num_gt = np.searchsorted(gt_key, gkey, side="right") - gt_start
    num_dt = np.searchsorted(dt_key, gkey, side="right") - first_dt
    group_of_dt = np.full(num_d, -1, dtype=np.int64)
    group_of_dt[np.repeat(first_dt, num_dt) + _ranges(num_dt)] = np.repeat(
        np.arange(gkey.size), num_dt
    )
    pair_group = group_of_dt[pair_dt]
    pair_col = pair_gt - gt_start[pair_group]
    bucket = np.ceil(np.log2(num_gt)).astype(np.int64)
    for b in np.unique(bucket):
        # Most results per group first, so that rank r only touches a prefix of the rows.
        groups = np.flatnonzero(bucket == b)
        groups = groups[np.argsort(-num_dt[groups], kind="stable")]
        width, depth = 1 << int(b), int(num_dt[groups[0]])
        row_of_group = np.full(gkey.size, -1, dtype=np.int64)
        row_of_group[groups] = np.arange(groups.size)
        sel = np.flatnonzero(row_of_group[pair_group] >= 0)
        dense = np.full((depth, groups.size, width), -np.inf)
        dense[dt_rank[pair_dt[sel]], row_of_group[pair_group[sel]], pair_col[sel]] = oks[sel]
        cols = np.arange(width)
        valid = cols < num_gt[groups, None]
        gidx = np.where(valid, gt_start[groups, None] + cols, 0)
        ignored = np.ascontiguousarray(gt_ignore[:, gidx][:, None] & valid)  # (A, 1, n, W)
        free_forever = gt_crowd[gidx] & valid
        taken = np.zeros((num_a, num_t, groups.size, width), dtype=bool)
        rows_at = np.searchsorted(-num_dt[groups], -np.arange(depth), side="left")
        for r in range(depth):
            n = rows_at[r]  # groups with a result of rank r
            v = dense[r, :n]
            cand = (v >= thr) & valid[:n] & (~taken[:, :, :n] | free_forever[:n])
            regular = cand & ~ignored[:, :, :n]
            # A result matched to a regular gt never moves on to the ignored ones (sorted last).
            pool = np.where(regular.any(-1, keepdims=True), regular, cand)
            score = np.where(pool, v, -np.inf)
            best = pool & (score == score.max(-1, keepdims=True))
            found = best.any(-1)
            # Ties go to the last gt in order: pycocotools replaces its pick on ">=".
            col = width - 1 - np.argmax(best[..., ::-1], axis=-1)
            taken[:, :, :n] |= (cols == col[..., None]) & found[..., None]
            picked = np.where(found, gidx[np.arange(n), col], -1)
            matches[first_dt[groups[:n]] + r] = np.moveaxis(picked, -1, 0)
    return np.moveaxis(matches, 0, -1)


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: counts (N,) -> (sum(counts),) with 0..c-1 for each c."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def accumulate(
    matches: np.ndarray,
    dt_category: np.ndarray,
    dt_order: np.ndarray,
    dt_area: np.ndarray,
    gt_category: np.ndarray,
    gt_ignore: np.ndarray,
    gt_counts_as_match: np.ndarray,
    area_ranges: np.ndarray,
    rec_thresholds: np.ndarray,
    num_categories: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at each recall threshold, and the final recall.

    Shapes: matches (A, T, D) from `match_greedy`; dt_category (D,) category index; dt_order (D,)
    the pycocotools accumulation order (category, score descending, image, rank); dt_area (D,);
    gt_category (G,); gt_ignore (A, G); gt_counts_as_match (G,) bool, False for the gts whose
    match pycocotools cannot see (id 0); area_ranges (A, 2); rec_thresholds (R,)
    -> precision (T, R, C, A), recall (T, C, A); -1 where a category has no regular gt.
    """
    num_a, num_t, _ = matches.shape
    num_r = rec_thresholds.shape[0]
    precision = -np.ones((num_t, num_r, num_categories, num_a))
    recall = -np.ones((num_t, num_categories, num_a))
    if gt_category.size == 0:
        return precision, recall
    # Work in accumulation order; np.take keeps the (A, T, D) layout contiguous, which matters
    # for the cumsums (fancy indexing on the last axis would not).
    matches = np.take(matches, dt_order, axis=2)
    dt_area, dt_category = dt_area[dt_order], dt_category[dt_order]
    is_match = matches >= 0
    m = np.maximum(matches, 0)
    visible_match = is_match & gt_counts_as_match[m]
    outside = (dt_area < area_ranges[:, :1]) | (dt_area > area_ranges[:, 1:])  # (A, D)
    # Results on ignored gts, and unmatched results outside the range, count neither way.
    ignored = (
        is_match & np.take_along_axis(gt_ignore, m.reshape(num_a, -1), 1).reshape(m.shape)
    ) | (~visible_match & outside[:, None, :])
    tps = visible_match & ~ignored
    fps = ~visible_match & ~ignored
    regular_gts = np.stack(
        [np.bincount(gt_category[~ig], minlength=num_categories) for ig in gt_ignore], axis=1
    )  # (C, A)
    bounds = np.searchsorted(dt_category, np.arange(num_categories + 1))
    for c in range(num_categories):
        seg = slice(bounds[c], bounds[c + 1])
        # Float cumsums of 0/1 are exact: the same values as pycocotools' int cumsum cast.
        tp_sum = np.cumsum(tps[:, :, seg], axis=-1, dtype=np.float64)
        fp_sum = np.cumsum(fps[:, :, seg], axis=-1, dtype=np.float64)
        nd = bounds[c + 1] - bounds[c]
        for a in range(num_a):
            npig = regular_gts[c, a]
            if npig == 0:
                continue
            rc = tp_sum[a] / npig
            pr = tp_sum[a] / (fp_sum[a] + tp_sum[a] + np.spacing(1))
            recall[:, c, a] = rc[:, -1] if nd else 0
            # Precision envelope: the best precision at any higher recall.
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(num_t):
                inds = np.searchsorted(rc[t], rec_thresholds, side="left")
                q = np.zeros(num_r)
                ok = inds < nd
                q[ok] = pr[t, inds[ok]]
                precision[t, :, c, a] = q
    return precision, recall
