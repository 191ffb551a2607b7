"""AggPose's ablation switches: each changes one part only, and the defaults are the official model.

Parameter trees are compared on shapes alone (`jax.eval_shape`); three forwards check the outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aggpose_jax.models import build, summary

IMAGES = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3))


def _tiny(**options):
    options.setdefault("scan_blocks", False)
    return build.make_model("aggpose", "tiny", out_channels={"heatmaps": 5}, **options)


def _paths(**options) -> set[str]:
    shapes = jax.eval_shape(_tiny(**options).init, jax.random.key(1), IMAGES)
    return {"/".join(k) for k in traverse_util.flatten_dict(shapes["params"])}


def test_defaults_are_the_official_model():
    fields = build.model_fields("aggpose", "l", {})
    assert (fields["attention"], fields["fusion"], fields["head"]) == (
        "efficient",
        "merge",
        "mixffn",
    )
    with pytest.raises(ValueError, match="unknown AggPose fusion 'sum'; known: merge"):
        _tiny(fusion="sum")


def test_each_switch_replaces_its_part_only():
    base = _paths()
    assert _paths(fusion="merge_residual") == base  # eq. 5's `+ x_j` adds no parameter
    ram = _paths(fusion="ram")
    assert {p for p in ram if p.startswith("merge_1234_2/")} == {
        "merge_1234_2/score_kernel", "merge_1234_2/score_bias", "merge_1234_2/omega",
        "merge_1234_2/beta",
    }  # fmt: skip
    assert {p for p in base if not p.startswith("merge_")} == {
        p for p in ram if not p.startswith("merge_")
    }
    gpr = _paths(head="gpr")
    assert {"deconv1/kernel", "deconv3/kernel", "final_layer/kernel"} <= gpr
    assert not any(p.startswith(("final/", "upsample4_", "final_layer/fc")) for p in gpr)
    assert {p for p in base if not p.startswith(("final", "upsample4_"))} <= gpr
    window = _paths(attention="window_grid")
    assert "block1/0/attn/window_attn/attn/qkv/kernel" in window
    assert "block4/0/attn/grid_attn/attn/qkv/kernel" in window
    assert not any("/attn/sr/" in p or "/attn/kv/" in p for p in window)
    assert {p for p in base if "/attn/" not in p} == {p for p in window if "/attn/" not in p}


def test_switched_models_run():
    official = _tiny()
    variables = official.init(jax.random.key(1), IMAGES)
    out = official.apply(variables, IMAGES)["heatmaps"]
    residual = _tiny(fusion="merge_residual").apply(variables, IMAGES)["heatmaps"]
    assert residual.shape == out.shape and not np.allclose(residual, out)
    model = _tiny(attention="window_grid", fusion="ram", head="gpr")
    heatmaps = model.apply(model.init(jax.random.key(1), IMAGES), IMAGES)["heatmaps"]
    assert heatmaps.shape == out.shape and bool(jnp.isfinite(heatmaps).all())


def test_summary_counts_an_option():
    base = summary.summarize("aggpose_tiny", 17, (64, 64))
    gpr = summary.summarize("aggpose_tiny", 17, (64, 64), options={"head": "gpr"})
    assert gpr["options"] == {"head": "gpr"} and gpr["params"] != base["params"]
    assert summary.main(["--model", "aggpose_tiny", "--option", "fusion=nope"]) == 2
