"""The masked-image chain: exact mask ratios, draws that follow the record's generator, the synthetic
infant video -> frame shards -> examples, and the held-out split."""

import numpy as np
import pytest

from data_pipelines import masked, sources, synthetic, video


def test_draw_mask_masks_exactly_the_ratio_and_follows_the_generator():
    a = masked.draw_mask(np.random.default_rng([0, 1, 2]), (8, 6), 0.6)
    b = masked.draw_mask(np.random.default_rng([0, 1, 2]), (8, 6), 0.6)
    c = masked.draw_mask(np.random.default_rng([0, 2, 2]), (8, 6), 0.6)
    assert a.shape == (8, 6) and a.sum() == 29  # round(0.6 * 48)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_resized_box_stays_inside_with_the_asked_area():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0, h, w = masked.random_resized_box(rng, (240, 320), (0.67, 1.0), (-0.29, 0.29))
        assert 0 <= y0 and y0 + h <= 240 and 0 <= x0 and x0 + w <= 320
        assert 0.6 * 240 * 320 <= h * w <= 1.01 * 240 * 320


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    clip = synthetic.write_infant_video(root / "infant.mp4", frames=24, fps=12)
    video.extract_frames(clip, root / "frames", every_n=2)
    return video.VideoFrameSource(root / "frames")


def test_synthetic_video_frames_become_masked_examples(frames):
    assert len(frames) == 12
    example = masked.MaskedTrainExample((128, 96))
    out = example(frames[3], np.random.default_rng([0, 0, 3]))
    again = example(frames[3], np.random.default_rng([0, 0, 3]))
    assert out["image"].shape == (128, 96, 3) and out["image"].dtype == np.uint8
    assert out["mask"].shape == (4, 3) and out["mask"].sum() == round(0.6 * 12)
    np.testing.assert_array_equal(out["image"], again["image"])
    assert out["image"].std() > 10  # a real picture, not a blank
    held = masked.MaskedEvalExample((128, 96))(frames[0])
    assert held["image"].shape == (128, 96, 3)


def test_the_figure_moves_between_frames(frames):
    first = masked.MaskedEvalExample((128, 96))(frames[0])["image"].astype(int)
    last = masked.MaskedEvalExample((128, 96))(frames[11])["image"].astype(int)
    assert np.abs(first - last).mean() > 1.0


def test_input_size_must_be_a_multiple_of_the_mask_unit(frames):
    with pytest.raises(
        ValueError, match=r"input_hw \(100, 96\) is not a multiple of the mask unit 32"
    ):
        masked.MaskedTrainExample((100, 96))(frames[0], np.random.default_rng(0))


def test_image_folder_source_and_subset(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 30, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = sources.ImageFolderSource(tmp_path)
    assert len(source) == 3 and source[2]["image_path"].endswith("2.png")
    tail = sources.Subset(source, (2,))
    assert len(tail) == 1 and tail[0] == source[2]
    with pytest.raises(FileNotFoundError, match="no images"):
        sources.ImageFolderSource(tmp_path / "missing")
