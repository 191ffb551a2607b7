"""Rescoring, OKS-NMS and soft OKS-NMS against hand-made cases and simple loop references."""

import numpy as np
import pytest

from aggpose_jax.evaluation import nms
from aggpose_jax.keypoints.metainfo import COCO

SIGMAS = COCO.sigmas_array
K = 17


def _oks_loop(g, d, area_g, area_d, sigmas):
    """OKS of one person g (K, 2) against each d (K, 2), joint by joint, all joints counting."""
    out = []
    for dn, ad in zip(d, area_d, strict=True):
        es = []
        for j in range(len(sigmas)):
            d2 = (g[j, 0] - dn[j, 0]) ** 2 + (g[j, 1] - dn[j, 1]) ** 2
            es.append(d2 / (2 * sigmas[j]) ** 2 / ((area_g + ad) / 2 + np.spacing(1)) / 2)
        out.append(np.mean(np.exp(-np.array(es))))
    return np.array(out)


def _oks_nms_loop(kp, scores, areas, sigmas, thr):
    order = list(np.argsort(scores, kind="stable")[::-1])
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        ovr = _oks_loop(kp[i], kp[order], areas[i], areas[order], sigmas)
        order = [o for o, v in zip(order, ovr, strict=True) if v <= thr]
    return keep


def _soft_nms_loop(kp, scores, areas, sigmas, thr, max_dets):
    pool = {i: float(s) for i, s in enumerate(scores)}
    keep = []
    while pool and len(keep) < max_dets:
        # Highest current score; ties go to the larger index (reversed stable sort).
        i = max(pool, key=lambda n: (pool[n], n))
        keep.append(i)
        del pool[i]
        rest = list(pool)
        if rest:
            ovr = _oks_loop(kp[i], kp[rest], areas[i], areas[rest], sigmas)
            for n, v in zip(rest, ovr, strict=True):
                pool[n] *= np.exp(-(v**2) / thr)
    return keep


def _person(rng, center, size):
    return center + rng.uniform(-size / 2, size / 2, (K, 2))


def test_rescore_persons():
    maxvals = np.array([[0.9, 0.5, 0.1, 0.2], [0.1, 0.0, 0.2, 0.15], [0.3, 0.3, 0.3, 0.3]])
    got = nms.rescore_persons(maxvals, np.array([1.0, 1.0, 0.5]))
    # Joint 4 of person 0 is exactly at the threshold and does not count (strictly above).
    np.testing.assert_allclose(got, [(0.9 + 0.5) / 2, 0.0, 0.3 * 0.5])


def test_oks_nms_hand_made():
    rng = np.random.default_rng(0)
    a = _person(rng, np.array([100.0, 100.0]), 80)
    near = a + 0.5  # a near duplicate: OKS ~ 1
    far = a + 300.0  # another person
    kp = np.stack([a, near, far])
    areas = np.full(3, 100.0 * 130.0)
    keep = nms.oks_nms(kp, np.array([0.8, 0.9, 0.7]), areas, SIGMAS)
    assert keep.tolist() == [1, 2]  # the better-scored duplicate survives, the other person too
    # A displacement giving OKS between 0.5 and 0.9 survives at 0.9 but not at 0.5.
    mid = a + 6.0
    kp = np.stack([a, mid])
    oks = nms.oks_matrix(kp, areas[:2], SIGMAS)[0, 1]
    assert 0.5 < oks < 0.9
    assert nms.oks_nms(kp, np.array([1.0, 0.5]), areas[:2], SIGMAS).tolist() == [0, 1]
    assert nms.oks_nms(kp, np.array([1.0, 0.5]), areas[:2], SIGMAS, thr=0.5).tolist() == [0]
    assert nms.oks_nms(np.zeros((0, K, 2)), np.zeros(0), np.zeros(0), SIGMAS).size == 0


def test_oks_matrix_matches_loop_and_vis_thr():
    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 200, (6, K, 2))
    areas = rng.uniform(1e3, 3e4, 6)
    mat = nms.oks_matrix(kp, areas, SIGMAS)
    for i in range(6):
        np.testing.assert_allclose(
            mat[i], _oks_loop(kp[i], kp, areas[i], areas, SIGMAS), rtol=1e-12
        )
    conf = rng.uniform(0, 1, (6, K))
    masked = nms.oks_matrix(kp, areas, SIGMAS, conf, vis_thr=0.5)
    both = (conf[0] > 0.5) & (conf[1] > 0.5)
    e = ((kp[0] - kp[1]) ** 2).sum(-1) / (2 * SIGMAS) ** 2 / ((areas[0] + areas[1]) / 2) / 2
    assert masked[0, 1] == pytest.approx(np.exp(-e[both]).mean(), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_oks_nms_and_soft_nms_match_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n = 30
    # Clusters of near-duplicates around a few people, as a detector's boxes give.
    centers = rng.uniform(50, 400, (4, 2))
    base = np.stack([_person(rng, c, 100) for c in centers])
    kp = base[rng.integers(0, 4, n)] + rng.normal(0, rng.uniform(0.5, 8), (n, 1, 1))
    scores = rng.uniform(0, 1, n)
    scores[3] = scores[7]  # a tie
    areas = rng.uniform(5e3, 2e4, n)
    keep = nms.oks_nms(kp, scores, areas, SIGMAS, thr=0.9)
    assert keep.tolist() == _oks_nms_loop(kp, scores, areas, SIGMAS, 0.9)
    assert 1 < len(keep) < n
    soft_keep, soft_scores = nms.soft_oks_nms(kp, scores, areas, SIGMAS, thr=0.9, max_dets=20)
    assert soft_keep.tolist() == _soft_nms_loop(kp, scores, areas, SIGMAS, 0.9, 20)
    assert len(soft_keep) == 20


def test_soft_nms_rescoring_reorders():
    rng = np.random.default_rng(2)
    a = _person(rng, np.array([100.0, 100.0]), 80)
    kp = np.stack([a, a + 0.2, a + 300.0])  # 1 duplicates 0; 2 is elsewhere
    areas = np.full(3, 1e4)
    scores = np.array([0.9, 0.85, 0.6])
    keep, picked = nms.soft_oks_nms(kp, scores, areas, SIGMAS, thr=0.9)
    # The duplicate is decayed below the distant person but still kept (soft, not hard).
    assert keep.tolist() == [0, 2, 1]
    oks = nms.oks_matrix(kp, areas, SIGMAS)[0, 1]
    decay0 = np.exp(-(oks**2) / 0.9)
    decay2 = np.exp(-(nms.oks_matrix(kp, areas, SIGMAS)[2, 1] ** 2) / 0.9)
    np.testing.assert_allclose(picked, [0.9, 0.6, 0.85 * decay0 * decay2])
    keep, _ = nms.soft_oks_nms(kp, scores, areas, SIGMAS, max_dets=2)
    assert keep.tolist() == [0, 2]


def test_nms_per_image_keeps_images_apart():
    rng = np.random.default_rng(3)
    a = _person(rng, np.array([100.0, 100.0]), 80)
    kp = np.stack([a, a + 0.3, a, a + 0.3])  # the same duplicate pair in two images
    image_ids = np.array([7, 7, 5, 5])
    scores = np.array([0.5, 0.9, 0.8, 0.4])
    areas = np.full(4, 1e4)
    assert nms.nms_per_image(image_ids, kp, scores, areas, SIGMAS, "oks").tolist() == [1, 2]
    assert sorted(nms.nms_per_image(image_ids, kp, scores, areas, SIGMAS, "soft")) == [0, 1, 2, 3]
    assert nms.nms_per_image(image_ids, kp, scores, areas, SIGMAS, None).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown nms method"):
        nms.nms_per_image(image_ids, kp, scores, areas, SIGMAS, "box")
