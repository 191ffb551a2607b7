"""Sharded train steps (data=8; data=4 x fsdp=2) match the single-device step, BatchNorm statistics
included; FSDP rules; mesh; host calls of jitted functions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_models import ConvNet

from aggpose_jax import runtime as sharding
from aggpose_jax.keypoints.metainfo import COCO
from aggpose_jax.tasks.topdown_heatmap import TopdownHeatmap, joints_mse_loss
from aggpose_jax.training import optim, steps
from aggpose_jax.training.setup import make_apply
from aggpose_jax.training.state import make_init_fn

TASK = TopdownHeatmap(COCO)  # its loss is the K-agnostic JointsMSE; the test net has K = 5


def _init_fn(model, tx):
    return make_init_fn(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False), tx)


def _batch(seed=0, b=8):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, size=(b, 32, 32, 3), dtype=np.uint8),
        "heatmaps": rng.uniform(size=(b, 8, 8, 5)).astype(np.float32),
        "target_weight": (rng.uniform(size=(b, 5)) > 0.3).astype(np.float32),
    }


def _run(mesh, n_steps=3, accum=1, model=None):
    model = model or ConvNet(drop=0.2)
    schedule = optim.make_lr_schedule(base_lr=1e-2, total_steps=10, steps_per_epoch=2,
                                      milestones_epochs=(1,))  # fmt: skip
    tx = optim.make_optimizer(schedule)
    init = _init_fn(model, tx)
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    shard = sharding.infer_shardings(abstract, mesh, min_size=1024)
    state = jax.jit(init, out_shardings=shard)(jax.random.PRNGKey(0))
    step = steps.jit_train_step(
        steps.make_train_step(make_apply(model), TASK, tx, schedule, grad_accum_steps=accum),
        shard, mesh,
    )  # fmt: skip
    losses = []
    for i in range(n_steps):
        state, m = step(state, sharding.make_global_batch(_batch(i), mesh))
        losses.append(float(m["loss"]))
    return losses, jax.device_get(state.variables), shard


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2)])
def test_sharded_step_matches_single_device(data, fsdp):
    ref_losses, ref_params, _ = _run(sharding.make_mesh(1, 1, jax.devices()[:1]))
    losses, params, shard = _run(sharding.make_mesh(data, fsdp))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if fsdp > 1:
        specs = [s.spec for s in jax.tree.leaves(shard.params)]
        assert any("fsdp" in tuple(s) for s in specs)  # the 64x64x3x3 kernel is split


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2)])
def test_batchnorm_statistics_are_global_over_the_sharded_batch(data, fsdp):
    """Batch statistics of 8 devices (1 sample each) equal one device's over the whole batch."""
    model = ConvNet(drop=0.0, batch_norm=True)
    one = sharding.make_mesh(1, 1, jax.devices()[:1])
    # One step from the same init: the running statistics come from the same global batch.
    _, ref_vars, _ = _run(one, n_steps=1, model=model)
    _, variables, _ = _run(sharding.make_mesh(data, fsdp), n_steps=1, model=model)
    stats, ref_stats = variables["batch_stats"], ref_vars["batch_stats"]
    assert jax.tree.structure(stats) == jax.tree.structure(ref_stats)
    for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(ref_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(stats["BatchNorm_0"]["mean"], 0.0)  # they moved from their init
    # Three steps: the training (which normalises with batch statistics) follows the one device's.
    ref_losses, ref_vars, _ = _run(one, model=model)
    losses, variables, _ = _run(sharding.make_mesh(data, fsdp), model=model)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    # Params to reduction-order rounding (the normalisation's backward adds ~1e-5 over 3 steps).
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(ref_vars), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_grad_accumulation_matches_one_big_batch():
    # Without dropout (masks are drawn per micro-batch) 2 x 4 samples give the update of 1 x 8.
    mesh = sharding.make_mesh(4, 2)
    l1, p1, _ = _run(mesh, n_steps=2, accum=1, model=ConvNet(drop=0.0))
    l2, p2, _ = _run(mesh, n_steps=2, accum=2, model=ConvNet(drop=0.0))
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fsdp_spec_largest_divisible_dim_and_small_replicated():
    assert sharding.fsdp_spec((3, 3, 64, 128), 4, 1) == jax.sharding.PartitionSpec(
        None, None, None, "fsdp"
    )
    assert sharding.fsdp_spec((3, 3, 64, 127), 4, 1)[2] == "fsdp"
    assert sharding.fsdp_spec((10,), 4, 1) == jax.sharding.PartitionSpec()
    assert sharding.fsdp_spec((4096, 4096), 4, 2**30) == jax.sharding.PartitionSpec()


def test_rules_first_match_wins_and_unknown_rule_fails():
    mesh = sharding.make_mesh(4, 2)
    tree = {"head": {"kernel": jax.ShapeDtypeStruct((64, 64), jnp.float32)},
            "body": {"kernel": jax.ShapeDtypeStruct((64, 64), jnp.float32)}}  # fmt: skip
    sh = sharding.infer_shardings(
        tree, mesh, rules=(("head", "replicate"), ("", "fsdp")), min_size=1
    )
    assert sh["head"]["kernel"].spec == jax.sharding.PartitionSpec()
    assert "fsdp" in tuple(sh["body"]["kernel"].spec)
    with pytest.raises(ValueError, match="unknown sharding rule"):
        sharding.infer_shardings(tree, mesh, rules=(("", "tp"),))


def test_make_mesh_fill_and_mismatch():
    assert dict(sharding.make_mesh(-1, 2).shape) == {"data": 4, "fsdp": 2}
    assert dict(sharding.make_mesh(2, -1).shape) == {"data": 2, "fsdp": 4}
    with pytest.raises(ValueError, match="does not match"):
        sharding.make_mesh(3, 2)


def test_optimizer_is_torch_adamw_one_step():
    # torch.optim.AdamW(lr, wd 0.01): p <- p - lr*wd*p - lr * m_hat / (sqrt(v_hat) + eps)
    p, g, lr = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.25]), 1e-3
    tx = optim.make_optimizer(optax.constant_schedule(lr))
    upd, _ = tx.update(g, tx.init(p), p)
    expected = p - lr * 0.01 * p - lr * g / (jnp.abs(g) + 1e-8)
    np.testing.assert_allclose(p + upd, expected, rtol=1e-6)


def test_steps_normalise_uint8_images_on_the_device():
    """The train and predict steps take the loaders' uint8 RGB and normalise it once."""
    mesh = sharding.make_mesh(8, 1)
    model = ConvNet(drop=0.0)
    schedule = optax.constant_schedule(1e-3)
    tx = optim.make_optimizer(schedule)
    state = _init_fn(model, tx)(jax.random.PRNGKey(0))
    batch = _batch(0)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    floats = ((batch["image"] / 255.0 - mean) / std).astype(np.float32)
    expected = model.apply({"params": state.params}, floats)["heatmaps"]
    predict = _host_predict(model, mesh)
    np.testing.assert_allclose(predict(state.variables, batch["image"]), expected, atol=1e-5)
    expected_loss = joints_mse_loss(expected, batch["heatmaps"], batch["target_weight"])
    step = jax.jit(steps.make_train_step(make_apply(model), TASK, tx, schedule))
    _, metrics = step(state, batch)
    np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        step(state, dict(batch, image=floats))


def _host_predict(model, mesh):
    apply = make_apply(model)
    return sharding.make_host_fn(lambda v, x: apply(v, x)["heatmaps"], mesh)


@pytest.mark.parametrize("rows", [1, 3, 8, 11])
def test_predict_takes_any_number_of_rows(rows):
    """Rows that do not split over the 8 devices are padded, predicted and trimmed."""
    mesh = sharding.make_mesh(4, 2)
    model = ConvNet(drop=0.0)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    images = _batch(1, b=rows)["image"]
    floats = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    expected = model.apply({"params": params}, floats.astype(np.float32))["heatmaps"]
    got = _host_predict(model, mesh)({"params": params}, images)
    assert got.shape == (rows, 8, 8, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
