"""One step end to end for the tiny variant of every experiment: the real model, the real data pipeline
on the bundled sample, 8 fake devices, checkpoint, and (for aggpose_l) evaluation and pictures."""

import json

import pytest

from experiments import run

# Run for one step each: the two distinct tiny models. The other experiments' tiny variants build the
# same aggpose_tiny model; their whole train step is traced abstractly below (no compile).
RUN_ONE_STEP = ["aggpose_l", "segformer_b5_pose"]
TRACE_ONLY = ["aggpose_s", "aggpose_l_384", "aggpose_l_infant"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # The aggpose tiny variants share one model: a compilation cache makes the later ones cheap.
    return tmp_path_factory.mktemp("xla_cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_ONE_STEP)
def test_tiny_variant_runs_one_step(name, tmp_path, cache_dir):
    full = name == "aggpose_l"
    argv = [
        f"--exp={name}:tiny", f"--workdir={tmp_path}", f"--jax_cache_dir={cache_dir}",
        "--config.train.total_steps=1", "--config.train.steps_per_epoch=1",
        "--config.log.progress_bar=False", f"--config.eval.enabled={full}",
        "--config.eval.render=True", "--config.eval.flip_test=False",
        # The tiny recipe's batch of 12 does not split over 8 devices.
        "--config.train.global_batch_size=8", "--config.eval.batch_size=8",
    ]  # fmt: skip
    assert run.main(argv) == 0
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert train[-1]["step"] == 1 and train[-1]["train/loss"] > 0
    assert (tmp_path / "checkpoints" / "1" / "state").is_dir()
    assert (tmp_path / "checkpoints" / "1" / "data_iter").is_dir()
    assert json.loads((tmp_path / "config.json").read_text())["exp_name"] == name
    if full:
        ap = [r["eval/AP"] for r in records if "eval/AP" in r]
        assert len(ap) == 1 and 0.0 <= ap[0] <= 1.0
        assert (tmp_path / "results" / "keypoints_val.json").exists()
        assert list(tmp_path.glob("poses_*.png")) and list(tmp_path.glob("heatmaps_*.png"))
        assert (tmp_path / "loss_curve.png").exists()
        assert (tmp_path / "best").is_dir()


@pytest.mark.parametrize("name", TRACE_ONLY)
def test_tiny_variant_train_step_traces(name):
    import jax
    import jax.numpy as jnp

    from aggpose_jax.keypoints import metainfo
    from aggpose_jax.training import optim, steps, trainer
    from aggpose_jax.training.state import make_init_fn

    config = run.load_config(f"{name}:tiny")
    model = trainer.make_model_from_config(config)
    schedule = optim.make_lr_schedule(base_lr=config.optim.lr, total_steps=10, steps_per_epoch=5)
    tx = optim.make_optimizer(schedule, weight_decay=config.optim.weight_decay)
    state = jax.eval_shape(
        make_init_fn(model, tx, tuple(config.data.input_hw)), jax.random.PRNGKey(0)
    )
    b, (h, w) = 8, config.data.input_hw
    k = metainfo.get_format(config.data.keypoint_format).num_keypoints
    batch = {
        "image": jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32),
        "heatmaps": jax.ShapeDtypeStruct((b, h // 4, w // 4, k), jnp.float32),
        "target_weight": jax.ShapeDtypeStruct((b, k), jnp.float32),
    }
    new_state, metrics = jax.eval_shape(steps.make_train_step(model, tx, schedule), state, batch)
    assert metrics["loss"].shape == () and new_state.step.dtype == jnp.int32
    assert jax.tree.structure(new_state.params) == jax.tree.structure(state.params)
