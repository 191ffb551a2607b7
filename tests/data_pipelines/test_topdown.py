"""The top-down chains against the spec (2.2-2.4): the warp, flip, targets, jitter order, round trip."""

import dataclasses

import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, geometry, metainfo
from aggpose_jax.models import preprocess
from data_pipelines import augment, crop, sources, topdown, transforms

IN_HW, HM_HW = (256, 192), (64, 48)
CODEC = codecs.HeatmapCodec(IN_HW, HM_HW, sigma=2.0)
NO_AUG = transforms.AugmentConfig(
    half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=-1.0, jitter_prob=0.0
)


@pytest.fixture(scope="module")
def records():
    p = sources.sample_paths()
    return sources.load_coco_records(p.gt_json, p.image_root)


def _train(cfg, **kw):
    return topdown.TopdownTrainExample(metainfo.COCO, CODEC, cfg, **kw)


def _blob_image(xy, hw=(240, 320), sigma=3.0):
    xs, ys = np.meshgrid(np.arange(hw[1]), np.arange(hw[0]))
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
        "image": image, "image_hw": (240, 320), "image_is_bgr": True, "center": center,
        "scale": scale, "rotation": rotation, "keypoints": dot[None], "visibility": np.ones(1),
    }  # fmt: skip
    if flipped:  # the chain's flip step: joints and center mirrored, pixels left to the warp
        results.update(
            flipped=True, keypoints=np.array([[319 - dot[0], dot[1]]]),
            center=np.array([319 - center[0], center[1]]),
        )  # fmt: skip
    joint, center = results["keypoints"][0].copy(), results["center"]
    out = topdown.crop_affine(results, IN_HW)
    out = crop.warp(crop.decode_region(out, IN_HW), IN_HW)
    t = geometry.affine_transform_matrix(center, scale, rotation, output_hw=IN_HW)
    expected = geometry.apply_affine(joint, t)
    np.testing.assert_allclose(_centroid(out["image"]), expected, atol=0.05)
    np.testing.assert_allclose(out["keypoints"][0], expected, atol=1e-9)
    # The codec's heatmap pixels are the official T(out=heatmap) of the joint.
    t_hm = geometry.affine_transform_matrix(center, scale, rotation, output_hw=HM_HW)
    heatmap_keypoints = CODEC.to_heatmap(out["keypoints"])
    np.testing.assert_allclose(heatmap_keypoints[0], geometry.apply_affine(joint, t_hm))


def test_folded_flip_matches_flipping_the_pixels(records):
    cfg = dataclasses.replace(NO_AUG, flip_prob=1.0, rotation_prob=1.0)
    for i in range(3):
        a = _train(cfg)(records[i], np.random.default_rng(i))
        b = _train(cfg, jitter_on="image")(records[i], np.random.default_rng(i))
        assert a["flipped"]
        np.testing.assert_array_equal(a["heatmaps"], b["heatmaps"])
        # cv2 quantises sample positions to 1/32 px; the mirror changes that rounding only.
        assert np.abs(a["image"].astype(int) - b["image"]).max() <= 2


def test_targets_and_weights(records):
    rec = records[0]
    ex = _train(NO_AUG)(rec, np.random.default_rng(0))
    t_hm = geometry.affine_transform_matrix(rec["center"], rec["scale"], 0.0, output_hw=HM_HW)
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
    ex = _train(NO_AUG)(rec, np.random.default_rng(0))
    assert ex["target_weight"][3] == 0 and not ex["heatmaps"][..., 3].any()


def test_eval_crop_is_the_uint8_rgb_the_device_normalises(tmp_path):
    rgb = np.array([200, 100, 30], np.uint8)
    path = tmp_path / "flat.png"
    cv2.imwrite(str(path), np.broadcast_to(rgb[::-1], (50, 60, 3)).copy())  # BGR on disk
    rec = {"image_path": str(path), "image_id": 1, "center": np.array([30.0, 25.0]),
           "scale": np.array([0.1, 0.1 / 0.75]), "score": 1.0, "area": 1.0,
           "keypoints": np.zeros((17, 2)), "visibility": np.zeros(17)}  # fmt: skip
    ex = topdown.TopdownEvalExample(CODEC)(rec)
    assert ex["image"].dtype == np.uint8 and ex["rotation"] == 0
    np.testing.assert_array_equal(ex["image"][128, 96], rgb)  # RGB order, no normalisation
    expect = (rgb / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    normalised = preprocess.normalize_images(ex["image"][None])[0, 128, 96]
    np.testing.assert_allclose(normalised, expect, rtol=1e-6)


def test_jitter_on_crop_matches_the_official_order(records):
    """Same draws: jitter on the crop vs on the full image before the crop (the official order)."""
    cfg = dataclasses.replace(transforms.AugmentConfig(), jitter_prob=1.0, half_body_prob=0.0)
    diffs, mean_err = [], []
    for i in range(len(records)):
        for seed in range(3):
            a = _train(cfg)(records[i], np.random.default_rng([seed, i]))
            b = _train(cfg, jitter_on="image")(records[i], np.random.default_rng([seed, i]))
            np.testing.assert_array_equal(a["heatmaps"], b["heatmaps"])
            diffs.append(np.abs(a["image"].astype(float) - b["image"]).mean())
    # Bilinear interpolation does not commute exactly with clipping, truncation and the HSV
    # round trip; the images agree to about a grey level on average.
    assert np.mean(diffs) < 1.5 and np.max(diffs) < 3.0
    # The contrast mean from the 1/16 subsample is within one grey level of the full image's.
    for i in range(4):
        image = cv2.cvtColor(cv2.imread(records.image_paths[i * 3]), cv2.COLOR_BGR2RGB)
        s = crop.MEAN_SUBSAMPLE_STRIDE
        mean_err.append(
            augment.mean_grey(image) - augment.mean_grey(np.ascontiguousarray(image[::s, ::s]))
        )
    assert np.abs(mean_err).max() <= 1


def test_round_trip_on_the_real_sample(records):
    """Annotation -> target heatmap -> DARK decode -> inverse transform, augmentation off."""
    errors = []
    for i in range(len(records)):
        rec = records[i]
        ex = topdown.TopdownEvalExample(CODEC, with_targets=True)(rec)
        coords, _ = CODEC.decode(ex["heatmaps"][None])
        back = geometry.output_to_image_coords(
            coords, rec["center"][None], rec["scale"][None], output_hw=HM_HW
        )[0]
        t_hm = geometry.affine_transform_matrix(rec["center"], rec["scale"], 0.0, output_hw=HM_HW)
        mu = geometry.apply_affine(rec["keypoints"], t_hm)
        # DARK refines only off the border (1 < px < W - 2), and its blur sees the map's edge.
        inner = (ex["target_weight"] > 0) & np.all(
            (mu > 4) & (mu < np.array(HM_HW[::-1]) - 5), axis=1
        )
        errors.append(np.abs(back - rec["keypoints"])[inner])
    errors = np.concatenate(errors)
    assert len(errors) > 100 and errors.max() < 0.1


def test_the_examples_pickle_and_check_jitter_on():
    import pickle

    train = _train(NO_AUG)
    assert pickle.loads(pickle.dumps(train)) == train
    with pytest.raises(ValueError, match="jitter_on"):
        _train(NO_AUG, jitter_on="crops")
