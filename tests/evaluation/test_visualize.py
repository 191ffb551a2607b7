"""Pose and heatmap pictures: written, at the right size, drawing only what passes the threshold."""

import matplotlib.image
import numpy as np
import pytest

from aggpose_jax.evaluation import visualize
from aggpose_jax.keypoints.metainfo import COCO, INFANT


def _limb_index(fmt, a, b):
    return next(i for i, e in enumerate(fmt.skeleton) if set(e) == {a, b})


def test_render_poses_draws_confident_limbs_only(tmp_path):
    h, w = 120, 160
    image = np.zeros((h, w, 3), np.uint8)
    kp = np.zeros((1, 17, 2))
    scores = np.zeros((1, 17))
    # left shoulder (5) - left elbow (7): a horizontal limb, both confident.
    kp[0, 5], kp[0, 7] = (20, 30), (80, 30)
    scores[0, [5, 7]] = 0.9
    # right shoulder (6) - right elbow (8): elbow below threshold, so no limb and no elbow dot.
    kp[0, 6], kp[0, 8] = (20, 90), (80, 90)
    scores[0, [6, 8]] = 0.9, 0.1
    path = tmp_path / "out" / "poses.png"
    visualize.render_poses(image, kp, scores, COCO, path, score_thr=0.3)
    pic = matplotlib.image.imread(path)[..., :3]
    assert pic.shape == (h, w, 3)
    drawn = pic[30, 50]
    expected = visualize.limb_colors(len(COCO.skeleton))[_limb_index(COCO, 5, 7), :3]
    # The limb's own colour, up to anti-aliasing (which scales the intensity, not the hue).
    assert drawn.max() > 0.5
    np.testing.assert_allclose(drawn / drawn.max(), expected / expected.max(), atol=0.05)
    assert pic[90, 50].max() < 0.05  # the unconfident limb is not drawn
    assert pic[90, 80].max() < 0.05  # nor its low-score end
    assert pic[90, 20].min() > 0.8  # the confident right shoulder is a white dot
    assert pic[5:15, 100:150].max() < 0.05  # far from everything: the black image shows


def test_render_poses_keeps_image_and_many_people(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)
    path = tmp_path / "p.png"
    visualize.render_poses(image, np.zeros((0, 21, 2)), np.zeros((0, 21)), INFANT, path)
    pic = matplotlib.image.imread(path)[..., :3]
    np.testing.assert_allclose(pic * 255, image, atol=1.0)
    visualize.render_poses(image, rng.uniform(0, 40, (3, 21, 2)), np.ones((3, 21)), INFANT, path)
    assert np.abs(matplotlib.image.imread(path)[..., :3] * 255 - image).max() > 50


def test_render_heatmaps_grid(tmp_path):
    maps = np.zeros((16, 12, 5))
    maps[8, 6, 2] = 1.0
    path = tmp_path / "hm.png"
    visualize.render_heatmaps(maps, path, names=[f"j{i}" for i in range(5)], ncols=3)
    pic = matplotlib.image.imread(path)
    assert pic.shape[:2] == (2 * 240, 3 * 200)  # 2 rows x 3 columns of panels at 100 dpi
    with_image = tmp_path / "hm2.png"
    visualize.render_heatmaps(maps, with_image, image_rgb=np.zeros((64, 48, 3), np.uint8), ncols=6)
    assert matplotlib.image.imread(with_image).shape[:2] == (240, 6 * 200)
    with pytest.raises(ValueError, match="3 names for 5 heatmaps"):
        visualize.render_heatmaps(maps, path, names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"must be \(h, w, K\)"):
        visualize.render_heatmaps(maps[None], path)
