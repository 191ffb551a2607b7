"""The official training augmentation steps against the spec (2.2-2.3): draws, half body, flip, jitter."""

import dataclasses
import math

import cv2
import numpy as np

from aggpose_jax.keypoints import metainfo
from data_pipelines import augment, transforms


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
        "image_hw": (48, 64),
    }
    out = transforms.flip(r, d, transforms.AugmentConfig(), fmt, flip_pixels=False)
    assert out["flipped"]
    for i, j in enumerate(fmt.flip_indices):
        assert out["visibility"][i] == vis[j]
        expect = [63 - kps[j, 0], kps[j, 1]] if vis[j] else [0, 0]
        np.testing.assert_allclose(out["keypoints"][i], expect)
    np.testing.assert_allclose(out["center"], [33.0, 40.0])


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


def test_cutout_square_of_mean_pixels_and_off_by_default():
    image = np.full((64, 48, 3), 7, np.uint8)
    d = dataclasses.replace(_draws(1)[0], cutout_xy=np.array([0.5, 0.5]))
    off = transforms.cutout({"image": image}, d, transforms.AugmentConfig())
    assert off["image"] is image  # off: the crop is untouched
    cfg = transforms.AugmentConfig(cutout=0.25)  # side 12 px on a 48-px-wide crop
    out = transforms.cutout({"image": image}, d, cfg)["image"]
    filled = np.all(out == transforms.CUTOUT_FILL, axis=-1)
    assert filled.sum() == 12 * 12 and filled[26:38, 18:30].all()
    assert (image == 7).all()  # the input array is not written
    # Hanging over the corner: only the part inside the crop.
    corner = dataclasses.replace(d, cutout_xy=np.array([0.0, 0.0]))
    out = transforms.cutout({"image": image}, corner, cfg)["image"]
    assert np.all(out == transforms.CUTOUT_FILL, axis=-1).sum() == 6 * 6
