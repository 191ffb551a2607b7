"""Bottom-up chains: targets of the transformed people, loss masks, flips, determinism, eval inverse."""

import json

import cv2
import numpy as np
import pytest

from aggpose_jax.keypoints import geometry, metainfo, part_fields
from data_pipelines import bottomup, image_records, loaders, sources, synthetic

INPUT_HW = (192, 256)
TRAIN = bottomup.BottomupTrainExample(metainfo.COCO, input_hw=INPUT_HW, stride=8)


@pytest.fixture(scope="module")
def sample():
    p = sources.sample_paths()
    return image_records.load_coco_images(p.gt_json, p.image_root, fmt=metainfo.COCO)


@pytest.fixture(scope="module")
def crowded(sample):
    """A sample image with a large crowd region, stored as COCO stores crowds (uncompressed RLE)."""
    record = sample[0]
    h, w = record["image_hw"]
    region = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        region, (int(w * 0.6), int(h * 0.5)), (int(w * 0.25), int(h * 0.3)), 20, 0, 360, 1, -1
    )
    record["ignore"] = (synthetic.rle_from_mask(region.astype(bool)),)
    return record, region


def test_records_keep_people_with_keypoints_and_ignore_the_rest(sample):
    assert len(sample) == 4 and sample.num_keypoints == 17
    by_id = {int(i): sample[n] for n, i in enumerate(sample.image_ids)}
    # 40083 and 196141 each have one person annotated without keypoints: an ignore polygon.
    assert by_id[40083]["keypoints"].shape == (2, 17, 3) and len(by_id[40083]["ignore"]) == 1
    assert by_id[785]["keypoints"].shape == (1, 17, 3) and by_id[785]["ignore"] == ()
    mask = image_records.ignore_mask(by_id[40083]["ignore"], image_hw=(333, 500))
    gt = json.loads(sources.sample_paths().gt_json.read_text())
    area = next(
        a["area"] for a in gt["annotations"] if a["image_id"] == 40083 and not a["num_keypoints"]
    )
    assert mask.dtype == np.uint8 and abs(int(mask.sum()) - area) < 0.1 * area


def test_train_example_is_deterministic_and_shaped(sample):
    record = sample[1]
    a = TRAIN(record, np.random.default_rng([0, 0, 1]))
    b = TRAIN(record, np.random.default_rng([0, 0, 1]))
    c = TRAIN(record, np.random.default_rng([0, 1, 1]))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["image"], c["image"])
    num_limbs = len(part_fields.limbs_for(metainfo.COCO))
    assert a["image"].shape == (192, 256, 3) and a["image"].dtype == np.uint8
    assert a["heatmaps"].shape == (24, 32, 17) and a["heatmaps"].dtype == np.float32
    assert a["pafs"].shape == (24, 32, num_limbs, 2) and a["pafs"].dtype == np.float32
    assert a["mask"].shape == (24, 32) and a["mask"].dtype == np.float32


def test_targets_group_back_to_the_annotated_people(sample):
    """No augmentation: the maps of the example group to the record's people, mapped through
    the example's affine (within a pixel: peaks are refined to sub-pixel precision)."""
    chain = bottomup.BottomupTrainExample(
        metainfo.COCO, input_hw=(320, 480), stride=8, augment=bottomup.NO_AUGMENT
    )
    record = next(sample[i] for i in range(len(sample)) if sample[i]["image_id"] == 197388)
    example = chain(record, np.random.default_rng(0))
    matrix, _ = bottomup.train_affine(
        tuple(record["image_hw"]), np.zeros(5) + 0.5, bottomup.NO_AUGMENT, input_hw=(320, 480)
    )
    truth = bottomup.transform_people(record["keypoints"], matrix, metainfo.COCO, flipped=False)
    people, _ = part_fields.group(example["heatmaps"], example["pafs"], limbs=chain.limbs, stride=8)
    found = 0
    for kp in truth:
        vis = kp[:, 2] > 0
        d = np.linalg.norm(people[:, :, :2] - kp[None, :, :2], axis=-1)
        found += np.max(((d < 1.0) & (people[:, :, 2] > 0))[:, vis].sum(axis=1))
    assert found >= 0.9 * (truth[:, :, 2] > 0).sum()


def _cells_inside(region: np.ndarray, matrix: np.ndarray, input_hw, stride) -> np.ndarray:
    """(h, w) bool: cells whose whole stride x stride block maps into the region."""
    h, w = input_hw[0] // stride, input_hw[1] // stride
    inverse = geometry.invert_affine(matrix)
    inside = np.ones((h, w), bool)
    for dy in range(stride):
        for dx in range(stride):
            px = np.arange(w) * stride + dx
            py = np.arange(h) * stride + dy
            grid = np.stack(np.meshgrid(px, py), axis=-1).astype(np.float64)
            src = np.rint(geometry.apply_affine(grid, inverse)).astype(int)
            ok = (src[..., 0] >= 0) & (src[..., 0] < region.shape[1])
            ok &= (src[..., 1] >= 0) & (src[..., 1] < region.shape[0])
            sx = np.clip(src[..., 0], 0, region.shape[1] - 1)
            sy = np.clip(src[..., 1], 0, region.shape[0] - 1)
            inside &= ok & (region[sy, sx] > 0)
    return inside


def test_crowd_regions_carry_zero_loss_weight(crowded):
    record, region = crowded
    for n in range(4):  # scaled, rotated, shifted, flipped
        example = TRAIN(record, np.random.default_rng([0, 0, n]))
        draws = bottomup.draw_augmentation(np.random.default_rng([0, 0, n]))
        matrix, _ = bottomup.train_affine(
            tuple(record["image_hw"]), draws, TRAIN.augment, input_hw=INPUT_HW
        )
        inside = _cells_inside(region, matrix, INPUT_HW, 8)
        outside = _cells_inside(1 - region, matrix, INPUT_HW, 8)
        assert inside.sum() >= 10 and outside.sum() >= 10
        assert np.all(example["mask"][inside] == 0)
        assert np.all(example["mask"][outside] == 1)


def test_flip_mirrors_the_image_and_swaps_joints_and_limbs(sample):
    record = sample[2]
    draws = np.array([0.3, 0.6, 0.4, 0.55, 0.0])  # flip_u 0 < flip_prob: flipped
    image_hw = tuple(record["image_hw"])
    out = {}
    for flip_u in (0.0, 0.99):
        d = draws.copy()
        d[4] = flip_u

        class Fixed:  # a generator whose draws are `d`
            def random(self, n, d=d):
                return d[:n]

        out[flip_u] = TRAIN(record, Fixed())
    flipped, plain = out[0.0], out[0.99]
    assert flipped["flipped"] and not plain["flipped"]
    diff = np.abs(flipped["image"].astype(int) - plain["image"][:, ::-1].astype(int))
    assert diff.mean() < 1.0
    hm, paf = part_fields.flip_maps(
        plain["heatmaps"], plain["pafs"], fmt=metainfo.COCO, limbs=TRAIN.limbs
    )
    np.testing.assert_allclose(flipped["heatmaps"], hm, atol=1e-5)
    np.testing.assert_allclose(flipped["pafs"], paf, atol=1e-5)
    np.testing.assert_array_equal(flipped["mask"], plain["mask"][:, ::-1])
    assert bottomup.train_affine(image_hw, draws, TRAIN.augment, input_hw=INPUT_HW)[1]


def test_loader_resumes_bottom_up_batches_from_its_state(sample):
    def take(it, n):
        return [next(it) for _ in range(n)]

    loader = loaders.make_train_loader(sample, TRAIN, batch_size=2, seed=4)
    it = iter(loader)
    take(it, 3)
    state = it.get_state()
    expected = take(it, 2)
    again = iter(loaders.make_train_loader(sample, TRAIN, batch_size=2, seed=4))
    again.set_state(state)
    for x, y in zip(take(again, 2), expected, strict=True):
        assert x.keys() == y.keys() and x["mask"].shape == (2, 24, 32)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_eval_example_keeps_the_aspect_and_maps_back_to_image_pixels(sample):
    chain = bottomup.BottomupEvalExample(input_hw=(368, 496), stride=8)
    for i in range(len(sample)):
        record = sample[i]
        example = chain(record)
        h, w = record["image_hw"]
        scale = float(example["scale"])
        assert scale == pytest.approx(min(368 / h, 496 / w))
        assert example["image"].shape == (368, 496, 3)
        # round trip of the record's joints: image -> input -> image
        kp = record["keypoints"][..., :2]
        back = bottomup.input_to_image(kp * scale + example["offset"], scale, example["offset"])
        np.testing.assert_allclose(back, kp, atol=1e-9)
        # the pixels agree: the input at a point shows the image at its inverse
        image = cv2.cvtColor(cv2.imread(record["image_path"]), cv2.COLOR_BGR2RGB)
        ys, xs = np.mgrid[40 : int(h * scale) - 40 : 37, 40 : int(w * scale) - 40 : 41]
        src = bottomup.input_to_image(np.stack([xs, ys], -1), scale, example["offset"])
        sampled = cv2.remap(
            image, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32),
            cv2.INTER_LINEAR,
        )  # fmt: skip
        diff = np.abs(sampled.astype(int) - example["image"][ys, xs].astype(int))
        assert np.median(diff) <= 3
        # the padding is black
        assert not example["image"][int(np.ceil(h * scale)) + 1 :].any()
        assert not example["image"][:, int(np.ceil(w * scale)) + 1 :].any()
    blank = chain.padding(sample)
    assert blank.keys() == example.keys() and blank["image_id"] == -1
