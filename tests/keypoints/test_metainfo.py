import numpy as np
import pytest

from aggpose_jax.keypoints import metainfo


def test_coco_flip_pairs_match_the_official_list():
    expected = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    assert metainfo.COCO.flip_pairs == expected


def test_infant_flip_pairs_are_r_k_with_l_k():
    assert metainfo.INFANT.flip_pairs == tuple((i, i + 9) for i in range(9))
    flip = metainfo.INFANT.flip_indices
    assert list(flip[18:]) == [18, 19, 20]
    np.testing.assert_array_equal(flip[flip], np.arange(21))


def test_sigmas_and_body_halves():
    assert metainfo.COCO.sigmas_array[0] == pytest.approx(0.026)
    assert metainfo.INFANT.sigmas == (0.05,) * 21
    for fmt in (metainfo.COCO, metainfo.INFANT):
        halves = set(fmt.upper_body_ids) | set(fmt.lower_body_ids)
        assert halves == set(range(fmt.num_keypoints))
        assert not set(fmt.upper_body_ids) & set(fmt.lower_body_ids)
    assert len(metainfo.INFANT.skeleton) == 20


def test_format_from_coco_category(sample_dir):
    import json

    category = json.loads((sample_dir / "test_coco.json").read_text())["categories"][0]
    fmt = metainfo.format_from_coco_category(category, metainfo.COCO.sigmas)
    assert fmt.flip_pairs == metainfo.COCO.flip_pairs
    assert fmt.skeleton[0] == (15, 13)


def test_bad_format_is_a_clear_error():
    with pytest.raises(ValueError, match="sigmas"):
        metainfo.format_from_coco_category({"keypoints": ["a", "b"]}, (0.1,))
    with pytest.raises(KeyError, match="known"):
        metainfo.get_format("horse")
