"""The general init from a weights file: take, re-initialise, rename, either block layout, a report."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from aggpose_jax.models import build, convert
from aggpose_jax.training import init
from experiments.configs.common import MIT_BACKBONE


def test_init_from_keeps_the_reinit_head_fresh(tmp_path):
    rng = np.random.default_rng(0)
    coco = {"body": {"kernel": rng.normal(size=(4, 4)).astype(np.float32)},
            "final_layer": {"fc2": {"kernel": rng.normal(size=(4, 17)).astype(np.float32)}}}  # fmt: skip
    path = tmp_path / "coco.msgpack"
    path.write_bytes(serialization.msgpack_serialize(coco))  # a params file (no "params" level)
    fresh = {"params": {"body": {"kernel": jnp.zeros((4, 4))},
                        "final_layer": {"fc2": {"kernel": jnp.ones((4, 21))}}}}  # fmt: skip
    loaded = init.read_variables(str(path))
    variables, report = init.load_into(fresh, loaded, reinit="^params/final_layer/fc2/")
    np.testing.assert_array_equal(variables["params"]["body"]["kernel"], coco["body"]["kernel"])
    np.testing.assert_array_equal(
        variables["params"]["final_layer"]["fc2"]["kernel"], np.ones((4, 21))
    )
    assert report.reinitialised == ["params/final_layer/fc2/kernel"]
    assert report.loaded == ["params/body/kernel"] and report.ignored == [
        "params/final_layer/fc2/kernel"
    ]
    with pytest.raises(ValueError, match="init_reinit"):
        init.load_into(fresh, loaded)


def test_take_rename_and_model_state():
    rng = np.random.default_rng(1)
    saved = {"params": {"backbone": {"w": rng.normal(size=(3,)).astype(np.float32)}},
             "batch_stats": {"backbone": {"mean": rng.normal(size=(3,)).astype(np.float32)}}}  # fmt: skip
    fresh = {"params": {"w": np.zeros(3, np.float32), "head": np.zeros(2, np.float32)},
             "batch_stats": {"mean": np.zeros(3, np.float32)}}  # fmt: skip
    variables, report = init.load_into(
        fresh, saved, take="^(params/w|batch_stats/)",
        rename=(("^params/backbone/", "params/"), ("^batch_stats/backbone/", "batch_stats/")),
    )  # fmt: skip
    np.testing.assert_array_equal(variables["params"]["w"], saved["params"]["backbone"]["w"])
    np.testing.assert_array_equal(
        variables["batch_stats"]["mean"], saved["batch_stats"]["backbone"]["mean"]
    )
    assert report.fresh == ["params/head"] and report.ignored == []
    assert report.lines() == [
        "loaded: 2 tensors: batch_stats/mean (1), params/w (1)", "fresh: 1 tensors: params/head (1)"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="missing params/head"):
        init.load_into(fresh, saved, rename=(("/backbone/", "/"),))


def test_init_from_loads_either_block_group_layout(tmp_path):
    images = jnp.zeros((1, 128, 96, 3))
    unrolled = build.make_model("aggpose", "tiny", out_channels={"heatmaps": 17}, scan_blocks=False)
    shapes = jax.eval_shape(unrolled.init, jax.random.key(1), images)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    for saved_scanned, model in ((False, unrolled.clone(scan_blocks=True)), (True, unrolled)):
        path = tmp_path / f"params_{saved_scanned}.msgpack"
        convert.save_params(path, convert.stack_block_groups(params) if saved_scanned else params)
        fresh = jax.eval_shape(model.init, jax.random.key(2), images)
        fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fresh)
        loaded, report = init.load_into(fresh, init.read_variables(str(path)))
        assert report.reinitialised == [] and report.fresh == [] and report.ignored == []
        assert convert.has_scanned_groups(loaded) == model.scan_blocks
        assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
        jax.tree.map(
            np.testing.assert_array_equal, convert.unstack_block_groups(loaded["params"]), params
        )


def test_init_from_mit_fills_the_backbone_only(tmp_path):
    model = build.make_model("aggpose", "tiny", out_channels={"heatmaps": 17}, scan_blocks=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 128, 96, 3)))
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    rng = np.random.default_rng(0)
    official = convert.torch_names_from_params(fresh["params"])
    mit = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in official.items()
           if re.match(r"(patch_embed[1-4]|block[1-4]|norm[1-4])\.", k)}  # fmt: skip
    mit["head.weight"] = np.zeros((1000, 8), np.float32)  # An ImageNet head: ignored.
    np.savez(tmp_path / "mit.npz", **mit)
    loaded = init.read_variables(str(tmp_path / "mit.npz"))
    variables, report = init.load_into(fresh, loaded, take=MIT_BACKBONE)
    assert convert.has_scanned_groups(variables)
    got = convert.torch_names_from_params(variables["params"])
    taken = {k for k in mit if k != "head.weight"}
    assert len(report.loaded) == len(taken) and report.ignored == ["params/head/kernel"]
    # AggPose's own parts (extra groups, merges, head) stay fresh, and only they.
    assert {"params/final_layer/fc2/kernel", "params/block1_1/blocks/attn/q/kernel"} <= set(
        report.fresh
    )
    assert not any(re.search(MIT_BACKBONE, p) for p in report.fresh)
    for name, value in got.items():
        want = mit[name] if name in taken else np.zeros_like(value)
        np.testing.assert_array_equal(value, want, err_msg=name)
    bad = dict(mit, **{"block1.0.mlp.fc1.weight": np.zeros((3, 3), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="params/block1/blocks/mlp/fc1/kernel"):
        init.load_into(fresh, init.read_variables(str(tmp_path / "bad.npz")), take=MIT_BACKBONE)


def test_read_variables_of_a_run_folder(tmp_path):
    """A run's best/ (variables) and checkpoints/ (the whole state) read back as variables."""
    from aggpose_jax.training import checkpoint
    from aggpose_jax.training.state import TrainState

    variables = {"params": {"w": np.arange(3, dtype=np.float32)},
                 "batch_stats": {"mean": np.ones(2, np.float32)}}  # fmt: skip
    best = checkpoint.make_manager(tmp_path / "best", max_to_keep=1, async_save=False,
                                   best_metric="AP")  # fmt: skip
    checkpoint.save_best_variables(best, 7, variables, "AP", 0.5)
    best.close()
    state = TrainState(step=jnp.array(7), params=variables["params"],
                       model_state={"batch_stats": variables["batch_stats"]}, opt_state=(),
                       rng=jax.random.PRNGKey(0))  # fmt: skip
    ckpts = checkpoint.make_manager(tmp_path / "checkpoints", async_save=False)
    checkpoint.save_train_state(ckpts, 7, state, force=True)
    ckpts.close()
    for folder in ("best", "checkpoints", "best/7"):
        got = init.read_variables(str(tmp_path / folder))
        assert sorted(got) == ["batch_stats", "params"], folder
        jax.tree.map(np.testing.assert_array_equal, got, variables)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        init.read_variables(str(tmp_path / "nowhere"))
