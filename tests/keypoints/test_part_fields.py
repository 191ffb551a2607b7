"""Part fields: limb tables, targets, peaks, greedy grouping, flips; encode -> group round trips."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from aggpose_jax.keypoints import grouping, metainfo, part_fields

INPUT_HW = (368, 432)
STRIDE = 8
COCO_LIMBS = part_fields.limbs_for(metainfo.COCO)

# A standing person one unit tall facing the camera (its left on the image's right), COCO order.
_TEMPLATE = np.array([
    [0, -0.40], [0.025, -0.42], [-0.025, -0.42], [0.06, -0.41], [-0.06, -0.41], [0.11, -0.30],
    [-0.11, -0.30], [0.15, -0.13], [-0.15, -0.13], [0.17, 0.02], [-0.17, 0.02], [0.07, 0.03],
    [-0.07, 0.03], [0.08, 0.27], [-0.08, 0.27], [0.08, 0.50], [-0.08, 0.50],
])  # fmt: skip
_CHAINS = ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16))  # shoulder/hip, elbow/knee, end


def _rotate(points, centre, degrees):
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ rot.T + centre


def random_person(rng, *, input_hw=INPUT_HW, height=(70, 240), unlabelled=0.1, inside=True):
    """(17, 3) one articulated person (x, y, v) and its height: bent arms and legs, a lean, half
    of them seen from the back, v = 0 for a random tenth of the joints and those outside."""
    h = rng.uniform(*height)
    p = _TEMPLATE * h
    for root, mid, end in _CHAINS:
        p[[mid, end]] = _rotate(p[[mid, end]], p[root], rng.normal(0, 35))
        p[end] = _rotate(p[end], p[mid], rng.normal(0, 40))
    p = _rotate(p + rng.normal(0, 0.01 * h, p.shape), 0.0, rng.normal(0, 15))
    if rng.random() < 0.5:  # seen from the back: mirrored, left and right swap places
        p = p * [-1, 1]
        p = p[metainfo.COCO.flip_indices]
    in_h, in_w = input_hw
    if inside:
        lo, hi = -p.min(0), np.array([in_w - 1, in_h - 1]) - p.max(0)
        p = p + rng.uniform(lo, np.maximum(hi, lo + 1))
    else:
        p = p + rng.uniform([0, 0], [in_w, in_h])
    v = rng.choice([0, 1, 2], size=17, p=[unlabelled, 0.2, 0.8 - unlabelled])
    out = (p[:, 0] < 0) | (p[:, 0] > in_w - 1) | (p[:, 1] < 0) | (p[:, 1] > in_h - 1)
    return np.concatenate([p, np.where(out, 0, v)[:, None]], axis=1), h


def random_crowd(rng, num_people, **person):
    """(P, 17, 3) people with at least 5 labelled joints each, and their heights (P,)."""
    people, heights = [], []
    while len(people) < num_people:
        kp, h = random_person(rng, **person)
        if (kp[:, 2] > 0).sum() >= 5:
            people.append(kp)
            heights.append(h)
    return np.stack(people), np.array(heights)


def _coco_ap(scenes) -> float:
    """pycocotools keypoint AP of [(gt keypoints (P, 17, 3), heights (P,), people, scores)]."""
    images, anns, dets = [], [], []
    for image_id, (gt, heights, people, scores) in enumerate(scenes):
        images.append({"id": image_id, "height": INPUT_HW[0], "width": INPUT_HW[1]})
        for kp, h in zip(gt, heights, strict=True):
            vis = kp[:, 2] > 0
            (x0, y0), (x1, y1) = kp[vis, :2].min(0), kp[vis, :2].max(0)
            anns.append({
                "id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "area": float(0.3 * h * h), "bbox": [float(x0), float(y0), x1 - x0, y1 - y0],
                "num_keypoints": int(vis.sum()), "keypoints": kp.reshape(-1).tolist(),
            })  # fmt: skip
        for person, score in zip(people, scores, strict=True):
            kp = np.concatenate([person[:, :2], (person[:, 2:] > 0) * 1.0], axis=1)
            dets.append({
                "image_id": image_id, "category_id": 1, "score": float(score),
                "keypoints": kp.reshape(-1).tolist(),
            })  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "p"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def _round_trip(kp):
    maps = part_fields.encode(kp, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    return part_fields.group(maps["heatmaps"], maps["pafs"], limbs=COCO_LIMBS, stride=STRIDE)


# --- limb tables ---------------------------------------------------------------------------------


def _is_spanning_tree(edges, k) -> bool:
    parent = list(range(k))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra == rb:
            return False
        parent[ra] = rb
    return len(edges) == k - 1 and len({find(i) for i in range(k)}) == 1


@pytest.mark.parametrize("fmt", [metainfo.COCO, metainfo.INFANT], ids=lambda f: f.name)
def test_limb_table_is_a_tree_plus_redundant_limbs_closed_under_the_mirror(fmt):
    limbs = part_fields.limbs_for(fmt)
    k = fmt.num_keypoints
    assert _is_spanning_tree(limbs[: k - 1], k)  # the first K - 1 limbs: a tree over all keypoints
    pairs = {frozenset(e) for e in limbs.tolist()}
    assert len(pairs) == len(limbs)  # each connection once
    assert {frozenset(e) for e in fmt.skeleton} <= pairs
    index, sign = part_fields.limb_flip_index(fmt, limbs), part_fields.limb_flip_sign(fmt, limbs)
    np.testing.assert_array_equal(index[index], np.arange(len(limbs)))  # an involution
    flip = fmt.flip_indices
    mirrored = np.where(sign[:, None] > 0, flip[limbs], flip[limbs][:, ::-1])
    np.testing.assert_array_equal(limbs[index], mirrored)


def test_infant_limbs_cover_all_21_keypoints_from_the_chest():
    limbs = part_fields.limbs_for(metainfo.INFANT)
    assert _is_spanning_tree(limbs[:20], 21)
    assert metainfo.INFANT.keypoint_names[limbs[0, 0]] == "M2"  # the chest is the root
    part_fields.check_limbs(limbs, 21)


def test_a_skeleton_that_leaves_keypoints_out_is_a_clear_error():
    fmt = metainfo.format_from_coco_category(
        {"name": "two", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]}, sigmas=(0.1,) * 3
    )
    with pytest.raises(ValueError, match=r"does not connect keypoints \['c'\]"):
        part_fields.limbs_for(fmt)


def test_a_keypoint_count_that_disagrees_with_the_limb_table_is_a_clear_error():
    kp = np.zeros((2, 21, 3))
    with pytest.raises(ValueError, match="K = 21"):
        part_fields.encode(kp, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    heatmaps = np.zeros((46, 54, 21), np.float32)
    pafs = np.zeros((46, 54, len(COCO_LIMBS), 2), np.float32)
    with pytest.raises(ValueError, match="K = 21"):
        part_fields.group(heatmaps, pafs, limbs=COCO_LIMBS, stride=STRIDE)
    with pytest.raises(ValueError, match="L = 45 limbs"):
        part_fields.group(heatmaps[..., :17], pafs[:, :, :44], limbs=COCO_LIMBS, stride=STRIDE)
    with pytest.raises(ValueError, match="multiple of the stride"):
        part_fields.encode(kp[:, :17], input_hw=(370, 432), stride=STRIDE, limbs=COCO_LIMBS)


# --- targets -------------------------------------------------------------------------------------


def _reference_pafs(kp, limbs, *, input_hw, stride, limb_width):
    """encode's PAFs cell by cell, person by person: the definition, written as loops."""
    h, w = input_hw[0] // stride, input_hw[1] // stride
    total, hits = np.zeros((h, w, len(limbs), 2)), np.zeros((h, w, len(limbs)))
    xy = (kp[..., :2] + 0.5) / stride - 0.5
    for p in range(len(kp)):
        for limb, (a, b) in enumerate(limbs):
            if kp[p, a, 2] <= 0 or kp[p, b, 2] <= 0:
                continue
            d = xy[p, b] - xy[p, a]
            for i in range(h):
                for j in range(w):
                    rel = np.array([j, i]) - xy[p, a]
                    t = np.clip(rel @ d / (d @ d), 0, 1)
                    if np.sum((rel - t * d) ** 2) <= (0.5 * limb_width / stride) ** 2:
                        total[i, j, limb] += d / np.linalg.norm(d)
                        hits[i, j, limb] += 1
    return total / np.maximum(hits, 1)[..., None]


def test_encode_matches_the_definition_and_averages_overlapping_limbs():
    rng = np.random.default_rng(0)
    input_hw, stride = (96, 128), 4
    kp, _ = random_crowd(rng, 3, input_hw=input_hw, height=(40, 80), unlabelled=0.2)
    kp[1, :, :2] = kp[0, :, :2] + [3.0, 1.0]  # person 1 lies across person 0: overlaps
    kp[1, :, 2] = kp[0, :, 2]
    limbs = COCO_LIMBS[:20]
    limbs = np.concatenate([limbs, [[9, 16]]])  # keep every keypoint in the table
    maps = part_fields.encode(kp, input_hw=input_hw, stride=stride, limbs=limbs, limb_width=12.0)
    expected = _reference_pafs(kp, limbs, input_hw=input_hw, stride=stride, limb_width=12.0)
    np.testing.assert_allclose(maps["pafs"], expected, atol=1e-6)
    assert maps["pafs"].shape == (24, 32, len(limbs), 2) and maps["pafs"].dtype == np.float32
    assert np.any(np.linalg.norm(maps["pafs"], axis=-1) < 0.999) and maps["pafs"].any()
    # heatmaps: the maximum of the people's Gaussians; an unlabelled joint gives nothing.
    hm = maps["heatmaps"]
    assert hm.shape == (24, 32, 17) and hm.max() <= 1.0
    for k in range(17):
        if not (kp[:, k, 2] > 0).any():
            assert not hm[..., k].any()


def test_joints_outside_the_input_shape_the_maps_inside_it():
    kp = np.tile(_TEMPLATE * 160 + [200.0, 150.0], (1, 1, 1))
    kp = np.concatenate([kp, np.full((1, 17, 1), 2.0)], axis=-1)
    kp[0, 9, :2] = [-40.0, 160.0]  # the left wrist far outside: no peak, its forearm's PAF inside
    kp[0, 10, :2] = [433.0, 160.0]  # the right wrist just outside: a peak on the border
    maps = part_fields.encode(kp, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    assert maps["heatmaps"][..., 9].max() < 0.01
    forearm = np.nonzero((COCO_LIMBS == [7, 9]).all(axis=1))[0][0]
    assert np.linalg.norm(maps["pafs"][:, :, forearm], axis=-1).max() > 0.99
    people, _ = part_fields.group(maps["heatmaps"], maps["pafs"], limbs=COCO_LIMBS, stride=STRIDE)
    assert len(people) == 1 and people[0, 9, 2] == 0
    assert people[0, 10, 2] > 0.5 and abs(people[0, 10, 0] - 433.0) < 3.0
    np.testing.assert_allclose(people[0, :9, :2], kp[0, :9, :2], atol=1e-3)


# --- peaks and matching --------------------------------------------------------------------------


def test_find_peaks_refines_gaussians_to_sub_pixel_precision():
    rng = np.random.default_rng(1)
    kp, _ = random_crowd(rng, 4, unlabelled=0.0)
    kp[1:, :, :2] = kp[:1, :, :2] + rng.uniform(60, 90, (3, 1, 2)) * [[1, 1]]
    kp[..., 2] = np.where((kp[..., :2] < 0).any(-1) | (kp[..., 0] > 431) | (kp[..., 1] > 367), 0, 2)
    maps = part_fields.encode(kp[:1], input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    peaks = part_fields.find_peaks(maps["heatmaps"], 0.1, stride=STRIDE)
    assert peaks.shape == (17, 1, 3)
    np.testing.assert_allclose(peaks[:, 0, :2], kp[0, :, :2], atol=1e-3)
    # 4-neighbourhood NMS: a plateau gives one peak; padding slots have score 0.
    flat = np.zeros((10, 12, 2))
    flat[4, 5:7, 0] = 0.8
    flat[2, 2, 1], flat[7, 9, 1] = 0.5, 0.9
    peaks = part_fields.find_peaks(flat, 0.1)
    assert peaks.shape == (2, 2, 3)
    assert peaks[0, 1, 2] == 0 and peaks[0, 0, 2] == pytest.approx(0.8)
    np.testing.assert_allclose(peaks[1, :, :], [[9, 7, 0.9], [2, 2, 0.5]])


def test_greedy_match_equals_the_pair_by_pair_loop():
    rng = np.random.default_rng(2)
    for _ in range(50):
        s = rng.uniform(0, 1, (rng.integers(1, 9), rng.integers(1, 9)))
        s[rng.random(s.shape) < 0.3] = -np.inf
        used_r, used_c, expected = set(), set(), set()
        for flat in np.argsort(-s, axis=None, kind="stable"):
            r, c = np.unravel_index(flat, s.shape)
            if np.isfinite(s[r, c]) and r not in used_r and c not in used_c:
                used_r.add(r), used_c.add(c), expected.add((int(r), int(c)))
        rows, cols = grouping.greedy_match(s)
        assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == expected


# --- encode -> group -----------------------------------------------------------------------------


def _matches(truth, found, tol=0.5):
    """Each true person's labelled joints found together in one returned person (within tol px)."""
    for kp in truth:
        vis = kp[:, 2] > 0
        d = np.linalg.norm(found[:, :, :2] - kp[None, :, :2], axis=-1)
        hit = (d < tol) & (found[:, :, 2] > 0)
        assert hit[:, vis].all(axis=1).any(), "a person's joints were split or mixed"


def _connected(kp, limbs) -> bool:
    """Whether a person's labelled joints are one piece of the limb graph (else no grouping can
    join them: a wrist whose elbow and shoulder are both unlabelled has no limb to the rest)."""
    vis = kp[:, 2] > 0
    reach = np.zeros(len(kp), bool)
    reach[np.argmax(vis)] = True
    on = vis[limbs].all(axis=1)
    for _ in range(len(kp)):
        reach[limbs[on & reach[limbs].any(axis=1)].reshape(-1)] = True
    return bool(np.all(reach == vis))


def _spaced_crowd(rng, num_people, gap=24.0, **person):
    """A crowd of connected people (`_connected`) in which no two joints of one type lie within
    `gap` px (their Gaussians would merge into one peak: a limit of the encoding)."""
    while True:
        truth, heights = random_crowd(rng, num_people, **person)
        d = np.linalg.norm(truth[:, None, :, :2] - truth[None, :, :, :2], axis=-1)
        both = (truth[:, None, :, 2] > 0) & (truth[None, :, :, 2] > 0)
        d[np.arange(num_people), np.arange(num_people)] = np.inf
        joined = all(_connected(kp, COCO_LIMBS) for kp in truth)
        if joined and not np.any(both & (d < gap)):
            return truth, heights


def _crossings(truth, limbs) -> int:
    """How many pairs of limbs of one type, of two people, cross each other."""
    a, b = truth[:, limbs[:, 0], :2], truth[:, limbs[:, 1], :2]  # (P, L, 2)
    on = (truth[:, limbs[:, 0], 2] > 0) & (truth[:, limbs[:, 1], 2] > 0)

    def side(p, q, r):  # sign of the turn p -> q -> r, broadcast over people pairs
        return np.sign(np.cross(q - p, r - p))

    pa, pb, qa, qb = a[:, None], b[:, None], a[None], b[None]
    cross = (side(pa, pb, qa) != side(pa, pb, qb)) & (side(qa, qb, pa) != side(qa, qb, pb))
    cross &= on[:, None] & on[None]
    return int(np.triu(cross.any(-1), 1).sum())


def test_encode_then_group_recovers_the_people_of_crowds():
    rng = np.random.default_rng(3)
    crossings = 0
    for _ in range(12):
        truth, _ = _spaced_crowd(rng, 6, height=(120, 220), unlabelled=0.1, inside=False)
        crossings += _crossings(truth, COCO_LIMBS)
        people, scores = _round_trip(truth)
        _matches(truth, people)
        assert len(people) == len(truth) and np.all(np.diff(scores) <= 0)
        # an unlabelled joint is not invented
        assert (people[:, :, 2] > 0).sum() == (truth[:, :, 2] > 0).sum()
    assert crossings >= 3  # the scenes do have limbs of one type crossing


def test_grouping_takes_peaks_in_any_slot_order_with_zero_padding():
    rng = np.random.default_rng(4)
    truth, _ = random_crowd(rng, 6)
    maps = part_fields.encode(truth, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    peaks = part_fields.find_peaks(maps["heatmaps"], 0.1, stride=STRIDE)
    # what a device peak finder may hand over: more slots, shuffled, padding in between
    device = np.zeros((17, peaks.shape[1] + 3, 3))
    for k in range(17):
        device[k, rng.permutation(device.shape[1])[: peaks.shape[1]]] = peaks[k]
    a = part_fields.group_peaks(peaks, maps["pafs"], limbs=COCO_LIMBS, stride=STRIDE)
    b = part_fields.group_peaks(device, maps["pafs"], limbs=COCO_LIMBS, stride=STRIDE)
    np.testing.assert_allclose(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])


def test_flipped_maps_group_to_the_mirrored_people():
    rng = np.random.default_rng(5)
    truth, _ = random_crowd(rng, 5)
    in_w = INPUT_HW[1]
    mirrored = truth[:, metainfo.COCO.flip_indices].copy()
    mirrored[..., 0] = in_w - 1 - mirrored[..., 0]
    maps = part_fields.encode(truth, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    hm, paf = part_fields.flip_maps(
        maps["heatmaps"], maps["pafs"], fmt=metainfo.COCO, limbs=COCO_LIMBS
    )
    direct = part_fields.encode(mirrored, input_hw=INPUT_HW, stride=STRIDE, limbs=COCO_LIMBS)
    np.testing.assert_allclose(hm, direct["heatmaps"], atol=1e-5)
    np.testing.assert_allclose(paf, direct["pafs"], atol=1e-5)
    people, _ = part_fields.group(hm, paf, limbs=COCO_LIMBS, stride=STRIDE)
    _matches(mirrored, people)
    back = part_fields.flip_maps(hm, paf, fmt=metainfo.COCO, limbs=COCO_LIMBS)
    np.testing.assert_array_equal(back[0], maps["heatmaps"])
    np.testing.assert_array_equal(back[1], maps["pafs"])


def test_crowded_scenes_reach_ap_090_with_pycocotools():
    """The acceptance check's protocol on scenes of this file's generator: 1-12 people of
    70-240 px in 368x432, overlapping, limbs crossing, a tenth of the joints unlabelled, a
    fifth occluded (v = 1, encoded), some people cut by the border."""
    rng = np.random.default_rng(6)
    scenes = []
    for i in range(40):
        truth, heights = random_crowd(rng, int(rng.integers(1, 13)), inside=i % 2 == 0)
        scenes.append((truth, heights, *_round_trip(truth)))
    ap = _coco_ap(scenes)
    assert ap >= 0.9, ap
