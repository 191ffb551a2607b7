"""Heatmap codec: Gaussian encoding (spec 2.4), decoding (argmax, DARK, quarter) and round trips."""

import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, geometry

H, W = 64, 48


def _random_points(rng, n, hw, margin):
    h, w = hw
    return np.stack(
        [rng.uniform(margin, w - 1 - margin, n), rng.uniform(margin, h - 1 - margin, n)], -1
    )


# --- encoding ----------------------------------------------------------------------------------


def test_encode_peak_weight_and_window_rule():
    # br_x = int(mu_x + 3 sigma + 1) truncates toward zero: -7.9 -> int(-0.9) = 0 is kept, -8.0 -> -1
    # is dropped; invisible joints get weight 0 and an all-zero map.
    kp = np.array([[10.3, 20.7], [-7.9, 5.0], [-8.0, 5.0], [30.0, 40.0], [20.0, H + 6.5]])
    hm, weight = codecs.encode_heatmaps(kp, np.array([1, 1, 1, 0, 1]), heatmap_hw=(H, W), sigma=2.0)
    assert hm.shape == (H, W, 5) and hm.dtype == np.float32
    assert weight.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert hm[..., 1].max() > 0 and np.all(hm[..., 2:] == 0)
    y, x = np.unravel_index(np.argmax(hm[..., 0]), (H, W))
    assert (x, y) == (10, 21)
    expected = np.exp(-((10 - 10.3) ** 2 + (21 - 20.7) ** 2) / 8.0)
    assert hm[21, 10, 0] == pytest.approx(expected, rel=1e-6)
    # Whole-grid Gaussian, no truncation to the 3-sigma window (8.7 px > 6 px away).
    far = np.exp(-((19 - 10.3) ** 2 + (21 - 20.7) ** 2) / 8.0)
    assert hm[21, 19, 0] == pytest.approx(far, rel=1e-5)


def test_encode_equals_the_official_float32_targets_bit_for_bit():
    # The official target: np.exp(-((x - mu_x)^2 + (y - mu_y)^2) / (2 sigma^2)) in float64, stored
    # in a float32 array; the far tails are float32 denormals there too.
    rng = np.random.default_rng(3)
    kp = np.stack([rng.uniform(-5, W + 5, 17), rng.uniform(-5, H + 5, 17)], -1)
    hm, weight = codecs.encode_heatmaps(kp, np.ones(17), heatmap_hw=(H, W), sigma=2.0)
    ys, xs = np.mgrid[:H, :W].astype(np.float64)
    for k in np.flatnonzero(weight):
        official = np.exp(-((xs - kp[k, 0]) ** 2 + (ys - kp[k, 1]) ** 2) / (2 * 2.0**2))
        np.testing.assert_array_equal(hm[..., k], official.astype(np.float32))


# --- decoding: round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("hw,sigma,margin", [((64, 48), 2.0, 4), ((96, 72), 3.0, 6)])
def test_dark_round_trip_sub_pixel(hw, sigma, margin):
    rng = np.random.default_rng(0)
    kp = _random_points(rng, 500, hw, margin)
    hm, _ = codecs.encode_heatmaps(kp, np.ones(len(kp)), heatmap_hw=hw, sigma=sigma)
    coords, maxvals = codecs.decode_heatmaps(hm[None])
    err = np.abs(coords[0] - kp)
    assert err.max() < 0.05
    # The integer argmax alone is off by up to half a pixel: DARK is doing the work.
    plain, _ = codecs.decode_heatmaps(hm[None], "argmax")
    assert np.abs(plain[0] - kp).max() > 0.3
    assert np.all(maxvals > 0.5)


def test_dark_round_trip_through_affine_transform():
    rng = np.random.default_rng(1)
    for _ in range(10):
        box = np.array(
            [rng.uniform(0, 300), rng.uniform(0, 200), rng.uniform(40, 300), rng.uniform(60, 400)]
        )
        center, scale = geometry.box_to_center_scale(box, 0.75)
        # Image points inside the (unpadded) box.
        pts = box[:2] + rng.uniform(0.05, 0.95, (17, 2)) * box[2:]
        to_hm = geometry.affine_transform_matrix(center, scale, 0.0, output_hw=(H, W))
        hm_pts = geometry.apply_affine(pts, to_hm)
        hm, _ = codecs.encode_heatmaps(hm_pts, np.ones(17), heatmap_hw=(H, W), sigma=2.0)
        coords, _ = codecs.decode_heatmaps(hm[None])
        back = geometry.output_to_image_coords(coords, center[None], scale[None], output_hw=(H, W))
        assert np.abs(back[0] - pts).max() < 0.1


# --- decoding: DARK against a loop reference written from the spec -------------------------------


def _dark_reference(heatmaps, kernel=11):
    """Per-heatmap loops: argmax, cv2 blur on a zero-padded copy, rescale, log, one Newton step."""
    b, h, w, k = heatmaps.shape
    coords = np.zeros((b, k, 2))
    maxvals = np.zeros((b, k))
    r = (kernel - 1) // 2
    for n in range(b):
        for j in range(k):
            m = heatmaps[n, :, :, j].astype(np.float64)
            idx = int(np.argmax(m))
            maxvals[n, j] = m.reshape(-1)[idx]
            px, py = (idx % w, idx // w) if maxvals[n, j] > 0 else (0, 0)
            coords[n, j] = px, py
            padded = np.zeros((h + 2 * r, w + 2 * r))
            padded[r:-r, r:-r] = m
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[r:-r, r:-r]
            with np.errstate(divide="ignore", invalid="ignore"):
                blurred = blurred * (m.max() / blurred.max())
            lg = np.log(np.maximum(blurred, 1e-10))
            if 1 < px < w - 2 and 1 < py < h - 2:
                dx = 0.5 * (lg[py, px + 1] - lg[py, px - 1])
                dy = 0.5 * (lg[py + 1, px] - lg[py - 1, px])
                dxx = 0.25 * (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2])
                dyy = 0.25 * (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px])
                dxy = 0.25 * (
                    lg[py + 1, px + 1]
                    - lg[py - 1, px + 1]
                    - lg[py + 1, px - 1]
                    + lg[py - 1, px - 1]
                )
                if dxx * dyy - dxy**2 != 0:
                    hess = np.array([[dxx, dxy], [dxy, dyy]])
                    coords[n, j] -= np.linalg.inv(hess) @ np.array([dx, dy])
    return coords, maxvals


def _random_heatmaps(rng, b=3, k=12):
    """Noisy Gaussian blobs at random places (some at the border), plus all-negative and zero maps."""
    kp = np.stack([rng.uniform(-1, W, (b, k)), rng.uniform(-1, H, (b, k))], -1)
    hm = np.stack(
        [codecs.encode_heatmaps(p, np.ones(k), heatmap_hw=(H, W), sigma=2.0)[0] for p in kp]
    )
    hm = hm + 0.05 * rng.normal(size=hm.shape)
    hm[0, :, :, 0] = -np.abs(hm[0, :, :, 0]) - 0.1
    hm[1, :, :, 1] = 0.0
    hm[2, :, :, 2] = rng.uniform(0, 1, (H, W))  # pure noise: an arbitrary Hessian
    return hm


def test_dark_matches_loop_reference():
    rng = np.random.default_rng(2)
    hm = _random_heatmaps(rng)
    coords, maxvals = codecs.decode_heatmaps(hm, "dark")
    ref_coords, ref_maxvals = _dark_reference(hm)
    np.testing.assert_allclose(maxvals, ref_maxvals, rtol=0, atol=1e-12)
    np.testing.assert_allclose(coords, ref_coords, rtol=1e-6, atol=1e-6)
    assert np.any(coords != np.round(coords))  # refinement happened somewhere


def test_blur_matches_cv2_zero_padded():
    rng = np.random.default_rng(3)
    hm = rng.uniform(0.1, 1, (1, H, W, 1))
    padded = np.pad(hm[0, :, :, 0], 5)
    ref = cv2.GaussianBlur(padded, (11, 11), 0)[5:-5, 5:-5]
    ref *= hm.max() / ref.max()
    np.testing.assert_allclose(codecs.blur_heatmaps(hm)[0, :, :, 0], ref, rtol=1e-10)


@pytest.mark.parametrize(
    "px,refined", [(1, False), (2, True), (W - 3, True), (W - 2, False), (W - 1, False)]
)
def test_dark_border_condition(px, refined):
    # A peak offset by +0.3 px from an integer position: refinement moves x off the integer.
    mu = np.array([[px + 0.3, 30.0]])
    hm, _ = codecs.encode_heatmaps(mu, np.ones(1), heatmap_hw=(H, W), sigma=2.0)
    coords, _ = codecs.decode_heatmaps(hm[None])
    assert (coords[0, 0, 0] != px) == refined
    assert coords[0, 0, 1] == pytest.approx(30.0, abs=1e-6)
    for py, ok in ((1, False), (2, True), (H - 3, True), (H - 2, False)):
        hm, _ = codecs.encode_heatmaps(
            np.array([[20.0, py + 0.3]]), np.ones(1), heatmap_hw=(H, W), sigma=2.0
        )
        c, _ = codecs.decode_heatmaps(hm[None])
        assert (c[0, 0, 1] != py) == ok


def test_nonpositive_maps_decode_to_origin():
    hm = np.full((1, H, W, 3), -1.0)
    hm[0, 30, 20, 0] = -0.5  # a peak, but negative
    hm[..., 1] = 0.0
    hm[0, 30, 20, 2] = 1.0
    for method in codecs.DECODE_METHODS:
        coords, maxvals = codecs.decode_heatmaps(hm, method)
        assert np.all(coords[0, :2] == 0.0) and np.all(np.isfinite(coords))
        assert maxvals[0].tolist() == [-0.5, 0.0, 1.0]
        assert coords[0, 2].tolist() != [0.0, 0.0]


def test_quarter_and_argmax():
    hm = np.zeros((1, H, W, 2))
    hm[0, 30, 20, 0] = 1.0
    hm[0, 30, 21, 0] = 0.5  # right neighbour higher -> +0.25 x
    hm[0, 29, 20, 0] = 0.4  # upper neighbour higher -> -0.25 y
    hm[0, 1, 20, 1] = 1.0  # py = 1: outside the quarter rule's range
    hm[0, 1, 21, 1] = 0.5
    coords, _ = codecs.decode_heatmaps(hm, "quarter")
    assert coords[0].tolist() == [[20.25, 29.75], [20.0, 1.0]]
    coords, _ = codecs.decode_heatmaps(hm, "argmax")
    assert coords[0].tolist() == [[20.0, 30.0], [20.0, 1.0]]
    with pytest.raises(ValueError, match="unknown decode method"):
        codecs.decode_heatmaps(hm, "udp")


# --- the codec object ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_hw,heatmap_hw,sigma,margin",
    [((256, 192), (64, 48), 2.0, 4), ((128, 96), (32, 24), 2.0, 4), ((384, 288), (96, 72), 3.0, 6)],
)
def test_codec_round_trip_in_input_pixels(input_hw, heatmap_hw, sigma, margin):
    """mmpose's codec contract: encode -> decode (-> input pixels) gives the keypoints back."""
    codec = codecs.HeatmapCodec(input_hw, heatmap_hw, sigma)
    rng = np.random.default_rng(5)
    kp = _random_points(rng, 300, input_hw, margin * codec.stride)
    heatmaps, weight = codec.encode(kp, np.ones(len(kp)))
    assert heatmaps.shape == (*heatmap_hw, len(kp)) and np.all(weight == 1)
    coords, maxvals = codec.decode(heatmaps[None])
    assert coords.shape == (1, len(kp), 2) and maxvals.shape == (1, len(kp))
    np.testing.assert_allclose(codec.to_input(coords[0]), kp, rtol=0, atol=0.1)
    np.testing.assert_allclose(codec.to_heatmap(codec.to_input(coords[0])), coords[0], atol=1e-12)


def test_codec_encode_is_the_official_targets():
    """Input pixels through the codec == image points through T(out=heatmap) (the official)."""
    codec = codecs.HeatmapCodec((256, 192), (64, 48), 2.0)
    rng = np.random.default_rng(6)
    center, scale, rot = np.array([300.0, 200.0]), np.array([1.2, 1.6]), 25.0
    pts = center + rng.normal(0, 90, (17, 2))
    vis = (rng.uniform(size=17) < 0.8).astype(np.float32)
    t_in = geometry.affine_transform_matrix(center, scale, rot, output_hw=codec.input_hw)
    t_hm = geometry.affine_transform_matrix(center, scale, rot, output_hw=codec.heatmap_hw)
    got, got_w = codec.encode(geometry.apply_affine(pts, t_in), vis)
    want, want_w = codecs.encode_heatmaps(
        geometry.apply_affine(pts, t_hm), vis, heatmap_hw=(64, 48), sigma=2.0
    )
    np.testing.assert_array_equal(got_w, want_w)
    # The same float64 point to ~1e-13 px: the float32 targets agree to an ulp.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30)


def test_codec_decode_is_decode_heatmaps_with_its_method():
    rng = np.random.default_rng(7)
    hm = _random_heatmaps(rng)
    for method in codecs.DECODE_METHODS:
        codec = codecs.HeatmapCodec((256, 192), (H, W), method=method, blur_kernel=9)
        want = codecs.decode_heatmaps(hm, method, blur_kernel=9)
        for got, ref in zip(codec.decode(hm), want, strict=True):
            np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="expected"):
        codecs.HeatmapCodec((256, 192), (64, 48)).decode(np.zeros((1, 48, 64, 17)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_hw=(256, 192), heatmap_hw=(64, 47)), "stride"),
        (dict(input_hw=(256, 192), heatmap_hw=(64, 64)), "stride"),
        (dict(input_hw=(256, 192), heatmap_hw=(0, 48)), ">= 2"),
        (dict(input_hw=(256, 192), heatmap_hw=(64, 48), sigma=0.0), "sigma"),
        (dict(input_hw=(256, 192), heatmap_hw=(64, 48), method="udp"), "unknown decode method"),
        (dict(input_hw=(256, 192), heatmap_hw=(64, 48), blur_kernel=10), "blur_kernel"),
    ],
)
def test_codec_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        codecs.HeatmapCodec(**kwargs)


def test_codec_stride_and_value():
    codec = codecs.HeatmapCodec([384, 288], [96, 72], 3.0)
    assert codec.stride == 4 and codec.input_hw == (384, 288) and codec.heatmap_hw == (96, 72)
    assert codec == codecs.HeatmapCodec((384, 288), (96, 72), 3.0)  # a hashable value
    assert codecs.HeatmapCodec((64, 48), (64, 48)).stride == 1
