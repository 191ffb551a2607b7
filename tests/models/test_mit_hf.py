"""MiT encoder parity with Hugging Face transformers' Segformer (the peer implementation as oracle)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aggpose_jax.models import convert, mit  # noqa: E402
from aggpose_jax.models.weights import mit as mit_weights  # noqa: E402

DIMS, HEADS, SRS, DEPTHS = (16, 32, 40, 64), (1, 2, 5, 8), (8, 4, 2, 1), (1, 2, 2, 1)

# transformers >= 5 names -> the Hub checkpoints' (legacy) names, to exercise both layouts.
_TO_LEGACY = [
    (r"stages\.(\d+)\.patch_embeddings\.", r"encoder.patch_embeddings.\1."),
    (r"stages\.(\d+)\.blocks\.", r"encoder.block.\1."),
    (r"stages\.(\d+)\.layer_norm", r"encoder.layer_norm.\1"),
    (r"attention\.q_proj", "attention.self.query"),
    (r"attention\.k_proj", "attention.self.key"),
    (r"attention\.v_proj", "attention.self.value"),
    (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
    (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
    (r"attention\.o_proj", "attention.output.dense"),
    (r"mlp\.fc1", "mlp.dense1"),
    (r"mlp\.fc2", "mlp.dense2"),
    (r"layernorm_before", "layer_norm_1"),
    (r"layernorm_after", "layer_norm_2"),
]


@pytest.fixture(scope="module")
def hf_run():
    config = transformers.SegformerConfig(
        hidden_sizes=list(DIMS),
        num_attention_heads=list(HEADS),
        sr_ratios=list(SRS),
        depths=list(DEPTHS),
        drop_path_rate=0.0,
    )
    torch.manual_seed(0)
    model = transformers.SegformerModel(config).eval()
    with torch.no_grad():  # Non-trivial norms and biases, so that a mapping slip shows.
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    images = np.random.RandomState(0).randn(2, 3, 64, 96).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(images), output_hidden_states=True)
    stages = [h.permute(0, 2, 3, 1).numpy() for h in out.hidden_states]
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    return sd, images.transpose(0, 2, 3, 1), stages


@pytest.mark.parametrize("layout", ["transformers5", "hub_legacy"])
def test_mit_matches_hf_segformer(hf_run, layout):
    import re

    sd, images, ref_stages = hf_run
    if layout == "hub_legacy":
        renamed = {}
        for k, v in sd.items():
            for pat, rep in _TO_LEGACY:
                k = re.sub(pat, rep, k)
            renamed["segformer." + k] = v
        sd = renamed
        assert any(".attention.self.key." in k for k in sd)
    model = mit.MixVisionTransformer(embed_dims=DIMS, num_heads=HEADS, sr_ratios=SRS, depths=DEPTHS)
    init = jax.eval_shape(model.init, jax.random.key(1), jnp.zeros((1, 64, 96, 3)))["params"]
    init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init)
    params, report = mit_weights.load_mit_backbone(init, sd)
    assert report["initialised"] == []  # The encoder is entirely covered.
    assert len(report["loaded"]) == len(convert.torch_names_from_params(init))
    stages = jax.jit(model.apply)({"params": params}, images)["stages"]
    assert len(stages) == 4
    for ours, ref in zip(stages, ref_stages, strict=True):
        assert ours.shape == ref.shape
        assert float(np.abs(np.asarray(ours) - ref).max()) < 1e-4


def test_mit_backbone_into_aggpose_reports_the_rest(hf_run):
    from aggpose_jax.models import aggpose

    sd, _, _ = hf_run
    depths = ((DEPTHS[0], 1, 1, 1), (DEPTHS[1], 1, 1), (DEPTHS[2], 1), (DEPTHS[3],))
    model = aggpose.AggPose(DIMS, HEADS, SRS, depths, scan_blocks=True)
    init = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    init = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init)
    params, report = mit_weights.load_mit_backbone(init, sd)
    assert jax.tree.structure(params) == jax.tree.structure(init)  # Still stacked for scan.
    assert "block1_1.0.attn.q.weight" in report["initialised"]
    assert "block3.1.attn.kv.weight" in report["loaded"]
    kv = sd["stages.2.blocks.1.attention.k_proj.weight"]
    np.testing.assert_array_equal(
        params["block3"]["blocks"]["attn"]["kv"]["kernel"][1][:, :40], kv.T
    )
    # A backbone deeper than the model's main groups is refused by name.
    shallow = aggpose.AggPose(DIMS, HEADS, SRS, ((1, 1, 1, 1), (1, 1, 1), (1, 1), (1,)))
    init2 = jax.eval_shape(shallow.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    init2 = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init2)
    with pytest.raises(ValueError, match="block2.1.attn.q.weight"):
        mit_weights.load_mit_backbone(init2, sd)
