"""HRNet and RAM+GPR: parity with an independent PyTorch HRNet (eval and train), the official key
listing, sizes, converter errors, ImageNet backbones, RAM and GPR blocks, the two families."""

import copy
import json
import math
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch_hrnet import TorchHRNet, randomize_  # noqa: E402

from aggpose_jax.models import build, convert, hrnet, summary  # noqa: E402
from aggpose_jax.models.blocks import fusion, heads  # noqa: E402
from aggpose_jax.models.weights.hrnet import expected_hrnet_shapes  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data"
SMALL = dict(width=8, num_modules=(1, 1, 2), num_blocks=1)
GIB = 2**30  # HRNet's published "GFLOPs" are multiply-adds / 2^30.


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def oracle():
    """The PyTorch HRNet (random weights and running statistics, eval mode) and its state dict."""
    torch.manual_seed(0)
    model = TorchHRNet(**SMALL, num_keypoints=17)
    randomize_(model)
    model.eval()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, sd


def test_official_parity_eval(oracle):
    model, sd = oracle
    images = np.random.RandomState(0).randn(2, 256, 192, 3).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(model(torch.from_numpy(images).permute(0, 3, 1, 2)))
    assert np.abs(ref).max() > 0.1  # Outputs of order 1, so the tolerance means something.
    # The exact call of the acceptance check.
    net = hrnet.HRNet(width=8, num_modules=(1, 1, 2), num_blocks=1, num_keypoints=17)
    variables = convert.hrnet_variables_from_state_dict(sd)
    heatmaps = net.apply(variables, images)
    assert heatmaps.shape == (2, 64, 48, 17) and heatmaps.dtype == jnp.float32
    assert float(np.abs(np.asarray(heatmaps) - ref).max()) < 1e-4


def test_official_parity_train_and_running_stats(oracle):
    model, sd = oracle
    model = copy.deepcopy(model).train()
    images = np.random.RandomState(1).randn(2, 128, 96, 3).astype(np.float32)
    out = nhwc(model(torch.from_numpy(images).permute(0, 3, 1, 2)))
    variables = convert.hrnet_variables_from_state_dict(sd)
    heatmaps, state = hrnet.HRNet(**SMALL).apply(
        variables, images, train=True, mutable=["batch_stats"]
    )
    # Batch statistics of a 4x3 map (2 samples: 24 values a channel) amplify float32 rounding, by a
    # CPU-dependent amount: 1.4e-4 at most on one of 26,112 outputs on one machine, under 1e-4 on
    # another. The eval-mode acceptance check above holds 1e-4.
    np.testing.assert_allclose(np.asarray(heatmaps), out, atol=3e-4, rtol=1e-4)
    updated = convert.hrnet_state_dict_from_variables({**variables, **state})
    for name, value in model.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            np.testing.assert_allclose(updated[name], value.numpy(), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["w32", "w48"])
def test_official_key_listing(variant):
    entries = json.loads((DATA / f"hrnet_{variant}_state_dict.json").read_text())
    official = {k: tuple(shape) for k, shape, _ in entries}
    model = hrnet.HRNet(**hrnet.VARIANTS[variant], num_keypoints=17)
    tracked = {k: () for k in official if k.endswith("num_batches_tracked")}
    assert {**expected_hrnet_shapes(model), **tracked} == official
    assert len(tracked) == sum(k.endswith("running_mean") for k in official)
    cfg = convert.infer_hrnet_config({k: np.empty(s, np.uint8) for k, s in official.items()})
    assert cfg == dict(hrnet.VARIANTS[variant], num_keypoints=17)


@pytest.mark.parametrize(
    "name,params,gib",
    [
        ("hrnet_w32", (28_536_113, 0.0), (7.1, 0.02)),
        ("hrnet_w48", (63_595_745, 0.0), (14.6, 0.02)),
        ("ramgpr_w32", (31.4e6, 0.05), (7.7, 0.05)),
        ("ramgpr_w48", (70.0e6, 0.05), (15.8, 0.05)),
    ],
)
def test_sizes(name, params, gib):
    row = summary.summarize(name, 17)
    assert abs(row["params"] - params[0]) <= params[1] * params[0], row["params"]
    assert abs(row["gmacs"] * 1e9 / GIB - gib[0]) <= gib[1] * gib[0], row["gmacs"]


def test_bad_keys_are_named(oracle):
    _, sd = oracle
    bad = dict(sd)
    del bad["stage4.1.fuse_layers.0.1.0.weight"]
    bad["stage4.1.fuse_layers.0.9.0.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    bad["transition1.0.1.running_var"] = np.ones(9, np.float32)
    with pytest.raises(ValueError) as err:
        convert.hrnet_variables_from_state_dict(bad, model=hrnet.HRNet(**SMALL))
    msg = str(err.value)
    assert "1 missing key(s):\n  stage4.1.fuse_layers.0.1.0.weight" in msg
    assert "1 unexpected key(s):\n  stage4.1.fuse_layers.0.9.0.weight" in msg
    assert "transition1.0.1.running_var: file (9,) vs model (8,)" in msg
    with pytest.raises(ValueError, match="not a pose HRNet"):
        convert.hrnet_variables_from_state_dict({"conv1.weight": sd["conv1.weight"]})


def test_prefix_tracked_round_trip_and_head(oracle):
    model, sd = oracle
    assert sd["bn1.num_batches_tracked"].dtype == np.int64  # torch's, accepted and dropped
    ref = convert.hrnet_variables_from_state_dict(sd)
    prefixed = {"module." + k: v for k, v in sd.items() if "num_batches" not in k}
    jax.tree.map(
        np.testing.assert_array_equal, convert.hrnet_variables_from_state_dict(prefixed), ref
    )
    assert ref["batch_stats"]["bn1"]["var"].shape == (64,) and "num_batches_tracked" not in str(ref)
    back = convert.hrnet_state_dict_from_variables(ref)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    with pytest.raises(ValueError, match="17-keypoint head but 21"):
        convert.hrnet_variables_from_state_dict(sd, num_keypoints=21)
    v21 = convert.hrnet_variables_from_state_dict(sd, num_keypoints=21, reinit_head=True)
    assert v21["params"]["final_layer"]["kernel"].shape == (1, 1, 8, 21)
    np.testing.assert_array_equal(
        v21["params"]["conv1"]["kernel"], ref["params"]["conv1"]["kernel"]
    )


def _zeros_like_init(model: nn.Module) -> dict:
    """The model's variables as zeros, from eval_shape (a real init would compile every random draw)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _classification_state_dict(width: int) -> dict[str, np.ndarray]:
    """A small ImageNet-layout HRNet: stage 4 multi-scale to the end, plus classification keys."""
    net = hrnet.HRNet(width=width, num_modules=(1, 1, 2), num_blocks=1, head="gpr")
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    rng = np.random.default_rng(0)
    values = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
    sd = convert.hrnet_state_dict_from_variables(values)
    sd = {k: v for k, v in sd.items() if not k.startswith(("deconv", "final_layer"))}
    extra = {"incre_modules.0.0.conv1.weight": (32, width, 1, 1),
             "downsamp_modules.0.0.weight": (256, 128, 3, 3), "downsamp_modules.0.0.bias": (256,),
             "final_layer.0.weight": (2048, 1024, 1, 1), "final_layer.1.running_mean": (2048,),
             "classifier.weight": (1000, 2048), "classifier.bias": (1000,)}  # fmt: skip
    return {**sd, **{k: np.zeros(s, np.float32) for k, s in extra.items()}}


def test_imagenet_backbone():
    file_sd = _classification_state_dict(8)
    pose = hrnet.HRNet(**SMALL)
    fresh = _zeros_like_init(pose)
    variables, report = convert.load_hrnet_backbone(
        fresh, {"module." + k: v for k, v in file_sd.items()}
    )
    assert report["initialised"] == ["final_layer.bias", "final_layer.weight"]
    assert "classifier.weight" in report["ignored"] and "final_layer.0.weight" in report["ignored"]
    assert "stage4.1.fuse_layers.3.2.0.1.running_var" in report["ignored"]  # unused by the pose net
    assert "bn1.num_batches_tracked" not in report["ignored"]
    back = convert.hrnet_state_dict_from_variables(variables)
    for k in ("stage3.0.fuse_layers.2.0.1.0.weight", "layer1.0.bn3.running_var"):
        np.testing.assert_array_equal(back[k], file_sd[k])
    # RAM+GPR uses the extra fuse layers; its attention and head stay fresh.
    ramgpr = build.make_model("ramgpr", "tiny", out_channels={"heatmaps": 17})
    fresh = _zeros_like_init(ramgpr.clone(num_modules=(1, 1, 2)))
    _, report = convert.load_hrnet_backbone(fresh, file_sd)
    assert "stage4.1.fuse_layers.3.2.0.1.running_var" in report["loaded"]
    assert {k.split(".")[0] for k in report["initialised"]} == {"deconv1", "deconv2", "deconv3",
                                                               "final_layer", "stage2", "stage3",
                                                               "stage4"}  # fmt: skip
    assert all(".attention." in k for k in report["initialised"] if k.startswith("stage"))
    with pytest.raises(
        ValueError, match=r"transition1\.0\.0\.weight: file \(16, 256, 3, 3\) vs model \(8,"
    ):
        convert.load_hrnet_backbone(fresh, _classification_state_dict(16))


def test_resolution_attention():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 8, 6, 4)), jnp.float32)

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, parts):
            return fusion.resolution_attention(parts, name="attention", dtype=jnp.float32)

    variables = Probe().init(jax.random.key(0), [x, x, x])
    # omega = 1, beta = 0 at init: softmax weights sum to 1 across the branches.
    same = Probe().apply(variables, [x, x, x])
    np.testing.assert_allclose(same, x, atol=1e-6)
    params = jax.tree.map(jnp.asarray, variables["params"])
    params["attention"]["score_kernel"] = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
    parts = [x, jnp.flip(x, 1), x**2]
    out, state = Probe().apply({"params": params}, parts, mutable=["intermediates"])
    (w,) = state["intermediates"]["attention"]["weights"]
    assert w.shape == (2, 3) and float(jnp.std(w)) > 0.01
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    manual = sum(w[:, h, None, None, None] * parts[h] for h in range(3))
    np.testing.assert_allclose(out, manual, atol=1e-5)


def test_pyramid_head_shapes():
    class Head(nn.Module):
        @nn.compact
        def __call__(self, parts):
            return heads.pyramid_head(parts, 17, dtype=jnp.float32)

    parts = [jnp.ones((2, 32 // 2**k, 24 // 2**k, 8 * 2**k)) for k in range(4)]
    out, variables = Head().init_with_output(jax.random.key(0), parts)
    assert out.shape == (2, 32, 24, 17)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["deconv3"]["kernel"] == (2, 2, 64, 64)
    assert shapes["deconv1"]["kernel"] == (2, 2, 112, 112)
    assert shapes["final_layer"]["kernel"] == (1, 1, 120, 17)


@pytest.mark.parametrize("family", ["hrnet", "ramgpr"])
def test_families(family):
    model = build.make_model(family, "tiny", out_channels={"heatmaps": 17})
    images = jnp.asarray(np.random.RandomState(0).rand(2, 128, 96, 3), jnp.float32)
    variables = model.init(jax.random.key(0), images)
    assert set(variables) == {"params", "batch_stats"}
    out, state = model.apply(variables, images, train=True, mutable=["batch_stats"])
    assert set(out) == {"heatmaps"} and out["heatmaps"].shape == (2, 32, 24, 17)
    assert jax.tree.structure(state["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    if family == "hrnet":  # The bare HRNet (the acceptance API) has the same variables.
        bare = hrnet.HRNet(**hrnet.VARIANTS["tiny"], num_keypoints=17)
        assert jax.tree.map(jnp.shape, bare.init(jax.random.key(0), images)) == jax.tree.map(
            jnp.shape, variables
        )
        np.testing.assert_array_equal(
            bare.apply(variables, images), model.apply(variables, images)["heatmaps"]
        )
    n = sum(math.prod(x.shape) for x in jax.tree.leaves(variables["params"]))
    assert n < 1_000_000
    with pytest.raises(ValueError, match="unknown HRNet fusion 'attn'"):
        build.make_model(family, "tiny", out_channels={"heatmaps": 17}, fusion="attn")


def test_convert_cli(oracle, tmp_path):
    _, sd = oracle
    np.savez(tmp_path / "pose_hrnet.npz", **sd)
    assert convert.main([str(tmp_path / "pose_hrnet.npz"), str(tmp_path / "v.msgpack")]) == 0
    got = convert.load_params(tmp_path / "v.msgpack")
    jax.tree.map(np.testing.assert_array_equal, got, convert.hrnet_variables_from_state_dict(sd))


def test_init_from_an_hrnet_pth_fills_batch_stats(oracle, tmp_path):
    """The trainer's general init reads an official HRNet .pth with its BatchNorm statistics."""
    from aggpose_jax.training import init

    model, sd = oracle
    path = tmp_path / "pose_hrnet_small.pth"
    torch.save(model.state_dict(), path)
    loaded = init.read_variables(str(path))
    assert "num_batches_tracked" not in str(jax.tree_util.tree_structure(loaded))
    net = hrnet.HRNet(**SMALL, num_keypoints=21)  # a new 21-joint head
    fresh = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fresh)
    variables, report = init.load_into(fresh, loaded, reinit="^params/final_layer/")
    assert report.reinitialised == ["params/final_layer/bias", "params/final_layer/kernel"]
    assert "batch_stats/bn1/mean" in report.loaded and not report.fresh
    assert report.ignored == report.reinitialised  # the file's 17-joint head
    np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"], sd["bn1.running_var"])
