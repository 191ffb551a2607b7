"""Greedy bottom-up grouping (OpenPose, Cao et al. CVPR 2017; MLN eq. 6): peaks, limbs, people.

Steps: joint candidates are the peaks of each joint map (`find_peaks`: 4-neighbourhood
non-maximum suppression above a threshold, sub-pixel refinement); every candidate limb, a pair of
candidates of a limb's two joint types, is scored by the line integral of its PAF along the
segment (`limb_scores`); joint types are then taken in the limb table's order (the tree from its
root), each candidate joining the person its limbs to that person's earlier joints score highest,
greedily by descending score (`greedy_match`), a left-over candidate starting a person; people
that a passing limb joins and that share no joint type are merged, and people with too few parts
or too low a mean score are dropped (`group_peaks`).

The peaks structure, which a jitted peak finder on the device may produce as well:

    peaks (K, M, 3) float: x, y in input pixels and the peak's score; a slot holds a peak iff its
    score is > 0 (the padding slots have score 0). Slots need not be sorted.

Vectorised throughout: no Python loop over pixels or over candidate pairs; the loops run over
joint types, over rounds of the greedy matching, and over the few merges of two fragments.
"""

import numpy as np


def input_to_map(points: np.ndarray, stride: float) -> np.ndarray:
    """Input pixels -> map cells of a stride-s map (half-pixel centres). Shapes: (..., 2) -> same."""
    return (np.asarray(points, np.float64) + 0.5) / stride - 0.5


def map_to_input(points: np.ndarray, stride: float) -> np.ndarray:
    """Map cells of a stride-s map -> input pixels. Shapes: (..., 2) -> (..., 2)."""
    return (np.asarray(points, np.float64) + 0.5) * stride - 0.5


def _axis_offsets(minus, centre, plus, has_minus, has_plus, other_curvature):
    """Vertex of the parabola through the logs of a peak and its neighbours on one axis.

    Exact for a Gaussian. At the map's border, where one neighbour is missing, the curvature is
    the other axis's (the maps are isotropic Gaussians); in a corner there is no offset.
    Shapes: all (N,) -> offsets (N,) in cells, within [-0.5, 0.5].
    """
    lm, lc, lp = (np.log(np.maximum(v, 1e-10)) for v in (minus, centre, plus))
    both = has_minus & has_plus
    curvature = np.where(both, lm - 2.0 * lc + lp, other_curvature)
    slope = np.where(both, 0.5 * (lp - lm), np.where(has_minus, lc - lm, lp - lc))
    slope = slope + np.where(both, 0.0, np.where(has_minus, 0.5, -0.5) * curvature)
    ok = (curvature < -1e-12) & (has_minus | has_plus)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.where(ok, -slope / curvature, 0.0), -0.5, 0.5)


def find_peaks(
    heatmaps: np.ndarray, threshold: float, *, stride: float = 1, max_peaks: int | None = None
) -> np.ndarray:
    """Joint candidates: local maxima over 4-neighbourhoods above `threshold`, refined.

    Shapes: heatmaps (h, w, K) at stride `stride` -> peaks (K, M, 3) x, y in input pixels and the
    map's value at the peak, sorted by score within a keypoint, padded with zeros (the structure
    of the module docstring); M = the largest count (at least 1), or `max_peaks` (the highest
    kept). A peak is >= its right and lower neighbours and > its left and upper ones (a plateau
    gives one peak). Positions are refined to sub-pixel precision by a parabola through the logs
    of the peak and its two neighbours on each axis (exact for a Gaussian; stride-8 cells alone
    lose about 0.2 AP on medium people). On maps already up-sampled to the input, stride = 1.
    """
    hm = np.asarray(heatmaps, np.float64)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must be (h, w, K), got shape {hm.shape}")
    h, w, k = hm.shape
    pad = np.full((h + 2, w + 2, k), -np.inf)
    pad[1:-1, 1:-1] = hm
    centre = pad[1:-1, 1:-1]
    is_peak = (centre > threshold) & (centre > pad[1:-1, :-2]) & (centre > pad[:-2, 1:-1])
    is_peak &= (centre >= pad[1:-1, 2:]) & (centre >= pad[2:, 1:-1])
    ys, xs, ks = np.nonzero(is_peak)
    score = hm[ys, xs, ks]
    # Neighbours outside the map read the peak itself; `_axis_offsets` knows which are real.
    left, right = hm[ys, np.maximum(xs - 1, 0), ks], hm[ys, np.minimum(xs + 1, w - 1), ks]
    up, down = hm[np.maximum(ys - 1, 0), xs, ks], hm[np.minimum(ys + 1, h - 1), xs, ks]
    has = (xs > 0, xs < w - 1, ys > 0, ys < h - 1)
    log = lambda v: np.log(np.maximum(v, 1e-10))  # noqa: E731
    curv_x = np.where(has[0] & has[1], log(left) - 2 * log(score) + log(right), 0.0)
    curv_y = np.where(has[2] & has[3], log(up) - 2 * log(score) + log(down), 0.0)
    dx = _axis_offsets(left, score, right, has[0], has[1], curv_y)
    dy = _axis_offsets(up, score, down, has[2], has[3], curv_x)
    xy = map_to_input(np.stack([xs + dx, ys + dy], axis=-1), stride)

    counts = np.bincount(ks, minlength=k)
    m = max(1, int(counts.max(initial=0))) if max_peaks is None else int(max_peaks)
    order = np.lexsort((-score, ks))  # by keypoint, then by descending score
    ks, xy, score = ks[order], xy[order], score[order]
    rank = np.arange(len(ks)) - np.searchsorted(ks, ks)  # place within its keypoint
    keep = rank < m
    peaks = np.zeros((k, m, 3), np.float64)
    peaks[ks[keep], rank[keep], :2] = xy[keep]
    peaks[ks[keep], rank[keep], 2] = score[keep]
    return peaks


def _cells(x, y, hwl, limb):
    """Flat indices into pafs (h, w, L) of the nearest cells of points x, y (overwritten)."""
    h, w, num_limbs = hwl
    ix = np.clip(np.rint(x, out=x), 0, w - 1, out=x).astype(np.int32)
    iy = np.clip(np.rint(y, out=y), 0, h - 1, out=y).astype(np.int32)
    iy *= w * num_limbs
    ix *= num_limbs
    iy += ix
    iy += limb
    return iy


def limb_scores(
    peaks: np.ndarray,
    pafs: np.ndarray,
    limbs: np.ndarray,
    *,
    stride: float,
    num_samples: int,
    paf_threshold: float,
    min_above: float,
) -> np.ndarray:
    """PAF line integrals of every candidate limb of every limb type (MLN eq. 6, OpenPose's test).

    Shapes: peaks (K, M, 3) (module docstring); pafs (h, w, L, 2) at `stride`; limbs (L, 2) ->
    scores (L, M, M): [l, i, j] for the segment from candidate i of joint a_l to candidate j of
    joint b_l, -inf for a pair that fails or a padding slot. The PAF is read at the nearest cells
    of `num_samples` evenly spaced points a + t (b - a), t = 0 .. 1, and projected on the
    segment's direction; a pair passes when at least `min_above` of the samples exceed
    `paf_threshold` and the mean, minus a penalty for a limb longer than half the image
    (min(0.5 H / length - 1, 0)), is positive.

    Exact shortcut: a pair may fail at most `num_samples - ceil(min_above num_samples)` samples,
    so one more than that, spread inside the segment, are read first for every pair, and only
    the pairs that pass one of them are read in full (most pairs join two far-apart people).
    """
    h, w, num_limbs, _ = pafs.shape
    hwl = (h, w, num_limbs)
    # (h w L,) complex64 x + i y: one gather reads both components.
    paf = np.ascontiguousarray(pafs, np.float32).reshape(-1).view(np.complex64)
    cells = input_to_map(peaks[..., :2], stride).astype(np.float32)  # (K, M, 2) map cells
    x, y = np.ascontiguousarray(cells[..., 0]), np.ascontiguousarray(cells[..., 1])
    limb = np.arange(num_limbs, dtype=np.int32)[:, None]
    xa, ya, xb, yb = x[limbs[:, 0]], y[limbs[:, 0]], x[limbs[:, 1]], y[limbs[:, 1]]  # (L, M)
    dx = xb[:, None, :] - xa[:, :, None]  # (L, M, M)
    dy = yb[:, None, :] - ya[:, :, None]
    length = np.sqrt(dx * dx + dy * dy)
    t = np.linspace(0.0, 1.0, num_samples, dtype=np.float32)

    candidate = (peaks[limbs[:, 0], :, None, 2] > 0) & (peaks[limbs[:, 1], None, :, 2] > 0)
    candidate &= length > 1e-6
    needed = int(np.ceil(min_above * num_samples - 1e-9))
    # Interior samples: between two far-apart people they read empty cells and fail.
    probes = np.linspace(1, num_samples - 2, num_samples - needed + 1).round().astype(int)
    if num_samples >= 3 and len(probes) < num_samples - 2:
        passed = np.zeros_like(candidate)
        bar = paf_threshold * length  # v . (b - a) > threshold |b - a|: no division per pair
        for tp in t[probes]:
            px = xa[:, :, None] + tp * dx
            py = ya[:, :, None] + tp * dy
            v = paf[_cells(px, py, hwl, limb[..., None])]
            passed |= v.real * dx + v.imag * dy > bar
        candidate &= passed
    li, ii, jj = np.nonzero(candidate)
    pair = (li, ii, jj)
    px = xa[li, ii][:, None] + t * dx[pair][:, None]  # (n, S)
    py = ya[li, ii][:, None] + t * dy[pair][:, None]
    v = paf[_cells(px, py, hwl, li[:, None].astype(np.int32))]
    ux, uy = dx[pair] / length[pair], dy[pair] / length[pair]
    dots = v.real * ux[:, None] + v.imag * uy[:, None]
    score = dots.mean(axis=-1, dtype=np.float64) + np.minimum(0.5 * h / length[pair] - 1.0, 0.0)
    ok = ((dots > paf_threshold).sum(axis=-1) >= needed) & (score > 0)
    scores = np.full(length.shape, -np.inf)
    scores[li[ok], ii[ok], jj[ok]] = score[ok]
    return scores


def greedy_match(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs taken by descending score, each row and column at most once; -inf pairs never.

    Shapes: scores (A, B) -> rows (n,), cols (n,). Equal to the one-pair-at-a-time greedy loop
    (for distinct scores), computed in rounds: every pair that is the best of both its row and its
    column is one the loop would take, so each round takes all of them at once.
    """
    s = np.array(scores, np.float64, copy=True)
    rows_out, cols_out = [], []
    if s.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arange = np.arange(s.shape[0])
    while s.max() > -np.inf:  # the best finite pair is mutual: every round takes one at least
        best_col = np.argmax(s, axis=1)
        best_row = np.argmax(s, axis=0)
        mutual = (best_row[best_col] == arange) & (s[arange, best_col] > -np.inf)
        r, c = arange[mutual], best_col[mutual]
        rows_out.append(r)
        cols_out.append(c)
        s[r, :] = -np.inf
        s[:, c] = -np.inf
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows_out), np.concatenate(cols_out)


def check_limbs(limbs: np.ndarray, num_keypoints: int) -> None:
    """Raises ValueError unless limbs (L, 2) is a limb table over exactly `num_keypoints` keypoints
    (every index in [0, K), every keypoint in some limb: the tree covers all keypoints)."""
    limbs = np.asarray(limbs)
    if limbs.ndim != 2 or limbs.shape[1] != 2 or len(limbs) == 0:
        raise ValueError(f"limbs must be a non-empty (L, 2) array, got shape {limbs.shape}")
    used = np.unique(limbs)
    if used.min() < 0 or used.max() >= num_keypoints or len(used) != num_keypoints:
        raise ValueError(
            f"the limb table joins keypoints {used.min()}..{used.max()} ({len(used)} of them) but "
            f"the maps or keypoints have K = {num_keypoints}: use the limb table of the same "
            "keypoint format"
        )


def joint_order(limbs: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The order in which the assembly takes joint types, and the limbs that join each to earlier ones.

    Shapes: limbs (L, 2) -> order (K,) (first appearance in the table: the tree's BFS order),
    reversed (L,) bool (the limb points from the later joint type to the earlier one), and for
    each joint type its incoming limbs (n_k,) int (the limbs joining it to earlier types).
    """
    limbs = np.asarray(limbs)
    order = np.asarray(list(dict.fromkeys(int(i) for i in limbs.reshape(-1))))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    reversed_ = rank[limbs[:, 0]] > rank[limbs[:, 1]]
    later = np.where(reversed_, limbs[:, 0], limbs[:, 1])
    incoming = [np.nonzero(later == k)[0] for k in range(len(order))]
    return order, reversed_, incoming


def group_peaks(
    peaks: np.ndarray,
    pafs: np.ndarray,
    *,
    limbs: np.ndarray,
    stride: float,
    paf_threshold: float = 0.05,
    min_above: float = 0.8,
    num_samples: int = 10,
    min_parts: int = 3,
    min_score: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Assemble joint candidates into people with the PAFs (the host half of the grouping).

    Shapes: peaks (K, M, 3) as in the module docstring (input pixels); pafs (h, w, L, 2) at
    `stride` (1 for PAFs up-sampled to the input); limbs (L, 2) -> people (N, K, 3) x, y in input
    pixels and the peak score (zeros for a joint not found), scores (N,) = the sum of a person's
    peak scores / K, both sorted by descending score.

    Every candidate limb is scored (`limb_scores`). Joint types are then taken in the limb table's
    order (`joint_order`: the tree from its root outwards). For type b, the affinity of person p
    and candidate j is the sum of the scores of the limbs that join j to p's joints of earlier
    types (the tree limb, its skip limb, a left-right limb: several witnesses, so that two people
    in line along one limb are told apart by the others); pairs are taken greedily by descending
    affinity (`greedy_match`), and a candidate left over starts a person. People that a passing
    limb joins and that share no joint type are then merged (`_merge_fragments`: a person split
    by a missing joint is rejoined by a limb around it). A person is kept when
    it has at least `min_parts` joints and its (peak + affinity) score per joint is at least
    `min_score` (OpenPose's pruning). The defaults are OpenPose's original demo's (10 samples,
    80 % above 0.05; 3 parts; 0.2).
    """
    peaks = np.asarray(peaks, np.float64)
    pafs = np.asarray(pafs, np.float32)
    limbs = np.asarray(limbs, np.int64)
    if peaks.ndim != 3 or peaks.shape[-1] != 3:
        raise ValueError(f"peaks must be (K, M, 3) x, y, score; got shape {peaks.shape}")
    k, m, _ = peaks.shape
    check_limbs(limbs, k)
    if pafs.ndim != 4 or pafs.shape[2:] != (len(limbs), 2):
        raise ValueError(
            f"pafs must be (h, w, L, 2) with L = {len(limbs)} limbs; got shape {pafs.shape}"
        )
    scores = limb_scores(
        peaks, pafs, limbs, stride=stride, num_samples=num_samples,
        paf_threshold=paf_threshold, min_above=min_above,
    )  # fmt: skip
    valid = peaks[..., 2] > 0  # (K, M)
    order, reversed_, incoming = joint_order(limbs)
    # Rows: candidates of the limb's earlier joint type, plus a last row that slot -1 (no joint
    # of that type) reads; columns: candidates of the later type. Scores of failing pairs are 0
    # and `passing` False.
    oriented = np.where(reversed_[:, None, None], scores.transpose(0, 2, 1), scores)
    oriented = np.concatenate([oriented, np.full((len(limbs), 1, m), -np.inf)], axis=1)
    passing = oriented > -np.inf
    oriented[~passing] = 0.0
    earlier = np.where(reversed_, limbs[:, 1], limbs[:, 0])
    cap = int(valid.sum()) + 1  # every candidate may start a person
    slots = np.full((cap, k), -1, np.int64)  # candidate index per person and joint type
    total = np.zeros(cap)
    n = 0
    for b in order:
        into = incoming[b]
        witness = (into[None, :], slots[:n, earlier[into]])  # -> (n, n_in, M)
        affinity = oriented[witness].sum(axis=1)
        support = passing[witness].any(axis=1) & valid[b]
        people, cand = greedy_match(np.where(support, affinity, -np.inf))
        slots[people, b] = cand
        total[people] += affinity[people, cand] + peaks[b, cand, 2]
        free = valid[b].copy()
        free[cand] = False
        fresh = np.nonzero(free)[0]
        slots[n : n + len(fresh), b] = fresh
        total[n : n + len(fresh)] = peaks[b, fresh, 2]
        n += len(fresh)

    slots, total = _merge_fragments(slots[:n], total[:n], scores, limbs)
    count = (slots >= 0).sum(axis=1)
    keep = (count >= min_parts) & (total >= min_score * np.maximum(count, 1))
    slots = slots[keep]
    people = np.where(
        (slots >= 0)[..., None], peaks[np.arange(k)[None, :], np.maximum(slots, 0)], 0.0
    )
    person_scores = people[..., 2].sum(axis=1) / k
    rank = np.argsort(-person_scores, kind="stable")
    return people[rank], person_scores[rank]


def _merge_fragments(slots, total, scores, limbs):
    """Join people that a passing limb connects and that share no joint type (OpenPose's merge).

    Shapes: slots (N, K) candidate per joint type (-1 none), total (N,), scores (L, M, M),
    limbs (L, 2) -> slots, total (merged people emptied). A person split by a missing joint is
    rejoined by a limb around it; the pairs are taken by descending score. The loop runs over
    the few passing limbs that join two different people, not over candidate pairs.
    """
    n, k = slots.shape
    m = scores.shape[1]
    owner = np.full((k, m + 1), -1, np.int64)  # column m: slot -1
    people, types = np.nonzero(slots >= 0)
    owner[types, slots[people, types]] = people
    oa = owner[limbs[:, 0], :m][:, :, None]
    ob = owner[limbs[:, 1], :m][:, None, :]
    li, ii, jj = np.nonzero((scores > -np.inf) & (oa >= 0) & (ob >= 0) & (oa != ob))
    pa, pb = oa[li, ii, 0], ob[li, 0, jj]
    # People only grow by merging, so two who share a joint type now never can merge.
    disjoint = ~np.any((slots[pa] >= 0) & (slots[pb] >= 0), axis=1)
    li, ii, jj, pa, pb = li[disjoint], ii[disjoint], jj[disjoint], pa[disjoint], pb[disjoint]
    if not len(li):
        return slots, total
    s = scores[li, ii, jj]
    root = np.arange(n)
    for i in np.argsort(-s, kind="stable"):
        x, y = pa[i], pb[i]
        while root[x] != x:
            x = root[x]
        while root[y] != y:
            y = root[y]
        if x == y or np.any((slots[x] >= 0) & (slots[y] >= 0)):
            continue
        slots[x] = np.maximum(slots[x], slots[y])
        slots[y] = -1
        total[x] += total[y] + s[i]
        total[y] = 0.0
        root[y] = x
    return slots, total
