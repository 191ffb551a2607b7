"""Region decoding (libturbojpeg 3) against whole-image decoding, the uint8 image option, fallbacks."""

import dataclasses

import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, metainfo
from data_pipelines import jpeg, sources, topdown, transforms

CODEC = codecs.HeatmapCodec((256, 192), (64, 48), sigma=2.0)
TRAIN = topdown.TopdownTrainExample(metainfo.COCO, CODEC)
EVAL = topdown.TopdownEvalExample(CODEC)
needs_turbojpeg = pytest.mark.skipif(not jpeg.available(), reason="libturbojpeg 3 not installed")


@pytest.fixture(scope="module")
def records():
    p = sources.sample_paths()
    return sources.load_coco_records(p.gt_json, p.image_root)


def _cv2(buf):
    return cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def _buffers(records):
    """The sample's JPEGs (4:4:4) and 4:2:0 re-encodings of them (chroma upsampled at decode)."""
    out = []
    for path in sorted(set(records.image_paths)):
        buf = np.fromfile(path, np.uint8)
        out.append(buf)
        params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x221111]
        out.append(np.frombuffer(cv2.imencode(".jpg", _cv2(buf), params)[1].tobytes(), np.uint8))
    return out


@needs_turbojpeg
def test_region_equals_whole_decode_inside_the_margin(records):
    rng = np.random.default_rng(0)
    subsamplings = set()
    for buf in _buffers(records):
        full = _cv2(buf)
        h, w = full.shape[:2]
        subsamplings.add(jpeg.header(buf)[2])
        np.testing.assert_array_equal(jpeg.decode(buf)[0], full)
        np.testing.assert_array_equal(jpeg.decode(buf, rgb=True)[0], full[..., ::-1])
        for _ in range(40):
            x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
            box = (x0, y0, rng.integers(x0 + 33, w + 40), rng.integers(y0 + 33, h + 40))
            image, (ox, oy) = jpeg.decode(buf, box)
            assert ox <= x0 and ox % 8 == 0 and oy == y0
            assert image.shape[:2] == (min(box[3], h) - oy, min(box[2], w) - ox)
            m = jpeg.REGION_MARGIN
            # Pixels at least a margin from a box edge that is not the image's edge.
            top, left = (m if oy > 0 else 0), (m if ox > x0 or x0 > 0 else 0)
            bottom = image.shape[0] - (m if oy + image.shape[0] < h else 0)
            right = image.shape[1] - (m if ox + image.shape[1] < w else 0)
            ref = full[oy : oy + image.shape[0], ox : ox + image.shape[1]]
            np.testing.assert_array_equal(
                image[top:bottom, left:right], ref[top:bottom, left:right]
            )
    assert subsamplings == {0, 2}  # 4:4:4 and 4:2:0 both exercised


@needs_turbojpeg
def test_train_crops_from_the_region_equal_the_whole_image_path(records):
    cfg = dataclasses.replace(transforms.AugmentConfig(), jitter_prob=0.0)
    region = dataclasses.replace(TRAIN, augment=cfg)
    whole = dataclasses.replace(region, decode_region=False)
    max_diff, changed = [], []
    for i in range(len(records)):
        for seed in range(4):
            a = region(records[i], np.random.default_rng([seed, i]))
            b = whole(records[i], np.random.default_rng([seed, i]))
            for key in ("heatmaps", "target_weight", "keypoints", "center", "scale"):
                np.testing.assert_array_equal(a[key], b[key])
            d = np.abs(a["image"].astype(int) - b["image"])
            max_diff.append(d.max())
            changed.append(np.mean(d > 0))
    # The decoded pixels are equal (test above); cv2's warp computes sample positions in float32,
    # so moving the origin by the box offset flips its 1/32-pixel rounding at a few positions.
    assert max(max_diff) <= 1 and max(changed) < 1e-3


def _grey_levels(a, b):
    return np.abs(a["image"].astype(int) - b["image"]).max()


def test_without_turbojpeg_the_same_examples(records, monkeypatch):
    expected = [TRAIN(records[i], np.random.default_rng(i)) for i in range(6)]
    evals = [EVAL(records[i]) for i in range(6)]
    monkeypatch.setattr(jpeg, "available", lambda: False)
    for i in range(6):
        got = TRAIN(records[i], np.random.default_rng(i))
        assert _grey_levels(got, expected[i]) <= 1
        np.testing.assert_array_equal(got["heatmaps"], expected[i]["heatmaps"])
        assert _grey_levels(EVAL(records[i]), evals[i]) <= 1


def test_png_and_crop_outside_the_image(records, tmp_path):
    """A non-JPEG file decodes with OpenCV; a crop wholly off the image is black, not an error."""
    image = _cv2(np.fromfile(records.image_paths[0], np.uint8))
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), image)
    png = EVAL(dict(records[0], image_path=str(path)))
    assert _grey_levels(png, EVAL(records[0])) <= 1
    off = dict(records[0], center=np.array([5000.0, 5000.0]))
    out = EVAL(off)
    assert out["image"].shape == (256, 192, 3) and not out["image"].any()
