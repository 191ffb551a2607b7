"""One step end to end for the tiny variant of every experiment config: the real model, the real data
pipeline on the bundled sample, 8 fake devices, checkpoint, and (for aggpose_l) evaluation and pictures."""

import json

import jax
import pytest

from experiments import run

EXPERIMENTS = run.known_experiments()  # every config: a new one is covered by default


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # The aggpose tiny variants share one model: a compilation cache makes the later ones cheap.
    return tmp_path_factory.mktemp("xla_cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
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


@pytest.mark.slow
def test_batchnorm_family_resumes_bit_exactly(tmp_path, cache_dir):
    """HRNet-tiny (BatchNorm state) on 8 fake devices: 2 steps straight equal 1 step, stop, resume."""
    import numpy as np

    from aggpose_jax.training import init

    def train(workdir, steps):
        argv = [
            "--exp=hrnet_w32:tiny", f"--workdir={workdir}", f"--jax_cache_dir={cache_dir}",
            f"--config.train.total_steps={steps}", "--config.train.steps_per_epoch=1",
            "--config.train.checkpoint_every_steps=1", "--config.log.progress_bar=False",
            "--config.eval.enabled=False", "--config.train.global_batch_size=8",
            "--config.train.async_checkpointing=False",
        ]  # fmt: skip
        assert run.main(argv) == 0

    train(tmp_path / "straight", 2)
    train(tmp_path / "resumed", 1)
    train(tmp_path / "resumed", 2)
    a = init.read_variables(str(tmp_path / "straight" / "checkpoints" / "2"))
    b = init.read_variables(str(tmp_path / "resumed" / "checkpoints" / "2"))
    assert set(a) == {"params", "batch_stats"}
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_bottomup_resumes_bit_exactly(tmp_path, cache_dir):
    """MLN-tiny on the whole-image chain, 8 fake devices: 2 steps straight equal 1 step, stop, resume
    (the train step comes from the one-step test's compilation cache)."""
    import numpy as np

    from aggpose_jax.training import init

    def train(workdir, steps):
        argv = [
            "--exp=mln_coco:tiny", f"--workdir={workdir}", f"--jax_cache_dir={cache_dir}",
            f"--config.train.total_steps={steps}", "--config.train.steps_per_epoch=1",
            "--config.train.checkpoint_every_steps=1", "--config.log.progress_bar=False",
            "--config.eval.enabled=False", "--config.train.global_batch_size=8",
            "--config.train.async_checkpointing=False", "--config.data.augment=official",
        ]  # fmt: skip
        assert run.main(argv) == 0

    train(tmp_path / "straight", 2)
    train(tmp_path / "resumed", 1)
    train(tmp_path / "resumed", 2)
    a = init.read_variables(str(tmp_path / "straight" / "checkpoints" / "2"))
    b = init.read_variables(str(tmp_path / "resumed" / "checkpoints" / "2"))
    assert set(a) == {"params"} and "refine_limb" in a["params"]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
