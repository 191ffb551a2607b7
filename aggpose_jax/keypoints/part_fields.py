"""Part fields for bottom-up pose: limb tables, joint-map and PAF targets, flips, and grouping.

A bottom-up network predicts, over the whole image, K joint confidence maps and L part affinity
fields (PAFs, a 2-D unit vector per limb): "Realtime Multi-Person 2D Pose Estimation using Part
Affinity Fields" (Cao et al., CVPR 2017) and "Multi-Level Network for High-Speed Multi-Person Pose
Estimation" (MLN, Huang, Zhuang and Qin; eqs. 1, 2 and 6). This module owns the limb table of
a keypoint format, the targets (`encode`), the flip of predicted maps (`flip_maps`) and the
entry point of the grouping (`group`; peaks and assembly in `grouping`).

Coordinates: keypoints are in input pixels (x, y). A map of stride s has h = H / s rows; its cell
(i, j) is centred on input pixel (s (j + 0.5) - 0.5, s (i + 0.5) - 0.5): the half-pixel-centre
convention of `jax.image.resize` and `cv2.resize`, so maps up-sampled by s on the device hold the
same field at input pixels. Lengths (`sigma`, `limb_width`) are in input pixels too, so one
setting serves stride 4 and stride 8.
"""

import collections
import functools

import numpy as np

from aggpose_jax.keypoints import metainfo
from aggpose_jax.keypoints.grouping import (  # noqa: F401  (part of this module's API)
    check_limbs,
    find_peaks,
    group_peaks,
    input_to_map,
    map_to_input,
)

# OpenPose's settings (Cao et al.; their data layer at stride 8): a Gaussian of 7 input pixels,
# PAF within one stride-8 cell of the limb axis on each side.
SIGMA = 7.0
LIMB_WIDTH = 16.0


# --- limb tables ---------------------------------------------------------------------------------


def _skeleton_graph(fmt: metainfo.KeypointFormat) -> dict[int, list[int]]:
    adjacency = collections.defaultdict(set)
    for a, b in fmt.skeleton:
        if a != b:
            adjacency[int(a)].add(int(b))
            adjacency[int(b)].add(int(a))
    return {k: sorted(adjacency[k]) for k in range(fmt.num_keypoints)}


def _bfs(adjacency: dict[int, list[int]], root: int) -> tuple[dict[int, int], list[int]]:
    """parent of every reached keypoint (root -> -1) and the visiting order."""
    parent, order, queue = {root: -1}, [root], collections.deque([root])
    while queue:
        node = queue.popleft()
        for nb in adjacency[node]:
            if nb not in parent:
                parent[nb] = node
                order.append(nb)
                queue.append(nb)
    return parent, order


def _root(fmt: metainfo.KeypointFormat, adjacency: dict[int, list[int]]) -> int:
    """The tree's root: the self-mirrored keypoint nearest the skeleton's centre (least
    eccentricity, then the lower index), so that the BFS tree is mirror-symmetric; any keypoint
    when none is self-mirrored."""
    k = fmt.num_keypoints
    flip = fmt.flip_indices
    centre = [i for i in range(k) if flip[i] == i] or list(range(k))

    def eccentricity(node: int) -> int:
        parent, order = _bfs(adjacency, node)
        depth = {node: 0}
        for n in order[1:]:
            depth[n] = depth[parent[n]] + 1
        return max(depth.values()) if len(order) == k else k + 1

    return min(centre, key=lambda i: (eccentricity(i), i))


def limbs_for(fmt: metainfo.KeypointFormat) -> np.ndarray:
    """The limb table of a keypoint format: a tree over all keypoints plus redundant connections.

    Shapes: -> (L, 2) int64 (a, b) keypoint indices; the PAF of limb l points from a to b.

    Derived from `fmt.skeleton`, in the order the grouping takes them:
      1. the BFS spanning tree of the skeleton from its most central self-mirrored keypoint (COCO:
         the nose; infant-21: the chest), parent -> child, in BFS order: K - 1 limbs;
      2. the skeleton's other edges (COCO: eye-eye, shoulder-shoulder, hip-hip);
      3. every pair of keypoints two skeleton steps apart (shoulder-wrist around the elbow, the
         two ears around the eyes and nose, ...), each from the earlier keypoint in BFS order: so
         one unlabelled or undetected joint does not split a person, and each joint has several
         witnesses when two people stand in line.
    The set is closed under the mirror (each limb's mirror image is in the table, see
    `limb_flip_index`). COCO-17: 16 + 3 + 26 = 45 limbs; infant-21: 20 + 0 + 24 = 44.
    Raises ValueError when the skeleton does not connect all keypoints.
    """
    return np.array(_limb_table(fmt), dtype=np.int64).reshape(-1, 2)


@functools.lru_cache(maxsize=32)
def _limb_table(fmt: metainfo.KeypointFormat) -> tuple[tuple[int, int], ...]:
    """`limbs_for`'s table as a tuple, derived once per format (callers get their own array)."""
    adjacency = _skeleton_graph(fmt)
    root = _root(fmt, adjacency)
    parent, order = _bfs(adjacency, root)
    missing = sorted(set(range(fmt.num_keypoints)) - set(parent))
    if missing:
        names = [fmt.keypoint_names[i] for i in missing]
        raise ValueError(
            f"keypoint format {fmt.name!r}: its skeleton does not connect keypoints {names} to "
            "the rest; a limb table needs a tree over all keypoints"
        )
    rank = {n: i for i, n in enumerate(order)}
    tree = [(parent[n], n) for n in order[1:]]
    edges = sorted({tuple(sorted(e)) for e in fmt.skeleton if e[0] != e[1]})
    two_steps = sorted(
        {(a, b) for j in order for a in adjacency[j] for b in adjacency[j] if a < b},
        key=lambda e: (min(rank[e[0]], rank[e[1]]), max(rank[e[0]], rank[e[1]])),
    )
    limbs = [(a, b) if rank[a] < rank[b] else (b, a) for a, b in edges + two_steps]
    return tuple(_mirror_closed(tree + limbs, fmt.flip_indices))


def _mirror_closed(limbs: list[tuple[int, int]], flip: np.ndarray) -> list[tuple[int, int]]:
    """The limbs, each edge once, with their mirror images added where missing; a limb whose
    mirror image is already in the list takes that image's orientation, mirrored."""
    out: list[tuple[int, int]] = []
    index: dict[frozenset, int] = {}

    def add(edge: tuple[int, int]) -> None:
        key = frozenset(edge)
        if key in index:
            return
        mirror_key = frozenset((int(flip[edge[0]]), int(flip[edge[1]])))
        if mirror_key in index and mirror_key != key:
            m = out[index[mirror_key]]
            edge = (int(flip[m[0]]), int(flip[m[1]]))
        index[key] = len(out)
        out.append(edge)

    for a, b in limbs:
        add((int(a), int(b)))
        add((int(flip[a]), int(flip[b])))
    return out


def _mirror_lookup(
    fmt: metainfo.KeypointFormat, limbs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    limbs = np.asarray(limbs, dtype=np.int64).reshape(-1, 2)
    check_limbs(limbs, fmt.num_keypoints)
    flip = fmt.flip_indices
    where = {(int(a), int(b)): i for i, (a, b) in enumerate(limbs)}
    index = np.empty(len(limbs), np.int64)
    sign = np.empty(len(limbs), np.float32)
    for i, (a, b) in enumerate(limbs):
        fa, fb = int(flip[a]), int(flip[b])
        if (fa, fb) in where:
            index[i], sign[i] = where[(fa, fb)], 1.0
        elif (fb, fa) in where:
            index[i], sign[i] = where[(fb, fa)], -1.0
        else:
            raise ValueError(
                f"limb {fmt.keypoint_names[a]} -> {fmt.keypoint_names[b]} has no mirror image "
                f"({fmt.keypoint_names[fa]} - {fmt.keypoint_names[fb]}) in the limb table"
            )
    return index, sign


def limb_flip_index(fmt: metainfo.KeypointFormat, limbs: np.ndarray) -> np.ndarray:
    """The limb each limb becomes under a horizontal flip, derived from the keypoint swap partners.

    Shapes: limbs (L, 2) -> (L,) int64: limb l = (a, b) becomes the limb joining
    (flip[a], flip[b]) (`fmt.flip_indices`), in either orientation; see `limb_flip_sign`.
    """
    return _mirror_lookup(fmt, limbs)[0]


def limb_flip_sign(fmt: metainfo.KeypointFormat, limbs: np.ndarray) -> np.ndarray:
    """+1 where a limb's mirror image is in the table in the same orientation, -1 where reversed.

    Shapes: limbs (L, 2) -> (L,) float32. A limb joining a left-right pair (shoulder-shoulder)
    is its own mirror, reversed: flipped, its PAF keeps x and negates y.
    """
    return _mirror_lookup(fmt, limbs)[1]


# --- targets -------------------------------------------------------------------------------------


def encode(
    keypoints: np.ndarray,
    *,
    input_hw: tuple[int, int],
    stride: int,
    limbs: np.ndarray,
    sigma: float = SIGMA,
    limb_width: float = LIMB_WIDTH,
) -> dict[str, np.ndarray]:
    """Joint confidence maps and part affinity fields of the people of one image.

    Shapes: keypoints (P, K, 3) x, y in input pixels and COCO visibility (0 unlabelled, 1
    occluded, 2 visible); limbs (L, 2) -> {"heatmaps": (h, w, K), "pafs": (h, w, L, 2)} float32,
    h, w = input_hw / stride.

    Every joint with v > 0 is encoded, inside the input or not (as eqs. 1 and 2 define the maps
    from the annotated joints): a joint just outside leaves the top of its Gaussian on the border
    (a peak there, within a few pixels of it), a limb leaving the picture keeps its PAF inside.
    heatmaps: the maximum over people of exp(-|p - x_k|^2 / (2 sigma^2)) (MLN eq. 1, whose
    sigma^2 stands for OpenPose's 2 sigma^2). pafs: the unit vector from a to b at the cells
    within limb_width / 2 of the segment a-b (a capsule, so that both joints' cells carry the
    field), for limbs whose two joints are encoded; the mean of those vectors where limbs of
    several people overlap, zero elsewhere (MLN eq. 2). `sigma` and `limb_width` are in input
    pixels. Raises ValueError on a keypoint count that disagrees
    with the limb table, or an input size that is not a multiple of the stride.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (P, K, 3) x, y, visibility; got shape {kp.shape}")
    limbs = np.asarray(limbs, dtype=np.int64)
    check_limbs(limbs, kp.shape[1])
    in_h, in_w = input_hw
    if in_h % stride or in_w % stride:
        raise ValueError(f"input_hw {tuple(input_hw)} is not a multiple of the stride {stride}")
    h, w = in_h // stride, in_w // stride
    xy = input_to_map(kp[..., :2], stride)  # (P, K, 2) map cells
    encoded = kp[..., 2] > 0  # (P, K)

    s = sigma / stride
    gx = np.exp(-((np.arange(w)[None, None] - xy[..., 0:1]) ** 2) / (2 * s * s)).astype(np.float32)
    gy = np.exp(-((np.arange(h)[None, None] - xy[..., 1:2]) ** 2) / (2 * s * s))  # (P, K, h)
    gy = (gy * encoded[..., None]).astype(np.float32)
    heatmaps = np.zeros((h, w, kp.shape[1]), np.float32)
    if len(kp):
        per_person = gy.transpose(0, 2, 1)[:, :, None, :] * gx.transpose(0, 2, 1)[:, None]
        heatmaps[:] = per_person.max(axis=0)  # (P, h, w, K) -> (h, w, K)

    pafs = _limb_fields(xy, encoded, limbs, map_hw=(h, w), radius=0.5 * limb_width / stride)
    return {"heatmaps": heatmaps, "pafs": pafs}


def _limb_fields(xy, encoded, limbs, *, map_hw, radius):
    """The PAF targets: xy (P, K, 2) map cells, encoded (P, K) -> (h, w, L, 2) float32.

    Each (person, limb) segment visits the cells of its bounding box grown by the radius (a
    ragged list built with np.repeat); the cells within the radius of the segment add its unit
    vector and a count to their (cell, limb) bins (np.bincount): no loop over people or pixels.
    """
    h, w = map_hw
    num_limbs = len(limbs)
    a, b = xy[:, limbs[:, 0]], xy[:, limbs[:, 1]]  # (P, L, 2)
    d = b - a
    length = np.linalg.norm(d, axis=-1)
    on = encoded[:, limbs[:, 0]] & encoded[:, limbs[:, 1]] & (length > 1e-6)
    _, limb = np.nonzero(on)
    a, d, length = a[on], d[on], length[on]  # (S, 2), (S, 2), (S,) segments
    lo = np.maximum(np.ceil(np.minimum(a, a + d) - radius), 0).astype(np.int64)
    hi = np.minimum(np.floor(np.maximum(a, a + d) + radius), [w - 1, h - 1]).astype(np.int64)
    size = np.maximum(hi - lo + 1, 0)  # (S, 2) box width, height
    count = size[:, 0] * size[:, 1]
    seg = np.repeat(np.arange(len(count)), count)
    within = np.arange(len(seg)) - np.repeat(np.cumsum(count) - count, count)
    cx = lo[seg, 0] + within % np.maximum(size[seg, 0], 1)
    cy = lo[seg, 1] + within // np.maximum(size[seg, 0], 1)
    rel_x, rel_y = cx - a[seg, 0], cy - a[seg, 1]
    dx, dy, len2 = d[seg, 0], d[seg, 1], length[seg] ** 2
    t = np.clip((rel_x * dx + rel_y * dy) / len2, 0.0, 1.0)
    near = (rel_x - t * dx) ** 2 + (rel_y - t * dy) ** 2 <= radius * radius
    seg = seg[near]
    key = (cy[near] * w + cx[near]) * num_limbs + limb[seg]
    bins = h * w * num_limbs
    hits = np.bincount(key, minlength=bins)
    unit = d / length[:, None]
    pafs = (
        np.stack([np.bincount(key, unit[seg, c], minlength=bins) for c in range(2)], axis=-1)
        / np.maximum(hits, 1)[:, None]
    )
    return pafs.astype(np.float32).reshape(h, w, num_limbs, 2)


# --- flip test -----------------------------------------------------------------------------------


def flip_maps(heatmaps, pafs, *, fmt: metainfo.KeypointFormat, limbs: np.ndarray, xp=np):
    """The maps of the mirrored image, from the maps of the image (the flip test's inverse too).

    Shapes: heatmaps (..., h, w, K), pafs (..., h, w, L, 2) -> the same. Mirrors the width axis,
    moves joint k to flip[k] and limb l to `limb_flip_index` l with its orientation sign, and
    negates the PAF x component. `xp` is numpy or jax.numpy (no in-place updates), so a jitted
    predict can call it. Applying it twice returns the input.
    """
    flip = fmt.flip_indices
    index, sign = _mirror_lookup(fmt, limbs)
    # Output channel j takes input channel inverse[j]: the flip permutations are involutions.
    hm = xp.flip(xp.asarray(heatmaps), axis=-2)[..., flip]
    paf = xp.flip(xp.asarray(pafs), axis=-3)[..., index, :]
    axis_sign = xp.asarray(np.stack([-sign, sign], axis=-1), dtype=paf.dtype)  # (L, 2)
    return hm, paf * axis_sign


# --- grouping ------------------------------------------------------------------------------------


def group(
    heatmaps: np.ndarray,
    pafs: np.ndarray,
    *,
    limbs: np.ndarray,
    stride: int,
    peak_threshold: float = 0.1,
    **grouping,
) -> tuple[np.ndarray, np.ndarray]:
    """The people of one image from its joint maps and PAFs: peaks, limb scores, greedy assembly.

    Shapes: heatmaps (h, w, K), pafs (h', w', L, 2) at strides `stride` and `stride` (the same
    grid) -> people (N, K, 3) x, y in input pixels and the peak score (0 for a joint not found),
    scores (N,), highest first. `find_peaks` (4-neighbourhood NMS above `peak_threshold`,
    sub-pixel refinement) then `group_peaks` (its keyword settings pass through `grouping`).
    """
    heatmaps = np.asarray(heatmaps)
    check_limbs(limbs, heatmaps.shape[-1])
    peaks = find_peaks(heatmaps, peak_threshold, stride=stride)
    return group_peaks(peaks, pafs, limbs=limbs, stride=stride, **grouping)
