"""The bottom-up families: MLN, OpenPose and AggPose's PAF head. Sizes of the full networks against
their papers (shapes only, from the traced program), staged outputs of the tiny variants, and ImageNet
VGG-19 weights from torchvision's layout against a plain-torch VGG."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models import build, convert, mln, openpose, summary
from aggpose_jax.models.blocks.vgg import VGG19_FRONT, VGGFront, torch_indices

# The MLN paper's Table 2 with its text's exact counts; FLOPs there are multiply-adds at 368 x 432.
PAPER = {"mln_base": (21_278_912, 82.5), "openpose_cmu": (52_298_816, 159.6)}
OPENPOSE_CHANNELS = {"heatmaps": 19, "pafs": 38}  # 18 parts + background, 19 limbs x 2


@pytest.mark.parametrize("name", sorted(PAPER))
def test_full_sizes_match_the_paper(name):
    row = summary.summarize(name, 19, (368, 432), out_channels={"pafs": 38})
    weights, gflops = PAPER[name]
    # The paper counts conv weights, not biases: OpenPose's figure is exact.
    assert abs(row["kernel_params"] / weights - 1) < 0.05
    assert abs(row["gmacs"] / gflops - 1) < 0.05
    if name == "openpose_cmu":
        assert row["kernel_params"] == weights and row["params"] == weights + 12_630
    else:
        assert row["kernel_params"] == 21_497_408  # +1.0%: the documented reading of Fig. 2
    assert (
        summary.main(["--model", name, "--out-channels", "pafs=38", "--input-hw", "64", "64"]) == 0
    )


def _random_variables(model, images):
    """He-scaled random variables from numpy (a jitted init compiles every random draw: minutes)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)
    rng = np.random.RandomState(0)

    def draw(s):
        fan_in = int(np.prod(s.shape[:-1])) or 1
        return jnp.asarray(rng.randn(*s.shape) * np.sqrt(2.0 / fan_in), s.dtype)

    return jax.tree.map(draw, shapes)


@pytest.mark.parametrize("family,stages", [("mln", 2), ("openpose", 2)])
def test_tiny_staged_outputs(family, stages):
    model = build.make_model(family, "tiny", out_channels={"heatmaps": 17, "pafs": 66})
    images = jnp.asarray(np.random.RandomState(0).rand(2, 64, 48, 3), jnp.float32)
    variables = _random_variables(model, images)
    apply = jax.jit(model.apply)
    out = apply(variables, images)
    assert set(out) == {"heatmaps", "pafs"}
    assert [x.shape for x in out["heatmaps"]] == [(2, 8, 6, 17)] * stages
    assert [x.shape for x in out["pafs"]] == [(2, 8, 6, 66)] * stages
    assert all(x.dtype == jnp.float32 and bool(jnp.isfinite(x).all()) for x in out["pafs"])
    # The refinement reads the detection: its output changes when only the image changes.
    assert not np.allclose(out["heatmaps"][-1], apply(variables, images[::-1])["heatmaps"][-1])


def test_families_need_paf_channels():
    with pytest.raises(ValueError, match="needs out_channels for \\['pafs'\\]"):
        build.make_model("mln", "tiny", out_channels={"heatmaps": 17})
    with pytest.raises(ValueError, match='head="paf" needs out_channels for .*pafs'):
        build.make_model("aggpose", "tiny", out_channels={"heatmaps": 17}, head="paf")
    assert set(build.known_families()) >= {"mln", "openpose"}
    assert set(mln.VARIANTS) == {"base", "tiny"} and set(openpose.VARIANTS) == {"cmu", "tiny"}


def test_aggpose_paf_head_at_stride_4():
    model = build.make_model(
        "aggpose", "tiny", out_channels={"heatmaps": 21, "pafs": 72}, head="paf", scan_blocks=False
    )
    images = jax.ShapeDtypeStruct((1, 64, 96, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), images)
    out = jax.eval_shape(model.apply, variables, images)
    assert [x.shape for x in out["heatmaps"]] == [(1, 16, 24, 21)]
    assert [x.shape for x in out["pafs"]] == [(1, 16, 24, 72)]
    params = variables["params"]
    # The trunk and the shared Mix-FFN are the top-down model's: its weights load unchanged.
    topdown = build.make_model("aggpose", "tiny", out_channels={"heatmaps": 21}, scan_blocks=False)
    td = jax.eval_shape(topdown.init, jax.random.key(0), images)["params"]
    assert set(params) - set(td) == {"final_layer_paf"}
    assert params["final_layer_paf"]["fc2"]["kernel"].shape[-1] == 72


# --- ImageNet VGG-19 from torchvision's state-dict layout ------------------------------------------


def _torch_vgg19_features(torch):
    """torchvision's `vgg19().features`, built from plain torch.nn (the same indices)."""
    layers, c_in = [], 3
    for width in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512, 512, 512, 512, "M"]:  # fmt: skip
        if width == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(c_in, width, 3, padding=1), torch.nn.ReLU(inplace=True)]
            c_in = width
    return torch.nn.Sequential(*layers)


def test_vgg19_front_loads_torchvision_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    features = _torch_vgg19_features(torch).eval()
    for m in features:
        if isinstance(m, torch.nn.Conv2d):  # O(1) activations through ten layers
            torch.nn.init.normal_(m.weight, 0, (2.0 / (9 * m.in_channels)) ** 0.5)
            torch.nn.init.normal_(m.bias, 0, 0.1)
    sd = {f"features.{k}": v.numpy() for k, v in features.state_dict().items()}
    sd["classifier.0.bias"] = np.zeros(4096, np.float32)
    assert torch_indices(VGG19_FRONT) == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21]

    # The MLN with the full VGG front and a tiny rest: its whole variable tree goes through the loader.
    net = mln.MLN(cpm=(16,), width=16, hidden=32, transfer_blocks=1, refine_blocks=1, num_pafs=6)
    fresh = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    fresh = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fresh)
    variables, report = convert.load_vgg_front(fresh, {f"module.{k}": v for k, v in sd.items()})
    assert len(report["loaded"]) == 20 and report["loaded"][0].startswith("features.")
    assert "features.23.weight" in report["ignored"] and "classifier.0.bias" in report["ignored"]
    assert "refine_joint.out.weight" in report["initialised"]

    images = np.random.RandomState(0).rand(2, 48, 40, 3).astype(np.float32) * 2 - 1
    with torch.no_grad():
        ref = features[:23](torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    got = VGGFront().apply({"params": variables["params"]["features"]}, images)
    assert got.shape == (2, 6, 5, 512) and float(np.abs(ref.numpy()).max()) > 0.1
    np.testing.assert_allclose(np.asarray(got), ref.numpy(), atol=1e-4, rtol=1e-4)

    broken = dict(sd)
    del broken["features.21.bias"]
    broken["features.19.weight"] = np.zeros((512, 128, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"(?s)features\.21\.bias.*features\.19\.weight"):
        convert.load_vgg_front(fresh, broken)
    with pytest.raises(ValueError, match="no VGG front"):
        convert.load_vgg_front({"params": {"final_layer": {"bias": np.zeros(3)}}}, sd)


def test_vgg_front_pools_floor_as_torch():
    out = jax.eval_shape(
        lambda x: VGGFront(((4,), (4,), (4,), (8,))).init_with_output(jax.random.key(0), x)[0],
        jax.ShapeDtypeStruct((1, 50, 43, 3), jnp.float32),
    )
    assert out.shape == (1, 6, 5, 8)  # floor(floor(floor(50/2)/2)/2), as MaxPool2d(2, 2)
    assert isinstance(VGGFront(), nn.Module)
