"""Flip test, numpy vs jax decoding, and predict -> image coordinates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.evaluation import predict
from aggpose_jax.keypoints import codecs, geometry
from aggpose_jax.keypoints.metainfo import COCO, INFANT

IN_HW, HM_HW = (64, 48), (64, 48)


def _equivariant_predict_fn(flip_indices):
    """images -> heatmaps that commute with mirroring, up to the left/right channel swap.

    Channel j is channel 0 of the image rolled by d_j along W with d_j = flip[j] - j, so a left joint
    and its right partner roll in opposite directions; mirroring the input mirrors the output and
    swaps the partners. Input and heatmaps share the size here.
    """
    flip = np.asarray(flip_indices)
    shifts = flip - np.arange(len(flip))

    def fn(images):
        base = images[..., 0]
        return jnp.stack([jnp.roll(base, int(d), axis=2) for d in shifts], axis=-1)

    return fn


@pytest.mark.parametrize("fmt", [COCO, INFANT], ids=lambda f: f.name)
def test_flip_average_of_equivariant_fn_is_identity(fmt):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 16, 12, 3)).astype(np.float32)
    fn = _equivariant_predict_fn(fmt.flip_indices)
    plain = np.asarray(fn(images))
    averaged = np.asarray(predict.predict_heatmaps(fn, images, fmt.flip_indices))
    np.testing.assert_allclose(averaged, plain, atol=1e-6)
    # Without the channel swap the left/right channels come back wrong.
    identity = np.arange(fmt.num_keypoints)
    unswapped = np.asarray(predict.predict_heatmaps(fn, images, identity))
    paired = np.array([j for j in range(fmt.num_keypoints) if fmt.flip_indices[j] != j])
    assert np.abs(unswapped[..., paired] - plain[..., paired]).max() > 0.1


def test_flip_back_average_swaps_and_mirrors():
    rng = np.random.default_rng(1)
    hm = rng.uniform(size=(1, 4, 5, 17))
    flipped = rng.uniform(size=(1, 4, 5, 17))
    out = predict.flip_back_average(hm, flipped, COCO.flip_indices)
    # left_eye (1) takes the mirrored right_eye (2) map; the nose (0) keeps its own.
    np.testing.assert_allclose(out[0, :, :, 1], (hm[0, :, :, 1] + flipped[0, :, ::-1, 2]) / 2)
    np.testing.assert_allclose(out[0, :, :, 0], (hm[0, :, :, 0] + flipped[0, :, ::-1, 0]) / 2)
    # jax arrays take the same path.
    out_j = predict.flip_back_average(jnp.asarray(hm), jnp.asarray(flipped), COCO.flip_indices)
    np.testing.assert_allclose(np.asarray(out_j), out, rtol=1e-6)
    # HRNet's SHIFT_HEATMAP: the mirrored-back map moves one column right, column 0 kept.
    shifted = predict.flip_back_average(hm, flipped, COCO.flip_indices, shift=True)
    back = flipped[0, :, ::-1, 2]
    np.testing.assert_allclose(shifted[0, :, 1:, 1], (hm[0, :, 1:, 1] + back[:, :-1]) / 2)
    np.testing.assert_allclose(shifted[0, :, 0, 1], (hm[0, :, 0, 1] + back[:, 0]) / 2)
    shifted_j = predict.flip_back_average(
        jnp.asarray(hm), jnp.asarray(flipped), COCO.flip_indices, shift=True
    )
    np.testing.assert_allclose(np.asarray(shifted_j), shifted, rtol=1e-6)


def _noisy_gaussians(rng, b=2, k=17):
    kp = np.stack([rng.uniform(-1, 48, (b, k)), rng.uniform(-1, 64, (b, k))], -1)
    hm = np.stack(
        [codecs.encode_heatmaps(p, np.ones(k), heatmap_hw=HM_HW, sigma=2.0)[0] for p in kp]
    )
    hm = hm + 0.02 * rng.normal(size=hm.shape)
    hm[0, ..., 0] = -1.0
    return hm.astype(np.float32)


@pytest.mark.parametrize("method", codecs.DECODE_METHODS)
def test_numpy_and_jax_decoders_agree(method):
    rng = np.random.default_rng(2)
    hm = _noisy_gaussians(rng)
    coords, maxvals = codecs.decode_heatmaps(hm, method)
    # float32 on device: agreement to float32 rounding of the Newton step.
    coords_j, maxvals_j = predict.decode_heatmaps_jax(jnp.asarray(hm), method)
    np.testing.assert_allclose(np.asarray(coords_j), coords, atol=2e-3)
    np.testing.assert_allclose(np.asarray(maxvals_j), maxvals, rtol=1e-6)
    # 64-bit on device: the same numbers, also for pure noise (arbitrary Hessians).
    noise = rng.uniform(size=hm.shape)  # same shape: one compile
    with jax.enable_x64(True):
        for maps in (hm.astype(np.float64), noise):
            ref = codecs.decode_heatmaps(maps, method)
            got = predict.decode_heatmaps_jax(jnp.asarray(maps, dtype=jnp.float64), method)
            np.testing.assert_allclose(np.asarray(got[0]), ref[0], rtol=1e-9, atol=1e-9)
            np.testing.assert_array_equal(np.asarray(got[1]), ref[1])


def test_predict_keypoints_maps_back_to_image():
    rng = np.random.default_rng(3)
    b, k = 3, 17
    boxes = np.stack(
        [
            rng.uniform(0, 200, b),
            rng.uniform(0, 200, b),
            rng.uniform(60, 200, b),
            rng.uniform(80, 300, b),
        ],
        -1,
    )
    centers, scales = geometry.box_to_center_scale(boxes, 0.75)
    pts = boxes[:, None, :2] + rng.uniform(0.1, 0.9, (b, k, 2)) * boxes[:, None, 2:]
    maps = []
    for n in range(b):
        hm_pts = geometry.apply_affine(
            pts[n], geometry.affine_transform_matrix(centers[n], scales[n], 0.0, output_hw=HM_HW)
        )
        maps.append(codecs.encode_heatmaps(hm_pts, np.ones(k), heatmap_hw=HM_HW, sigma=2.0)[0])
    target = np.stack(maps)
    # An exactly flip-equivariant "model": the joints of a mirrored crop, mirrored and swapped.
    mirrored = target[:, :, ::-1, :][..., COCO.flip_indices]
    images = np.zeros((b, *IN_HW, 3), np.float32)
    images[:, :, : IN_HW[1] // 2, 0] = 1.0  # left half marked: tells the fn whether it sees a flip

    def fn(x):
        is_flipped = np.asarray(x)[:, 0, -1, 0] > 0.5
        return np.where(is_flipped[:, None, None, None], mirrored, target)

    for flip in (None, COCO.flip_indices):
        coords, maxvals = predict.predict_keypoints(
            fn, images, centers, scales, flip_indices=flip, heatmap_hw=HM_HW
        )
        assert coords.shape == (b, k, 2) and maxvals.shape == (b, k)
        assert np.abs(coords - pts).max() < 0.1
        assert np.all(maxvals > 0.9)
    with pytest.raises(ValueError, match="heatmap_hw"):
        predict.predict_keypoints(fn, images, centers, scales, heatmap_hw=(48, 64))

    # On device: the jitted flip + decode gives the same heatmap coordinates.
    def traced_fn(x):
        is_flipped = x[:, 0, -1, 0] > 0.5
        return jnp.where(is_flipped[:, None, None, None], mirrored, target)

    run = predict.make_device_predict(traced_fn, flip_indices=COCO.flip_indices)
    hm_coords, dev_maxvals = run(jnp.asarray(images))
    dev = geometry.output_to_image_coords(np.asarray(hm_coords), centers, scales, output_hw=HM_HW)
    np.testing.assert_allclose(dev, coords, atol=1e-2)
    np.testing.assert_allclose(np.asarray(dev_maxvals), maxvals, rtol=1e-6)
