"""Official state dict <-> params: parity with an independent PyTorch AggPose, key checks, file formats."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT

torch = pytest.importorskip("torch")

from torch_aggpose import TorchAggPose  # noqa: E402

from aggpose_jax.models import aggpose, build, convert  # noqa: E402


def make_model(name: str, k: int, **options):
    """`<family>_<variant>` with k heatmap channels (the summary CLI's names)."""
    family, variant = build.split_name(name)
    return build.make_model(family, variant, out_channels={"heatmaps": k}, **options)


DATA = pathlib.Path(__file__).parent / "data"
SMALL = dict(
    embed_dims=(16, 32, 40, 64),
    num_heads=(1, 2, 5, 8),
    sr_ratios=(8, 4, 2, 1),
    depths=((1, 1, 1, 1), (2, 1, 1), (2, 1), (1,)),
)


@pytest.fixture(scope="module")
def oracle():
    """The independent PyTorch model's state dict, an input batch and its heatmaps (NHWC)."""
    torch.manual_seed(0)
    model = TorchAggPose(
        SMALL["embed_dims"], SMALL["num_heads"], SMALL["sr_ratios"], SMALL["depths"], 17
    ).eval()
    images = np.random.RandomState(0).randn(2, 256, 192, 3).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, sd, images, ref


@pytest.fixture(scope="module")
def apply_small():
    model = aggpose.AggPose(**SMALL, num_keypoints=17)
    return {
        False: jax.jit(lambda v, x: model.apply(v, x)["heatmaps"]),
        True: jax.jit(lambda v, x: model.clone(scan_blocks=True).apply(v, x)["heatmaps"]),
    }


def test_official_parity(oracle, apply_small):
    _, sd, images, ref = oracle
    assert np.abs(ref).max() > 0.1  # Outputs of order 1, so the tolerance means something.
    # The exact call of the acceptance check: default fields, no rngs, train not passed.
    model = aggpose.AggPose(**SMALL, num_keypoints=17)
    params = convert.aggpose_params_from_state_dict(sd)
    heatmaps = model.apply({"params": params}, images)["heatmaps"]
    assert heatmaps.shape == (2, 64, 48, 17)
    assert float(np.abs(np.asarray(heatmaps) - ref).max()) < 3e-5


def test_scan_blocks_equivalence(oracle, apply_small):
    _, sd, images, ref = oracle
    unrolled = convert.aggpose_params_from_state_dict(sd)
    scanned = convert.aggpose_params_from_state_dict(sd, scan_blocks=True)
    assert scanned["block2"]["blocks"]["attn"]["q"]["kernel"].shape == (2, 32, 32)
    out_u = np.asarray(apply_small[False]({"params": unrolled}, images))
    out_s = np.asarray(apply_small[True]({"params": scanned}, images))
    np.testing.assert_allclose(out_s, out_u, atol=1e-5)
    assert float(np.abs(out_s - ref).max()) < 3e-5
    back = convert.aggpose_state_dict_from_params(scanned)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


def test_module_prefix_and_file_formats(oracle, tmp_path):
    model, sd, _, _ = oracle
    ref = convert.aggpose_params_from_state_dict(sd)
    prefixed = {"module." + k: v for k, v in sd.items()}
    torch.save(model.state_dict(), tmp_path / "final_state.pth")
    torch.save(
        {"epoch": 3, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}},
        tmp_path / "checkpoint.pth",
    )
    from safetensors.numpy import save_file

    save_file(sd, str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "w.npz", **sd)
    sources = [prefixed] + [
        convert.load_state_dict(tmp_path / f)
        for f in ("final_state.pth", "checkpoint.pth", "w.safetensors", "w.npz")
    ]
    for source in sources:
        got = convert.aggpose_params_from_state_dict(source)
        jax.tree.map(np.testing.assert_array_equal, got, ref)
    with pytest.raises(ValueError, match="unknown weight file type"):
        convert.load_state_dict(tmp_path / "w.h5")


def test_clear_errors_for_bad_keys(oracle):
    _, sd, _, _ = oracle
    model = aggpose.AggPose(**SMALL)
    bad = dict(sd)
    del bad["merge_123_2.fc1.weight"]
    bad["merge_123_2.extra.weight"] = np.zeros(3, np.float32)
    bad["patch_embed23k.proj.bias"] = np.zeros(7, np.float32)
    with pytest.raises(ValueError) as err:
        convert.aggpose_params_from_state_dict(bad, model=model)
    msg = str(err.value)
    assert "1 missing key(s):\n  merge_123_2.fc1.weight" in msg
    assert "1 unexpected key(s):\n  merge_123_2.extra.weight" in msg
    assert "patch_embed23k.proj.bias: file (7,) vs model (40,)" in msg
    # A block beyond the model's depth table is named too.
    extra = {**sd, "block4.1.norm1.weight": np.ones(64, np.float32)}
    with pytest.raises(ValueError, match="block4.1.norm1.weight"):
        convert.aggpose_params_from_state_dict(extra, model=model)


def test_head_17_to_21(oracle):
    _, sd, _, _ = oracle
    with pytest.raises(ValueError, match="17-keypoint head but 21"):
        convert.aggpose_params_from_state_dict(sd, num_keypoints=21)
    p21 = convert.aggpose_params_from_state_dict(
        sd, num_keypoints=21, reinit_head=True, rng=jax.random.key(3)
    )
    fc2 = p21["final_layer"]["fc2"]
    assert fc2["kernel"].shape == (16, 21) and fc2["bias"].shape == (21,)
    assert 0.01 < float(np.std(fc2["kernel"])) < 0.03 and not np.any(fc2["bias"])
    np.testing.assert_array_equal(
        p21["final_layer"]["fc1"]["kernel"], sd["final_layer.fc1.weight"].T
    )
    model = aggpose.AggPose(**SMALL, num_keypoints=21)
    out = jax.jit(model.apply)({"params": p21}, jnp.zeros((1, 64, 64, 3)))["heatmaps"]
    assert out.shape == (1, 16, 16, 21)


@pytest.mark.parametrize("name,listing", [("aggpose_l", "l"), ("aggpose_s", "s")])
def test_official_key_listings(name, listing):
    entries = json.loads((DATA / f"aggpose_{listing}_state_dict.json").read_text())
    official = {k: tuple(shape) for k, shape, _ in entries}
    assert len(official) == len(entries)
    ours = convert.expected_shapes(make_model(name, 17))
    assert ours == official
    # The architecture read off the listing is the variant's (heads are not stored).
    cfg = convert.infer_aggpose_config({k: np.empty(s) for k, s in official.items()})
    ref = aggpose.VARIANTS[listing]
    assert cfg["depths"] == ref["depths"] and cfg["embed_dims"] == ref["embed_dims"]
    assert cfg["sr_ratios"] == (8, 4, 2, 1) and cfg["num_keypoints"] == 17


def test_round_trip_is_exact():
    model = make_model("aggpose_s", 21, scan_blocks=True)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
    sd = convert.aggpose_state_dict_from_params(params)
    assert len(sd) == 848 and sd["final_layer.fc2.weight"].shape == (21, 64)
    back = convert.aggpose_params_from_state_dict(sd, scan_blocks=True)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_segformer_drops_dead_recover_and_round_trips():
    model = make_model("segformer_tiny", 17, scan_blocks=False).clone(depths=(1, 2, 1, 1))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32), shapes)
    sd = convert.segformer_state_dict_from_params(params)
    # The official decoders: `to_fused`, a ModuleList of MlpDecoders each holding a Mix-FFN `mlp`.
    leaves = ("fc1.weight", "fc1.bias", "dwconv.dwconv.weight", "dwconv.dwconv.bias", "fc2.weight",
              "fc2.bias")  # fmt: skip
    decoder_keys = {
        k for k in sd if not k.startswith(("patch_embed", "block", "norm", "final_layer"))
    }
    assert decoder_keys == {f"to_fused.{i}.mlp.{leaf}" for i in range(4) for leaf in leaves}
    assert sd["to_fused.3.mlp.fc1.weight"].shape == (64, 64)  # Linear [out, in]: C_3 -> 64.
    official = {**sd, "recover.weight": np.zeros((64, 256, 1, 1)), "recover.bias": np.zeros(64)}
    back = convert.segformer_params_from_state_dict(official)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_save_load_and_cli(oracle, tmp_path):
    _, sd, _, _ = oracle
    params = convert.aggpose_params_from_state_dict(sd)
    convert.save_params(tmp_path / "p.msgpack", params)
    jax.tree.map(np.testing.assert_array_equal, convert.load_params(tmp_path / "p.msgpack"), params)
    np.savez(tmp_path / "in.npz", **sd)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggpose_jax.models.convert",
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.msgpack"),
            "--model",
            "aggpose_tiny",
            "--num-keypoints",
            "21",
            "--reinit-head",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    # aggpose_tiny's depth table differs from the file's: the CLI must refuse it by key name.
    assert out.returncode != 0 and "block2.1.norm1.weight" in out.stderr
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aggpose_jax.models.convert",
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.msgpack"),
            "--num-keypoints",
            "21",
            "--reinit-head",
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "re-initialised" in out.stdout
    got = convert.load_params(tmp_path / "out.msgpack")
    assert got["final_layer"]["fc2"]["kernel"].shape == (16, 21)
