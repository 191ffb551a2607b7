"""The training and evaluation chains against the spec (2.2-2.4) and the DARK round trip."""

import dataclasses
import math

import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, geometry, metainfo
from aggpose_jax.models import preprocess
from data_pipelines import augment, sources, transforms

IN_HW, HM_HW = (256, 192), (64, 48)
NO_AUG = transforms.AugmentConfig(
    half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=-1.0, jitter_prob=0.0
)


@pytest.fixture(scope="module")
def records():
    p = sources.sample_paths()
    return sources.load_coco_records(p.gt_json, p.image_root)


def _blob_image(xy, wh=(320, 240), sigma=3.0):
    xs, ys = np.meshgrid(np.arange(wh[0]), np.arange(wh[1]))
    g = np.exp(-((xs - xy[0]) ** 2 + (ys - xy[1]) ** 2) / (2 * sigma**2))
    return np.repeat((g * 250).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image):
    w = image[..., 0].astype(np.float64)
    w = np.where(w > 5, w, 0)  # drop the rounding floor
    ys, xs = np.mgrid[: w.shape[0], : w.shape[1]]
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@pytest.mark.parametrize("rotation, flipped", [(0.0, False), (30.0, False), (-65.0, True)])
def test_warp_lands_where_the_closed_form_says(rotation, flipped):
    dot = np.array([151.3, 117.6])
    image = _blob_image(dot)
    center, scale = np.array([160.2, 120.7]), np.array([1.1, 1.1 / 0.75])
    results = {
        "image": image, "image_wh": (320, 240), "image_is_bgr": True, "center": center,
        "scale": scale, "rotation": rotation, "keypoints": dot[None], "visibility": np.ones(1),
    }  # fmt: skip
    if flipped:  # the chain's flip step: joints and center mirrored, pixels left to the warp
        results.update(
            flipped=True, keypoints=np.array([[319 - dot[0], dot[1]]]),
            center=np.array([319 - center[0], center[1]]),
        )  # fmt: skip
    joint, center = results["keypoints"][0].copy(), results["center"]
    out = transforms.topdown_affine(results, IN_HW, HM_HW)
    t = geometry.affine_transform_matrix(center, scale, rotation, IN_HW[::-1])
    expected = geometry.apply_affine(joint, t)
    np.testing.assert_allclose(_centroid(out["image"]), expected, atol=0.05)
    np.testing.assert_allclose(out["keypoints"][0], expected, atol=1e-9)
    t_hm = geometry.affine_transform_matrix(center, scale, rotation, HM_HW[::-1])
    np.testing.assert_allclose(out["heatmap_keypoints"][0], geometry.apply_affine(joint, t_hm))


def _draws(n, cfg=None):
    cfg = cfg or transforms.AugmentConfig()
    return [transforms.draw_augmentation(np.random.default_rng([7, 0, i]), cfg) for i in range(n)]


def test_half_body_probabilities():
    fmt, n = metainfo.COCO, 20000
    kps = np.random.default_rng(0).uniform(50, 150, (17, 2))
    upper_c = kps[:11].mean(0)
    applied = upper = 0
    for d in _draws(n):
        r = transforms.half_body(
            {"keypoints": kps, "visibility": np.ones(17), "center": np.zeros(2), "scale": np.ones(2)},
            d, transforms.AugmentConfig(), fmt, 0.75,
        )  # fmt: skip
        if r["center"].any():
            applied += 1
            upper += np.allclose(r["center"], upper_c)
    p_upper = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))  # P(N(0,1) < 0.5) = 0.6915
    assert abs(applied / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert abs(upper / applied - p_upper) < 4 * math.sqrt(p_upper * (1 - p_upper) / applied)
    # Needs more than 8 visible joints.
    vis = np.r_[np.ones(8), np.zeros(9)]
    for d in _draws(200):
        r = transforms.half_body(
            {"keypoints": kps, "visibility": vis, "center": np.zeros(2), "scale": np.ones(2)},
            d, transforms.AugmentConfig(), fmt, 0.75,
        )  # fmt: skip
        assert not r["center"].any()


def test_half_body_box():
    kps = np.random.default_rng(1).uniform(50, 150, (17, 2))
    d = dataclasses.replace(_draws(1)[0], half_body_u=0.0, half_body_n=3.0)  # lower body
    r = transforms.half_body(
        {"keypoints": kps, "visibility": np.ones(17), "center": None, "scale": None},
        d, transforms.AugmentConfig(), metainfo.COCO, 0.75,
    )  # fmt: skip
    low = kps[11:]
    np.testing.assert_allclose(r["center"], low.mean(0))
    w, h = low.max(0) - low.min(0) + 1
    w, h = (w, w / 0.75) if w > 0.75 * h else (0.75 * h, h)
    np.testing.assert_allclose(r["scale"], np.array([w, h]) / 200 * 1.5)


def test_scale_and_rotation_distributions():
    cfg, n = transforms.AugmentConfig(), 20000
    s, r = [], []
    for d in _draws(n):
        out = transforms.scale_rotation({"scale": np.ones(2)}, d, cfg)
        s.append(out["scale"][0])
        r.append(out["rotation"])
    s, r = np.array(s), np.array(r)
    tail = 0.5 * math.erfc(1 / math.sqrt(2))  # P(N > 1) = 0.1587: the clipped mass at each end
    assert s.min() >= 0.65 and s.max() <= 1.35
    assert abs(np.mean(s == 1.35) - tail) < 0.015 and abs(np.mean(s == 0.65) - tail) < 0.015
    assert abs(np.mean(r == 0) - 0.4) < 0.015
    nz = r[r != 0]
    assert np.abs(nz).max() <= 90 and abs(np.mean(np.abs(nz) == 90) - 0.0455) < 0.008
    assert (
        abs(np.std(np.clip(45 * np.random.default_rng(0).standard_normal(n), -90, 90)) - nz.std())
        < 1.5
    )


def test_flip_swaps_pairs_and_zeroes_invisible():
    fmt = metainfo.COCO
    kps = np.stack([np.arange(17) * 3.0 + 1, np.arange(17) + 100.0], 1)
    vis = np.ones(17)
    vis[2] = 0  # right eye invisible -> after the flip, left eye (index 1) is invisible at (0, 0)
    d = dataclasses.replace(_draws(1)[0], flip_u=0.0)
    r = {
        "keypoints": kps,
        "visibility": vis,
        "center": np.array([30.0, 40.0]),
        "image_wh": (64, 48),
    }
    out = transforms.flip(r, d, transforms.AugmentConfig(), fmt, flip_pixels=False)
    assert out["flipped"]
    for i, j in enumerate(fmt.flip_indices):
        assert out["visibility"][i] == vis[j]
        expect = [63 - kps[j, 0], kps[j, 1]] if vis[j] else [0, 0]
        np.testing.assert_allclose(out["keypoints"][i], expect)
    np.testing.assert_allclose(out["center"], [33.0, 40.0])


def test_folded_flip_matches_flipping_the_pixels(records):
    kw = dict(fmt=metainfo.COCO, input_hw=IN_HW, heatmap_hw=HM_HW, sigma=2.0)
    cfg = dataclasses.replace(NO_AUG, flip_prob=1.0, rotation_prob=1.0)
    for i in range(3):
        a = transforms.train_example(records[i], np.random.default_rng(i), cfg=cfg, **kw)
        b = transforms.train_example(
            records[i], np.random.default_rng(i), cfg=cfg, jitter_on="image", **kw
        )
        assert a["flipped"]
        np.testing.assert_array_equal(a["heatmaps"], b["heatmaps"])
        # cv2 quantises sample positions to 1/32 px; the mirror changes that rounding only.
        assert np.abs(a["image"].astype(int) - b["image"]).max() <= 2


def test_targets_and_weights(records):
    kw = dict(fmt=metainfo.COCO, input_hw=IN_HW, heatmap_hw=HM_HW, sigma=2.0)
    rec = records[0]
    ex = transforms.train_example(rec, np.random.default_rng(0), cfg=NO_AUG, **kw)
    t_hm = geometry.affine_transform_matrix(rec["center"], rec["scale"], 0.0, HM_HW[::-1])
    mu = geometry.apply_affine(rec["keypoints"], t_hm)
    ys, xs = np.mgrid[: HM_HW[0], : HM_HW[1]]
    for j in range(17):
        if rec["visibility"][j]:
            g = np.exp(-((xs - mu[j, 0]) ** 2 + (ys - mu[j, 1]) ** 2) / 8.0)
            np.testing.assert_allclose(ex["heatmaps"][..., j], g, atol=1e-6)
    np.testing.assert_array_equal(ex["target_weight"], rec["visibility"])
    # A joint pushed off the map gets weight 0 and an all-zero target.
    rec = dict(rec, keypoints=rec["keypoints"].copy())
    rec["keypoints"][3] = rec["center"] + [2000.0, 0.0]
    ex = transforms.train_example(rec, np.random.default_rng(0), cfg=NO_AUG, **kw)
    assert ex["target_weight"][3] == 0 and not ex["heatmaps"][..., 3].any()


def test_eval_crop_is_the_uint8_rgb_the_device_normalises(tmp_path):
    rgb = np.array([200, 100, 30], np.uint8)
    path = tmp_path / "flat.png"
    cv2.imwrite(str(path), np.broadcast_to(rgb[::-1], (50, 60, 3)).copy())  # BGR on disk
    rec = {"image_path": str(path), "image_id": 1, "center": np.array([30.0, 25.0]),
           "scale": np.array([0.1, 0.1 / 0.75]), "score": 1.0, "area": 1.0,
           "keypoints": np.zeros((17, 2)), "visibility": np.zeros(17)}  # fmt: skip
    ex = transforms.eval_example(rec, input_hw=IN_HW)
    assert ex["image"].dtype == np.uint8 and ex["rotation"] == 0
    np.testing.assert_array_equal(ex["image"][128, 96], rgb)  # RGB order, no normalisation
    expect = (rgb / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    normalised = preprocess.normalize_images(ex["image"][None])[0, 128, 96]
    np.testing.assert_allclose(normalised, expect, rtol=1e-6)


def test_jitter_ops_semantics():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        cv2.LUT(img, augment.brightness_lut(1.3)), np.clip(img * 1.3, 0, 255).astype(np.uint8)
    )
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    m = round(float(grey.mean()))
    np.testing.assert_array_equal(
        cv2.LUT(img, augment.contrast_lut(0.7, m)),
        np.clip((img.astype(float) - m) * 0.7 + m, 0, 255).astype(np.uint8),
    )
    sat = augment.adjust_saturation(img, 0.0)
    np.testing.assert_array_equal(sat[..., 0], grey)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    back = cv2.cvtColor(augment.adjust_hue(img, -0.1), cv2.COLOR_RGB2HSV_FULL)
    # The shift int(-25.5) = -25 wraps modulo 256 (up to the HSV round trip's rounding).
    d = (back[..., 0].astype(int) - hsv[..., 0] + 25) % 256
    assert np.mean(np.minimum(d, 256 - d) <= 2) > 0.9


def test_jitter_on_crop_matches_the_official_order(records):
    """Same draws: jitter on the crop vs on the full image before the crop (the official order)."""
    kw = dict(fmt=metainfo.COCO, input_hw=IN_HW, heatmap_hw=HM_HW, sigma=2.0)
    cfg = dataclasses.replace(transforms.AugmentConfig(), jitter_prob=1.0, half_body_prob=0.0)
    diffs, mean_err = [], []
    for i in range(len(records)):
        for seed in range(3):
            a = transforms.train_example(
                records[i], np.random.default_rng([seed, i]), cfg=cfg, **kw
            )
            b = transforms.train_example(
                records[i], np.random.default_rng([seed, i]), cfg=cfg, jitter_on="image", **kw
            )
            np.testing.assert_array_equal(a["heatmaps"], b["heatmaps"])
            diffs.append(np.abs(a["image"].astype(float) - b["image"]).mean())
    # Bilinear interpolation does not commute exactly with clipping, truncation and the HSV
    # round trip; the images agree to about a grey level on average.
    assert np.mean(diffs) < 1.5 and np.max(diffs) < 3.0
    # The contrast mean from the 1/16 subsample is within one grey level of the full image's.
    for i in range(4):
        image = cv2.cvtColor(cv2.imread(records.image_paths[i * 3]), cv2.COLOR_BGR2RGB)
        s = transforms.MEAN_SUBSAMPLE_STRIDE
        mean_err.append(
            augment.mean_grey(image) - augment.mean_grey(np.ascontiguousarray(image[::s, ::s]))
        )
    assert np.abs(mean_err).max() <= 1


def test_round_trip_on_the_real_sample(records):
    """Annotation -> target heatmap -> DARK decode -> inverse transform, augmentation off."""
    errors = []
    for i in range(len(records)):
        rec = records[i]
        ex = transforms.eval_example(rec, input_hw=IN_HW, heatmap_hw=HM_HW, sigma=2.0)
        coords, _ = codecs.decode_heatmaps(ex["heatmaps"][None])
        back = geometry.output_to_image_coords(
            coords, rec["center"][None], rec["scale"][None], HM_HW[::-1]
        )[0]
        t_hm = geometry.affine_transform_matrix(rec["center"], rec["scale"], 0.0, HM_HW[::-1])
        mu = geometry.apply_affine(rec["keypoints"], t_hm)
        # DARK refines only off the border (1 < px < W - 2), and its blur sees the map's edge.
        inner = (ex["target_weight"] > 0) & np.all(
            (mu > 4) & (mu < np.array(HM_HW[::-1]) - 5), axis=1
        )
        errors.append(np.abs(back - rec["keypoints"])[inner])
    errors = np.concatenate(errors)
    assert len(errors) > 100 and errors.max() < 0.1
