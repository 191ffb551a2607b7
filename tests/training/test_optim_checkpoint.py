"""The official schedule (one epoch early), and params-only init_from with a re-initialised head."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from aggpose_jax.training import checkpoint, optim


def test_multistep_one_epoch_early_as_the_official_loop():
    spe = 10
    s = optim.make_lr_schedule(base_lr=1e-3, total_steps=5000, steps_per_epoch=spe,
                               milestones_epochs=(170, 200, 240), one_epoch_early=True)  # fmt: skip
    lr_of_epoch = lambda e: float(s(e * spe))
    # 0-indexed epoch e uses lr * 0.1 ** (milestones <= e + 1): 1e-3 for 0-168, 1e-4 for 169-198...
    assert lr_of_epoch(168) == pytest.approx(1e-3)
    assert float(s(169 * spe - 1)) == pytest.approx(1e-3)
    assert lr_of_epoch(169) == pytest.approx(1e-4)
    assert lr_of_epoch(199) == pytest.approx(1e-5)
    assert lr_of_epoch(239) == pytest.approx(1e-6)
    textbook = optim.make_lr_schedule(base_lr=1e-3, total_steps=5000, steps_per_epoch=spe,
                                      milestones_epochs=(170,), one_epoch_early=False)  # fmt: skip
    assert float(textbook(169 * spe)) == pytest.approx(1e-3)
    assert float(textbook(170 * spe)) == pytest.approx(1e-4)


def test_warmup_and_cosine():
    s = optim.make_lr_schedule(base_lr=1.0, total_steps=110, steps_per_epoch=10, kind="cosine",
                               warmup_steps=10)  # fmt: skip
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(9)) == pytest.approx(1.0)
    assert float(s(110)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.make_lr_schedule(base_lr=1.0, total_steps=1, steps_per_epoch=1, kind="poly")


def test_init_from_keeps_the_reinit_head_fresh(tmp_path):
    rng = np.random.default_rng(0)
    coco = {"body": {"kernel": rng.normal(size=(4, 4)).astype(np.float32)},
            "final_layer": {"fc2": {"kernel": rng.normal(size=(4, 17)).astype(np.float32)}}}  # fmt: skip
    path = tmp_path / "coco.msgpack"
    path.write_bytes(serialization.msgpack_serialize(coco))
    fresh = {"body": {"kernel": jnp.zeros((4, 4))},
             "final_layer": {"fc2": {"kernel": jnp.ones((4, 21))}}}  # fmt: skip
    params, kept = checkpoint.load_init_params(str(path), fresh, reinit="final_layer/fc2")
    np.testing.assert_array_equal(params["body"]["kernel"], coco["body"]["kernel"])
    np.testing.assert_array_equal(params["final_layer"]["fc2"]["kernel"], np.ones((4, 21)))
    assert kept == ["final_layer/fc2/kernel"]
    with pytest.raises(ValueError, match="init_reinit"):
        checkpoint.load_init_params(str(path), fresh)


def test_non_finite_params_are_never_saved(tmp_path):
    from aggpose_jax.training.state import TrainState

    manager = checkpoint.make_manager(tmp_path / "ckpt", async_save=False)
    bad = TrainState(step=jnp.array(3), params={"w": jnp.array([1.0, jnp.nan])}, opt_state=(),
                     rng=jax.random.PRNGKey(0))  # fmt: skip
    with pytest.raises(FloatingPointError, match="step 3"):
        checkpoint.save_train_state(manager, 3, bad)
    assert manager.latest_step() is None


def test_init_from_loads_either_block_group_layout(tmp_path):
    from aggpose_jax.models import convert, variants

    images = jnp.zeros((1, 128, 96, 3))
    unrolled = variants.make_model("aggpose_tiny", 17)
    shapes = jax.eval_shape(unrolled.init, jax.random.key(1), images)["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    for saved_scanned, model in ((False, unrolled.clone(scan_blocks=True)), (True, unrolled)):
        path = tmp_path / f"params_{saved_scanned}.msgpack"
        convert.save_params(path, convert.stack_block_groups(params) if saved_scanned else params)
        fresh = jax.eval_shape(model.init, jax.random.key(2), images)["params"]
        fresh = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), fresh)
        loaded, kept = checkpoint.load_init_params(str(path), fresh)
        assert kept == [] and convert.has_scanned_groups(loaded) == model.scan_blocks
        assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
        jax.tree.map(np.testing.assert_array_equal, convert.unstack_block_groups(loaded), params)


def test_init_from_mit_fills_the_backbone_only(tmp_path):
    from aggpose_jax.models import convert, variants

    model = variants.make_model("aggpose_tiny", 17, scan_blocks=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 128, 96, 3)))["params"]
    fresh = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    rng = np.random.default_rng(0)
    official = convert.torch_names_from_params(jax.tree.map(np.asarray, fresh))
    mit = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in official.items()
           if re.match(r"(patch_embed[1-4]|block1|norm1)\.", k)}  # fmt: skip
    mit["head.weight"] = np.zeros((1000, 8), np.float32)  # An ImageNet head: ignored.
    np.savez(tmp_path / "mit.npz", **mit)
    params, report = checkpoint.load_mit_init(str(tmp_path / "mit.npz"), fresh)
    assert convert.has_scanned_groups(params)
    got = convert.torch_names_from_params(params)
    assert sorted(report["loaded"]) == sorted(k for k in mit if k != "head.weight")
    assert report["ignored"] == ["head.weight"]
    for name, value in got.items():
        want = mit[name] if name in report["loaded"] else np.zeros_like(value)
        np.testing.assert_array_equal(value, want, err_msg=name)
    bad = dict(mit, **{"block1.0.mlp.fc1.weight": np.zeros((3, 3), np.float32)})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match="block1.0.mlp.fc1.weight"):
        checkpoint.load_mit_init(str(tmp_path / "bad.npz"), fresh)
