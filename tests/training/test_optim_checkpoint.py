"""The official schedule (one epoch early), and checkpoints that refuse non-finite params."""

import jax
import jax.numpy as jnp
import pytest

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


def test_non_finite_params_are_never_saved(tmp_path):
    from aggpose_jax.training.state import TrainState

    manager = checkpoint.make_manager(tmp_path / "ckpt", async_save=False)
    bad = TrainState(step=jnp.array(3), params={"w": jnp.array([1.0, jnp.nan])}, model_state={},
                     opt_state=(), rng=jax.random.PRNGKey(0))  # fmt: skip
    with pytest.raises(FloatingPointError, match="step 3"):
        checkpoint.save_train_state(manager, 3, bad)
    assert manager.latest_step() is None


def test_cosine_to_a_floor_and_sgdr_restarts():
    # WGNet: cosine from 1e-3 to 1e-5 at epoch 170, then held to epoch 200.
    s = optim.make_lr_schedule(base_lr=1e-3, total_steps=2000, steps_per_epoch=10, kind="cosine",
                               min_lr=1e-5, decay_epochs=170)  # fmt: skip
    assert float(s(0)) == pytest.approx(1e-3)
    assert float(s(85 * 10)) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert float(s(170 * 10)) == pytest.approx(1e-5) and float(s(1999)) == pytest.approx(1e-5)
    # SGDR, T0 = 16 epochs, T_mult = 2: restarts at epochs 16 and 48, half-way points at 8 and 32.
    g = optim.make_lr_schedule(base_lr=1e-3, total_steps=1120, steps_per_epoch=10, kind="sgdr",
                               restart_epochs=16, restart_mult=2)  # fmt: skip
    lr = lambda epoch: float(g(round(epoch * 10)))
    assert lr(0) == lr(16) == lr(48) == pytest.approx(1e-3)
    assert lr(8) == pytest.approx(5e-4) and lr(32) == pytest.approx(5e-4)
    assert lr(16 - 0.1) < 1e-6 and lr(48 - 0.1) < 1e-6
    assert lr(80) == pytest.approx(5e-4)  # third cycle: 48 + 64 / 2
