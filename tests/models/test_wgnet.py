"""WGNet: the family contract, BatchNorm state, windows per map, and the paper's size and compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models import build, summary, wgnet


@pytest.fixture(scope="module")
def tiny():
    return build.make_model("wgnet", "tiny", out_channels={"heatmaps": 17})


@pytest.fixture(scope="module")
def tiny_eval(tiny):
    return jax.jit(tiny.apply)  # One compile per input shape, shared by the tests.


def random_variables(model, images, seed=0):
    """Variables of `model` drawn on the host from the shapes of its init (XLA:CPU would compile the
    random draws of each parameter shape separately, ~15 s for the tiny WGNet)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)
    rs = np.random.RandomState(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if name in ("['scale']", "['var']"):
            return np.ones(leaf.shape, np.float32)
        if name == "['mean']":
            return np.zeros(leaf.shape, np.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) or 1
        return (rs.randn(*leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("input_hw", [(64, 48), (128, 96)])
def test_tiny_forward_returns_heatmaps_at_a_quarter(tiny, tiny_eval, input_hw):
    images = jnp.asarray(np.random.RandomState(0).randn(2, *input_hw, 3), jnp.float32)
    variables = random_variables(tiny, images)
    assert set(variables) == {"params", "batch_stats"}
    out = tiny_eval(variables, images)
    assert set(out) == set(wgnet.OUTPUTS) == {"heatmaps"}
    assert out["heatmaps"].shape == (2, input_hw[0] // 4, input_hw[1] // 4, 17)
    assert out["heatmaps"].dtype == jnp.float32
    assert bool(jnp.isfinite(out["heatmaps"]).all())


def test_train_forward_updates_batch_stats_and_eval_uses_them(tiny, tiny_eval):
    images = jnp.asarray(np.random.RandomState(1).randn(2, 64, 48, 3) + 0.5, jnp.float32)
    variables = random_variables(tiny, images)
    train = jax.jit(lambda v, x: tiny.apply(v, x, train=True, mutable=["batch_stats"]))
    out, state = train(variables, images)
    assert out["heatmaps"].shape == (2, 16, 12, 17)
    old, new = variables["batch_stats"], state["batch_stats"]
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old, new))
    assert all(changed)  # Every running mean and variance moved.
    before = tiny_eval(variables, images)["heatmaps"]
    after = tiny_eval({**variables, "batch_stats": new}, images)["heatmaps"]
    assert float(jnp.abs(after - before).max()) > 0  # Eval reads the running statistics.


def test_windows_follow_the_map_at_256x192():
    """With bias tables on, their sizes show each block's window and grid: (2h - 1)(2w - 1) rows."""
    model = build.make_model("wgnet", "base", out_channels={"heatmaps": 17}, rel_pos_bias=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 256, 192, 3)))["params"]

    def rows(block, kind):
        return shapes[block][f"{kind}_attn"]["attn"]["rel_pos"][
            "relative_position_bias_table"
        ].shape[0]

    size = lambda hw: (2 * hw[0] - 1) * (2 * hw[1] - 1)  # noqa: E731
    expected = {  # block: (window, grid); maps 64x48, 32x24, 16x12, 8x6 and back up.
        "s1_wnet_0": ((16, 12), (4, 4)),
        "s2_wnet_1": ((8, 6), (4, 4)),
        "s3_wnet_0": ((4, 3), (4, 4)),
        "s4_wnet_0": ((2, 3), (4, 2)),
        "d1_wnet_0": ((4, 3), (4, 4)),
        "d3_wnet_1": ((16, 12), (4, 4)),
    }
    for block, (window_hw, grid_hw) in expected.items():
        assert (rows(block, "window"), rows(block, "grid")) == (size(window_hw), size(grid_hw))


def test_base_lands_on_the_papers_params_and_flops():
    """The paper: 5.8 M params, 3.6 GFLOPs (multiply-adds) at 256 x 192; we allow 10%."""
    row = summary.summarize("wgnet_base", 17, (256, 192))
    assert abs(row["params"] / 5.8e6 - 1) < 0.10, row["params"]
    assert abs(row["gmacs"] / 3.6 - 1) < 0.10, row["gmacs"]


def test_alpha_must_divide_16():
    model = build.make_model("wgnet", "tiny", out_channels={"heatmaps": 3})
    with pytest.raises(ValueError, match="alpha 3 must divide 16"):
        model.clone(alpha=3).init(jax.random.key(0), jnp.zeros((1, 64, 48, 3)))


def test_up_conv_is_torch_conv_transpose_2x2_stride_2():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(6, 5, 2, 2, bias=False)
    x = np.random.RandomState(2).randn(2, 6, 3, 4).astype(np.float32)
    with torch.no_grad():
        ref = up(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    kernel = up.weight.detach().numpy().transpose(2, 3, 0, 1)
    variables = {
        "params": {"kernel": kernel, "bn": {"scale": np.ones(5), "bias": np.zeros(5)}},
        "batch_stats": {"bn": {"mean": np.zeros(5), "var": np.ones(5) - 1e-5}},
    }
    out = wgnet.UpConv(5).apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(out, np.clip(ref, 0, 6), atol=1e-5)
