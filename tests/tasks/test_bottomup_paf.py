"""The bottom-up task: masked L2 over stages, device peaks against the host peak finder, and predict ->
persons on encoded maps (with and without the flip test) returning the encoded people in image pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.keypoints import metainfo, part_fields
from aggpose_jax.tasks.bottomup_paf import BottomupPaf, device_peaks, masked_l2

INPUT_HW, STRIDE = (256, 192), 8
GRID = (32, 24)


def _people():
    """Two people, side by side, at input pixels of a 256 x 192 canvas (COCO-17)."""
    rng = np.random.RandomState(3)
    base = np.array([[24, 20], [27, 17], [21, 17], [31, 19], [17, 19], [36, 34], [12, 34],
                     [40, 50], [8, 50], [42, 64], [6, 64], [32, 70], [16, 70], [33, 92],
                     [15, 92], [34, 114], [14, 114]], np.float64)  # fmt: skip
    people = np.stack([2 * base, 2 * base + [96, 4]]) + rng.uniform(-1, 1, (2, 17, 2))
    return np.concatenate([people, np.full((2, 17, 1), 2.0)], axis=-1)


@pytest.fixture(scope="module")
def task():
    return BottomupPaf(metainfo.COCO)


def test_out_channels_and_masked_stage_loss(task):
    limbs = part_fields.limbs_for(metainfo.COCO)
    assert task.out_channels == {"heatmaps": 17, "pafs": 2 * len(limbs)}
    maps = part_fields.encode(_people(), input_hw=INPUT_HW, stride=STRIDE, limbs=limbs)
    hm, paf = jnp.asarray(maps["heatmaps"])[None], jnp.asarray(maps["pafs"])[None]
    mask = np.ones((1, *GRID), np.float32)
    mask[:, :, :12] = 0.0  # a crowd region: the left half
    batch = {"image": jnp.zeros((1, *INPUT_HW, 3), jnp.uint8), "heatmaps": hm, "pafs": paf,
             "mask": jnp.asarray(mask)}  # fmt: skip
    flat = paf.reshape(1, *GRID, -1)
    wrong_left = jnp.asarray(np.where(mask[..., None] > 0, 0.0, 5.0)).astype(jnp.float32)

    def apply(outputs):
        return lambda images: outputs

    exact = {"heatmaps": [hm, hm], "pafs": [flat, flat]}
    loss, metrics = task.loss(apply(exact), batch)
    assert float(loss) == 0.0 and set(metrics) == {"loss_heatmaps", "loss_pafs"}
    # Errors inside the crowd region carry no weight; outside they do, in every stage.
    masked = {"heatmaps": [hm + wrong_left, hm], "pafs": [flat + wrong_left, flat]}
    assert float(task.loss(apply(masked), batch)[0]) == 0.0
    off = {"heatmaps": [hm + 1.0, hm], "pafs": [flat, flat - 1.0]}
    loss, metrics = task.loss(apply(off), batch)
    np.testing.assert_allclose(float(loss), 2 * 0.5, rtol=1e-6)  # half the pixels weigh 1
    assert float(metrics["loss_heatmaps"]) == 0.0 and float(metrics["loss_pafs"]) > 0
    assert float(masked_l2(hm, hm + 2.0, jnp.ones((1, *GRID)))) == pytest.approx(4.0)


def test_device_peaks_match_the_host_finder():
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:40, 0:56]
    hm = np.zeros((40, 56, 3), np.float32)
    for k in range(3):
        for _ in range(4):
            cx, cy = rng.uniform(2, 53), rng.uniform(2, 37)
            bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
            hm[..., k] = np.maximum(hm[..., k], bump * rng.uniform(0.3, 1.0))
    got = np.asarray(jax.jit(lambda x: device_peaks(x, 0.1, 6, 4.0))(jnp.asarray(hm)[None]))[0]
    want = part_fields.find_peaks(hm, 0.1, stride=4, max_peaks=6)
    for k in range(3):
        g, w = got[k][got[k, :, 2] > 0], want[k][want[k, :, 2] > 0]
        g, w = g[np.argsort(-g[:, 2])], w[np.argsort(-w[:, 2])]
        np.testing.assert_allclose(g, w, atol=1e-4)


@pytest.mark.parametrize("flip_test", [False, True])
def test_encoded_maps_come_back_as_the_people(flip_test):
    """A fake model returns the encoded maps (mirrored for the mirrored image): predict on the
    device, then to_persons, gives the people in image pixels (the input is the image at x0.5)."""
    fmt = metainfo.COCO
    task = BottomupPaf(fmt, flip_test=flip_test)
    limbs = task.limbs
    people = _people()
    maps = part_fields.encode(people, input_hw=INPUT_HW, stride=STRIDE, limbs=limbs)
    hm, paf = maps["heatmaps"][None], maps["pafs"][None]
    fhm, fpaf = part_fields.flip_maps(hm, paf, fmt=fmt, limbs=limbs)
    images = np.random.RandomState(0).randint(0, 255, (1, *INPUT_HW, 3)).astype(np.uint8)

    def apply(x):
        mirrored = jnp.all(x == jnp.asarray(images[:, :, ::-1]))
        pick = lambda a, b: jnp.where(mirrored, jnp.asarray(b), jnp.asarray(a))  # noqa: E731
        return {"heatmaps": [pick(hm, fhm)], "pafs": [pick(paf, fpaf).reshape(1, *GRID, -1)]}

    predicted = jax.jit(lambda x: task.predict(apply, x))(jnp.asarray(images))
    predicted = jax.tree.map(np.asarray, predicted)
    assert predicted["peaks"].shape == (1, 17, 32, 3) and predicted["stride"][0] == STRIDE
    batch = {"image": images, "scale": np.array([0.5]), "offset": np.zeros((1, 2)),
             "image_id": np.array([7]), "record_index": np.array([0])}  # fmt: skip
    persons = task.to_persons(predicted, batch)
    assert len(persons) == 2 and set(persons.image_ids) == {7}
    order = np.argsort(persons.keypoints[:, 0, 0])
    np.testing.assert_allclose(persons.keypoints[order], people[..., :2] * 2, atol=0.1)
    assert (persons.keypoint_scores > 0.5).all() and (persons.box_scores == 1).all()
    # A padding row (valid False) gives no persons; a batch without offsets is a clear error.
    none = task.to_persons(predicted, dict(batch, valid=np.array([False])))
    assert len(none) == 0
    with pytest.raises(KeyError, match="offset"):
        task.to_persons(predicted, {k: v for k, v in batch.items() if k != "offset"})


def test_multi_scale_maps_are_resized_to_one_grid():
    """Scales 1 and 1.5: a fake model whose maps follow its input's size (stride 8); the averaged
    maps stay on the first scale's grid and give the same people."""
    task = BottomupPaf(metainfo.COCO, flip_test=False, scales=(1.0, 1.5))
    people = _people()
    maps = part_fields.encode(people, input_hw=INPUT_HW, stride=STRIDE, limbs=task.limbs)
    hm, paf = jnp.asarray(maps["heatmaps"])[None], jnp.asarray(maps["pafs"]).reshape(1, *GRID, -1)

    def apply(x):
        grid = (x.shape[1] // STRIDE, x.shape[2] // STRIDE)
        resize = lambda a: jax.image.resize(a, (1, *grid, a.shape[-1]), "linear")  # noqa: E731
        return {"heatmaps": [resize(hm)], "pafs": [resize(paf)]}

    images = jnp.zeros((1, *INPUT_HW, 3), jnp.uint8)
    predicted = jax.tree.map(np.asarray, jax.jit(lambda x: task.predict(apply, x))(images))
    assert predicted["heatmaps"].shape == (1, *GRID, 17) and predicted["stride"][0] == STRIDE
    batch = {"image": images, "scale": np.array([1.0]), "offset": np.zeros((1, 2)),
             "image_id": np.array([1]), "record_index": np.array([0])}  # fmt: skip
    persons = task.to_persons(predicted, batch)
    order = np.argsort(persons.keypoints[:, 0, 0])
    assert len(persons) == 2
    np.testing.assert_allclose(persons.keypoints[order], people[..., :2], atol=1.5)
