import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import geometry


def _three_point_transform(center, scale, rot_deg, output_hw):
    """The official construction: center, a point above it, and a perpendicular third point."""
    dh, dw = output_hw
    src_w = scale[0] * 200.0 - 1.0
    r = np.deg2rad(rot_deg)
    src_dir = np.array([src_w * -0.5 * np.sin(r) * -1.0, src_w * -0.5 * np.cos(r)])
    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0], dst[0] = center, [(dw - 1) * 0.5, (dh - 1) * 0.5]
    src[1], dst[1] = center + src_dir, dst[0] + [0.0, (dw - 1) * -0.5]

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src[2], dst[2] = third(src[0], src[1]), third(dst[0], dst[1])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


def test_closed_form_matches_three_point_construction():
    rng = np.random.default_rng(0)
    for _ in range(20):
        center = rng.uniform(50, 500, 2)
        scale = rng.uniform(0.3, 3.0, 2)
        rot = rng.uniform(-90, 90)
        ours = geometry.affine_transform_matrix(center, scale, rot, output_hw=(256, 192))
        ref = _three_point_transform(center, scale, rot, (256, 192))
        # cv2 takes float32 points, so agreement is to float32 rounding.
        np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_inverse_round_trip():
    center, scale = np.array([[320.0, 200.0]]), np.array([[1.1, 1.4667]])
    pts = np.array([[[100.0, 50.0], [400.0, 300.0]]])
    mat = geometry.affine_transform_matrix(center[0], scale[0], 0.0, output_hw=(64, 48))
    back = geometry.output_to_image_coords(
        geometry.apply_affine(pts, mat), center, scale, output_hw=(64, 48)
    )
    np.testing.assert_allclose(back, pts, atol=1e-9)
    np.testing.assert_allclose(
        geometry.apply_affine(geometry.apply_affine(pts, mat), geometry.invert_affine(mat)),
        pts,
        atol=1e-9,
    )


def test_box_to_center_scale_and_cleaning():
    center, scale = geometry.box_to_center_scale(np.array([10.0, 20.0, 30.0, 80.0]), 0.75)
    np.testing.assert_allclose(center, [25.0, 60.0])
    np.testing.assert_allclose(scale, [60.0 / 200 * 1.25, 80.0 / 200 * 1.25])
    _, wide = geometry.box_to_center_scale(np.array([0.0, 0.0, 90.0, 60.0]), 0.75)
    np.testing.assert_allclose(wide, [90.0 / 200 * 1.25, 120.0 / 200 * 1.25])
    np.testing.assert_allclose(
        geometry.clean_box([-5, 10, 50, 20], image_hw=(100, 40)), [0, 10, 39, 19]
    )
    assert geometry.clean_box([50, 10, 5, 5], image_hw=(100, 40)) is None
    np.testing.assert_allclose(
        geometry.clean_box([5, 10, 0.5, 0.5], image_hw=(100, 40)), [5, 10, 0, 0]
    )


def test_sizes_are_keyword_only_hw():
    # A stale positional (width, height) call fails instead of swapping the axes.
    with pytest.raises(TypeError):
        geometry.affine_transform_matrix(np.zeros(2), np.ones(2), 0.0, (48, 64))
    with pytest.raises(TypeError):
        geometry.output_to_image_coords(
            np.zeros((1, 1, 2)), np.zeros((1, 2)), np.ones((1, 2)), (48, 64)
        )
    with pytest.raises(TypeError):
        geometry.clean_box([0, 0, 5, 5], (40, 100))
    # A non-square output: (h, w) order sets the half-size offsets (w - 1) / 2, (h - 1) / 2.
    mat = geometry.affine_transform_matrix(
        np.array([10.0, 20.0]), np.ones(2), 0.0, output_hw=(64, 48)
    )
    np.testing.assert_allclose(geometry.apply_affine(np.array([10.0, 20.0]), mat), [23.5, 31.5])


def test_resize_crop_points_equals_the_other_crops_transform():
    rng = np.random.default_rng(4)
    for _ in range(20):
        center, scale, rot = rng.uniform(50, 500, 2), rng.uniform(0.3, 3.0, 2), rng.uniform(-90, 90)
        pts = center + rng.normal(0, 80, (17, 2))
        t_in = geometry.affine_transform_matrix(center, scale, rot, output_hw=(256, 192))
        t_hm = geometry.affine_transform_matrix(center, scale, rot, output_hw=(64, 48))
        got = geometry.resize_crop_points(
            geometry.apply_affine(pts, t_in), from_hw=(256, 192), to_hw=(64, 48)
        )
        np.testing.assert_allclose(got, geometry.apply_affine(pts, t_hm), rtol=0, atol=1e-10)
