"""Window and grid attention: parity with peer implementations, and the trivial sizes.

Oracles: timm's MaxViT partition attention (`PartitionAttentionCl`, block and grid) and Hugging Face
transformers' Swin window attention. timm is installed without its dependencies (the README's test
command: `pip install --no-deps timm`): it requires torchvision, whose PyPI wheels are built for the
CUDA torch and fail to import beside the CPU torch 2.13.0 (taking transformers' Segformer oracle down
with them). timm's modules import a few torchvision names at load time (FrozenBatchNorm2d,
transforms) that its attention never calls, so `_import_timm_maxxvit` answers those imports with
placeholders while it loads timm, and removes them at once. Grid attention is window attention on a
permuted map, which is tested too.
"""

import importlib.abc
import importlib.machinery
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models.blocks import window

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.models.swin import modeling_swin  # noqa: E402

CHANNELS, HEADS = 32, 4
HEAD_DIM = CHANNELS // HEADS


class _Placeholder(type):
    """Any attribute of a placeholder torchvision module: a class that is never instantiated."""

    def __getattr__(cls, name):
        return _Placeholder(name, (), {})


class _TorchvisionPlaceholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `import torchvision[.x]` with empty modules whose public names are placeholders."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def public(attr):
            if attr.startswith("_"):
                raise AttributeError(attr)
            return _Placeholder(attr, (), {})

        module.__getattr__ = public
        return module

    def exec_module(self, module):
        pass


def _import_timm_maxxvit():
    """timm's maxxvit module, loaded with torchvision placeholders that are removed afterwards."""
    finder = _TorchvisionPlaceholders()
    sys.meta_path.insert(0, finder)
    try:
        from timm.models import maxxvit
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return maxxvit


def _randomize(module) -> None:
    """Sizeable random weights, biases and bias tables, so that a mapping slip shows."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn_like(p))


def _dense(weight, bias) -> dict:
    """torch Linear -> flax Dense params."""
    return {"kernel": weight.detach().numpy().T, "bias": bias.detach().numpy()}


def params_from_timm(attn) -> dict:
    """timm MaxViT `AttentionCl` -> our Window/GridAttention variables: a rename (Linear.T)."""
    out = {
        "qkv": _dense(attn.qkv.weight, attn.qkv.bias),
        "proj": _dense(attn.proj.weight, attn.proj.bias),
    }
    if attn.rel_pos is not None:
        table = attn.rel_pos.relative_position_bias_table.detach().numpy()
        out["rel_pos"] = {"relative_position_bias_table": table}
    return {"params": {"attn": out}}


def params_from_swin(attn) -> dict:
    """HF `SwinAttention` -> WindowAttention variables: q, k, v Linears into the head-major qkv."""
    parts = [
        _dense(getattr(attn, f"{n}_proj").weight, getattr(attn, f"{n}_proj").bias) for n in "qkv"
    ]
    kernel = np.stack([p["kernel"].reshape(CHANNELS, HEADS, HEAD_DIM) for p in parts], axis=2)
    bias = np.stack([p["bias"].reshape(HEADS, HEAD_DIM) for p in parts], axis=1)
    table = attn.relative_position_bias.relative_position_bias_table.detach().numpy()
    return {
        "params": {
            "attn": {
                "qkv": {"kernel": kernel.reshape(CHANNELS, 3 * CHANNELS), "bias": bias.ravel()},
                "proj": _dense(attn.o_proj.weight, attn.o_proj.bias),
                "rel_pos": {"relative_position_bias_table": table},
            }
        }
    }


def _swin_attention(window_hw):
    config = transformers.SwinConfig(embed_dim=CHANNELS, window_size=window_hw[0])
    config._attn_implementation = "eager"
    attn = modeling_swin.SwinAttention(config, CHANNELS, HEADS, window_hw[0])
    # Swin's window is square; its bias module takes any (h, w) (a non-square test of the indexing).
    attn.relative_position_bias = modeling_swin.SwinRelativePositionBias(HEADS, window_hw)
    _randomize(attn)
    return attn.eval()


def _images(map_hw, batch=2, seed=0):
    return np.random.RandomState(seed).randn(batch, *map_hw, CHANNELS).astype(np.float32)


def test_window_attention_matches_hf_swin():
    """Swin's partition, window attention (bias table included) and reverse on an 8 x 12 map."""
    attn = _swin_attention((4, 4))
    x = _images((8, 12))
    with torch.no_grad():
        windows = modeling_swin.window_partition(torch.from_numpy(x), 4).view(-1, 16, CHANNELS)
        ref = modeling_swin.window_reverse(attn(windows)[0].view(-1, 4, 4, CHANNELS), 4, 8, 12)
    model = window.WindowAttention(HEADS, (4, 4))
    variables = params_from_swin(attn)
    init = model.init(jax.random.key(0), jnp.asarray(x))
    assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, variables)
    out = np.asarray(model.apply(variables, jnp.asarray(x)))
    assert float(np.abs(out - ref.numpy()).max()) < 1e-5


def test_non_square_group_attention_matches_hf_swin():
    """One (4, 3) group layout: the bias indexing of non-square windows and grids."""
    attn = _swin_attention((4, 3))
    tokens = _images((12,), batch=5)  # Five groups of 12 tokens.
    with torch.no_grad():
        ref = attn(torch.from_numpy(tokens))[0].numpy()
    model = window.GroupAttention(HEADS, (4, 3))
    out = np.asarray(
        model.apply({"params": params_from_swin(attn)["params"]["attn"]}, jnp.asarray(tokens))
    )
    assert float(np.abs(out - ref).max()) < 1e-5


def test_grid_attention_is_window_attention_on_the_permuted_map():
    """Grid (g, s) on H x W = window (g, s) once token (i H/g + a, ..) moves to (a g + i, ..)."""
    x = _images((8, 12))
    grid = window.GridAttention(HEADS, (2, 3))
    variables = grid.init(jax.random.key(0), jnp.asarray(x))
    # (B, g, H/g, s, W/s, C) -> (B, H/g, g, W/s, s, C): each grid group becomes a contiguous window.
    permuted = x.reshape(2, 2, 4, 3, 4, CHANNELS).transpose(0, 2, 1, 4, 3, 5).reshape(x.shape)
    windowed = window.WindowAttention(HEADS, (2, 3)).apply(variables, jnp.asarray(permuted))
    ref = np.asarray(windowed).reshape(2, 4, 2, 4, 3, CHANNELS).transpose(0, 2, 1, 4, 3, 5)
    out = np.asarray(grid.apply(variables, jnp.asarray(x)))
    assert float(np.abs(out - ref.reshape(x.shape)).max()) < 1e-5


@pytest.mark.parametrize(
    "partition, size, rel_pos",
    [("block", (4, 3), True), ("grid", (2, 3), True), ("block", (2, 6), False)],
)
def test_matches_timm_maxvit_partition_attention(partition, size, rel_pos):
    maxxvit = _import_timm_maxxvit()
    cfg = maxxvit.MaxxVitTransformerCfg(
        dim_head=HEAD_DIM, window_size=size, grid_size=size, rel_pos_type="bias" if rel_pos else ""
    )
    block = maxxvit.PartitionAttentionCl(CHANNELS, partition, cfg).eval()
    _randomize(block.attn)
    x = _images((8, 12))
    with torch.no_grad():
        ref = block._partition_attn(torch.from_numpy(x)).numpy()
    cls = window.WindowAttention if partition == "block" else window.GridAttention
    model = cls(HEADS, size, rel_pos_bias=rel_pos)
    variables = params_from_timm(block.attn)
    init = model.init(jax.random.key(0), jnp.asarray(x))
    assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, variables)
    out = np.asarray(model.apply(variables, jnp.asarray(x)))
    assert float(np.abs(out - ref).max()) < 1e-5


def full_attention(x: np.ndarray, params: dict) -> np.ndarray:
    """Plain multi-head self-attention over the whole map in numpy (head-major [q|k|v] qkv)."""
    batch, height, width, channels = x.shape
    p = params["params"]["attn"]
    tokens = x.reshape(batch, height * width, channels).astype(np.float64)
    qkv = tokens @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    qkv = qkv.reshape(batch, -1, HEADS, 3, channels // HEADS)
    q, k, v = (qkv[..., i, :].transpose(0, 2, 1, 3) for i in range(3))  # (B, N, T, D)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(channels // HEADS)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, -1, channels)
    return (out @ p["proj"]["kernel"] + p["proj"]["bias"]).reshape(x.shape)


@pytest.mark.parametrize("cls", [window.WindowAttention, window.GridAttention])
def test_a_partition_as_large_as_the_map_is_full_attention(cls):
    x = _images((4, 6))
    model = cls(HEADS, (4, 6), rel_pos_bias=False)
    params = model.init(jax.random.key(1), jnp.asarray(x))
    out = np.asarray(model.apply(params, jnp.asarray(x)))
    ref = full_attention(x, jax.tree.map(np.asarray, params))
    assert float(np.abs(out - ref).max()) < 1e-5


@pytest.mark.parametrize("cls", [window.WindowAttention, window.GridAttention])
def test_a_1x1_partition_is_each_token_alone(cls):
    """One token per group: softmax over itself is 1, so the output is proj(v) of the token."""
    x = _images((4, 6))
    model = cls(HEADS, (1, 1), rel_pos_bias=True)
    params = jax.tree.map(np.asarray, model.init(jax.random.key(2), jnp.asarray(x)))
    p = params["params"]["attn"]
    v = (x @ p["qkv"]["kernel"] + p["qkv"]["bias"]).reshape(*x.shape[:3], HEADS, 3, -1)[..., 2, :]
    ref = v.reshape(x.shape) @ p["proj"]["kernel"] + p["proj"]["bias"]
    out = np.asarray(model.apply(params, jnp.asarray(x)))
    assert float(np.abs(out - ref).max()) < 1e-5


def test_partitions_round_trip_and_group_the_right_tokens():
    x = jnp.arange(6 * 8, dtype=jnp.float32).reshape(1, 6, 8, 1)
    windows = window.window_partition(x, (3, 4))
    assert windows.shape == (4, 12, 1)
    np.testing.assert_array_equal(windows[1, :4, 0], [4, 5, 6, 7])  # Top-right window, first row.
    grid = window.grid_partition(x, (2, 2))
    assert grid.shape == (12, 4, 1)
    np.testing.assert_array_equal(grid[0, :, 0], [0, 4, 24, 28])  # Stride (3, 4): one per window.
    np.testing.assert_array_equal(window.window_merge(windows, (3, 4), (6, 8)), x)
    np.testing.assert_array_equal(window.grid_merge(grid, (2, 2), (6, 8)), x)


def test_a_size_that_does_not_divide_the_map_is_an_error_naming_both():
    x = jnp.zeros((1, 8, 6, CHANNELS))
    with pytest.raises(ValueError, match=r"window \(3, 3\) does not divide the \(8, 6\) map"):
        window.WindowAttention(HEADS, (3, 3)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"grid \(4, 4\) does not divide the \(8, 6\) map"):
        window.GridAttention(HEADS, (4, 4)).init(jax.random.key(0), x)


def test_split_map_follows_wgnet_alpha_4():
    assert window.split_map((64, 48), 4) == ((16, 12), (4, 4))
    assert window.split_map((32, 24), 4) == ((8, 6), (4, 4))
    assert window.split_map((8, 6), 4) == ((2, 3), (4, 2))
    assert window.split_map((2, 3), 4) == ((1, 3), (2, 1))


def test_window_grid_attention_is_window_then_grid_over_the_window_count():
    x = jnp.asarray(_images((8, 12)))
    mixer = window.WindowGridAttention(HEADS, window_hw=(4, 3))
    params = mixer.init(jax.random.key(3), x)
    out = mixer.apply(params, x)
    p = params["params"]
    y = window.WindowAttention(HEADS, (4, 3)).apply({"params": p["window_attn"]}, x)
    ref = window.GridAttention(HEADS, (2, 4)).apply({"params": p["grid_attn"]}, y)
    assert out.shape == x.shape
    assert float(jnp.abs(out - ref).max()) < 1e-6
    # Without window_hw, sizes follow split_map: (2, 3) windows, a (4, 4) grid at 8 x 12.
    auto = window.WindowGridAttention(HEADS).init(jax.random.key(3), x)["params"]
    table = auto["grid_attn"]["attn"]["rel_pos"]["relative_position_bias_table"]
    assert table.shape == (7 * 7, HEADS)
