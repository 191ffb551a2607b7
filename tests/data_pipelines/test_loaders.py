"""grain loaders: batch shapes, epochs, sharding, determinism across workers, checkpoint restore."""

import dataclasses

import numpy as np
import pytest

from aggpose_jax.keypoints import codecs, metainfo
from data_pipelines import loaders, sources, topdown

CODEC = codecs.HeatmapCodec((64, 48), (16, 12), sigma=1.0)
TRAIN = topdown.TopdownTrainExample(metainfo.COCO, CODEC)
EVAL = topdown.TopdownEvalExample(CODEC)


@pytest.fixture(scope="module")
def records():
    p = sources.sample_paths()
    return sources.load_coco_records(p.gt_json, p.image_root, input_hw=(64, 48))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batches_epochs_and_reshuffle(records):
    loader = loaders.make_train_loader(records, TRAIN, batch_size=4, seed=5, num_epochs=2)
    batches = list(loader)
    assert len(batches) == 6 and loader.batches_per_epoch == 3
    b = batches[0]
    assert b["image"].shape == (4, 64, 48, 3) and b["image"].dtype == np.uint8
    assert b["heatmaps"].shape == (4, 16, 12, 17) and b["target_weight"].shape == (4, 17)
    assert b["center"].shape == (4, 2) and b["image_id"].dtype == np.int64
    order = np.concatenate([x["record_index"] for x in batches])
    e0, e1 = order[:12], order[12:]
    assert sorted(e0) == sorted(e1) == list(range(12))  # each epoch is a permutation
    assert not np.array_equal(e0, e1)  # reshuffled
    # A record's augmentation depends on (seed, epoch, index): epoch 1 differs from epoch 0.
    i0, i1 = int(np.where(e0 == 3)[0][0]), int(np.where(e1 == 3)[0][0])
    img0 = batches[i0 // 4]["image"][i0 % 4]
    img1 = batches[3 + i1 // 4]["image"][i1 % 4]
    assert not np.array_equal(img0, img1)


def test_shards_are_disjoint_equal_and_augment_alike(records):
    full = loaders.make_train_loader(records, TRAIN, batch_size=1, seed=9, num_epochs=1)
    full = {int(b["record_index"][0]): b for b in full}
    seen = []
    for shard in range(5):  # 12 records over 5 hosts: 2 each, 2 left out this epoch
        loader = loaders.make_train_loader(
            records, TRAIN, batch_size=1, seed=9, num_epochs=1, shard_index=shard, shard_count=5
        )
        batches = list(loader)
        assert len(batches) == 2
        for b in batches:
            r = int(b["record_index"][0])
            seen.append(r)
            np.testing.assert_array_equal(b["image"], full[r]["image"])
    assert len(set(seen)) == 10


def test_state_restore_gives_the_same_next_batches(records):
    loader = loaders.make_train_loader(records, TRAIN, batch_size=3, seed=1)
    it = iter(loader)
    _take(it, 5)
    state = it.get_state()
    expected = _take(it, 4)
    it2 = iter(loaders.make_train_loader(records, TRAIN, batch_size=3, seed=1))
    it2.set_state(state)
    _assert_same(_take(it2, 4), expected)


def test_state_restore_through_orbax(records, tmp_path):
    import grain
    import orbax.checkpoint as ocp

    it = iter(loaders.make_train_loader(records, TRAIN, batch_size=2, seed=4))
    _take(it, 3)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mngr.wait_until_finished()
        expected = _take(it, 3)
        it2 = iter(loaders.make_train_loader(records, TRAIN, batch_size=2, seed=4))
        mngr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
    _assert_same(_take(it2, 3), expected)


@pytest.mark.slow
def test_same_batches_with_0_1_2_workers_and_restore_with_workers(records):
    def make(workers):
        return loaders.make_train_loader(records, TRAIN, batch_size=5, seed=2, num_workers=workers)

    reference = _take(iter(make(0)), 6)
    for workers in (1, 2):
        it = iter(make(workers))
        got = _take(it, 3)
        state = it.get_state()
        got += _take(it, 3)
        it.close()
        _assert_same(got, reference)
    it = iter(make(2))
    it.set_state(state)
    _assert_same(_take(it, 3), reference[3:])
    it.close()


def test_eval_batches_pad_and_cover_every_record_once(records):
    seen = []
    for shard in range(2):
        loader = loaders.make_eval_batches(
            records, topdown.TopdownEvalExample(CODEC, with_targets=True), batch_size=4,
            shard_index=shard, shard_count=2,
        )  # fmt: skip
        batches = list(loader)
        assert len(batches) == loader.batches_per_epoch == 2  # 6 records per host in 4-batches
        for b in batches:
            assert b["image"].shape == (4, 64, 48, 3) and b["heatmaps"].shape == (4, 16, 12, 17)
            valid = b["valid"]
            assert (b["record_index"][~valid] == -1).all()
            assert not b["image"][~valid].any()
            seen += b["record_index"][valid].tolist()
            for j in np.where(valid)[0]:
                r = records[int(b["record_index"][j])]
                np.testing.assert_array_equal(b["center"][j], r["center"])
                assert b["image_id"][j] == r["image_id"]
    assert sorted(seen) == list(range(12))


def test_eval_padding_is_black_uint8(records):
    ev = list(loaders.make_eval_batches(records, EVAL, batch_size=5))
    assert all(b["image"].dtype == np.uint8 for b in ev)
    assert ev[-1]["image"][:2].any() and not ev[-1]["image"][2:].any()  # 12 = 5 + 5 + 2


def test_eval_batches_are_the_same_with_worker_processes(records):
    kw = dict(batch_size=5, shard_index=1, shard_count=2)
    make = lambda workers: list(loaders.make_eval_batches(records, EVAL, num_workers=workers, **kw))  # noqa: E731
    reference, with_workers = make(0), make(2)
    assert len(reference) == len(with_workers) == 2  # 6 records of host 1 in 5-batches
    for a, b in zip(reference, with_workers, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@dataclasses.dataclass(frozen=True)
class _BoxOnly:
    """An example function of another chain: no image, no heatmaps; the loaders take it alike."""

    def __call__(self, record, rng=None):
        noise = np.float32(0.0) if rng is None else np.float32(rng.standard_normal())
        return {"center": np.asarray(record["center"], np.float64), "noise": noise}

    def padding(self, records):
        return {"center": np.zeros(2, np.float64), "noise": np.float32(0.0)}


def test_loaders_take_any_example_function(records):
    train = list(loaders.make_train_loader(records, _BoxOnly(), batch_size=4, seed=3, num_epochs=1))
    assert len(train) == 3 and set(train[0]) == {"center", "noise", "record_index"}
    for b in train:
        for j, r in enumerate(b["record_index"]):
            np.testing.assert_array_equal(b["center"][j], records[int(r)]["center"])
            rng = np.random.default_rng([3, 0, int(r)])  # the [seed, epoch, record index] stream
            assert b["noise"][j] == np.float32(rng.standard_normal())
    ev = list(loaders.make_eval_batches(records, _BoxOnly(), batch_size=5))
    assert set(ev[0]) == {"center", "noise", "record_index", "valid"}
    assert ev[-1]["valid"].tolist() == [True, True, False, False, False]
