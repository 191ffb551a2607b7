"""AggPose / SegFormer / MiT variants: sizes, compute, drop path, dtypes and remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aggpose_jax.models import aggpose, build, mit, summary
from aggpose_jax.models.blocks import attention


def make_model(name: str, k: int, **options):
    """`<family>_<variant>` with k heatmap channels (the summary CLI's names)."""
    family, variant = build.split_name(name)
    return build.make_model(family, variant, out_channels={"heatmaps": k}, **options)


def _n_params(model, hw=(64, 64)):
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *hw, 3)))["params"]
    return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


@pytest.mark.parametrize(
    "name,k,expected",
    [
        ("aggpose_l", 17, 96_751_825),
        ("aggpose_l", 21, 96_752_085),
        ("aggpose_s", 17, 39_505_105),
        # The official 81,562,641 less the 16,448 params of its unused `recover` conv.
        ("segformer_b5", 17, 81_562_641 - 16_448),
    ],
)
def test_official_parameter_counts(name, k, expected):
    assert _n_params(make_model(name, k, scan_blocks=True)) == expected


@pytest.mark.parametrize(
    "name,gmacs,no_attn", [("aggpose_s", 7.29, 6.91), ("aggpose_l", 15.56, 14.96)]
)
def test_gmacs_match_the_official_counts(name, gmacs, no_attn):
    row = summary.summarize(name, 17, (256, 192))
    assert abs(row["gmacs"] / gmacs - 1) < 0.005  # Within the official figures' rounding.
    assert abs(row["gmacs_no_attention"] / no_attn - 1) < 0.005


def test_xla_cost_analysis_gmacs_of_aggpose_l():
    # XLA's count of the compiled (unrolled) forward also includes elementwise work, so it sits a
    # little above the matmul/conv count; the models issue asks for it within 2% of 15.56.
    row = summary.summarize("aggpose_l", 17, (256, 192), xla=True)
    assert row["gmacs"] < row["xla_gmacs"] < 1.02 * 15.56


def test_drop_path_rates_follow_the_official_schedule():
    rates = aggpose.group_drop_path_rates(aggpose.VARIANTS["l"]["depths"], 0.1)
    step = 0.1 / 51
    assert len(rates["block3"]) == 40 and rates["block1"][0] == 0.0
    np.testing.assert_allclose(rates["block1_3"], [0, step, 2 * step])
    np.testing.assert_allclose(rates["block2_1"], [3 * step, 4 * step, 5 * step])
    np.testing.assert_allclose(rates["block3_1"], [9 * step, 10 * step, 11 * step])
    np.testing.assert_allclose(rates["block4"], [49 * step, 50 * step, 0.1])
    # A per-group table the official constructor cannot express.
    odd = aggpose.group_drop_path_rates(((1, 2, 1, 1), (1, 3, 1), (1, 1), (1,)), 0.3)
    np.testing.assert_allclose(odd["block1_1"], [0.0, 0.1])
    np.testing.assert_allclose(odd["block2_1"], [0.1, 0.2, 0.3])  # Clipped at the last entry.


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="known: l, s, tiny"):
        make_model("aggpose_xl", 17)


@pytest.fixture(scope="module")
def tiny():
    model = make_model("aggpose_tiny", 5, drop_path_rate=0.5, scan_blocks=False)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    # Fan-in scaled random params (cheaper than compiling init): outputs of order 1.
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(
            np.float32
        ),
        shapes,
    )
    images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    ref = jax.jit(model.apply)({"params": params}, images)["heatmaps"]
    return model, params, images, ref


def test_tiny_train_mode_drop_path(tiny):
    model, params, images, ref = tiny
    assert ref.shape == (2, 16, 16, 5) and ref.dtype == jnp.float32
    assert float(jnp.abs(ref).max()) > 1e-3
    train = jax.jit(
        lambda p, x, key: model.apply(p, x, train=True, rngs={"dropout": key})["heatmaps"]
    )
    a = train({"params": params}, images, jax.random.key(2))
    b = train({"params": params}, images, jax.random.key(3))
    assert a.shape == ref.shape
    assert not np.allclose(a, ref) and not np.allclose(a, b)
    # Without drop path, train mode is the eval forward.
    plain = model.clone(drop_path_rate=0.0)
    c = jax.jit(lambda p, x: plain.apply(p, x, train=True)["heatmaps"])({"params": params}, images)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-6 * float(jnp.abs(ref).max()))


@pytest.mark.slow
def test_scan_remat_gives_the_same_values_and_grads(tiny):
    from aggpose_jax.models import convert

    model, params, images, ref = tiny
    stacked = convert.stack_block_groups(params)
    rematted = model.clone(scan_blocks=True, remat=True)

    def loss(m):
        return lambda p: jnp.mean(m.apply({"params": p}, images, train=True,
                                          rngs={"dropout": jax.random.key(4)})["heatmaps"] ** 2)  # fmt: skip

    v1, g1 = jax.jit(jax.value_and_grad(loss(model.clone(drop_path_rate=0.0))))(params)
    v2, g2 = jax.jit(jax.value_and_grad(loss(rematted.clone(drop_path_rate=0.0))))(stacked)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    g2 = convert.unstack_block_groups(g2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6), g1, g2)


def test_bfloat16_compute(tiny):
    model, params, images, ref = tiny
    out = jax.jit(model.clone(dtype=jnp.bfloat16).apply)({"params": params}, images)["heatmaps"]
    assert out.dtype == jnp.float32  # Heatmaps come back in float32 whatever the compute dtype.
    rel = float(jnp.abs(out - ref).max() / jnp.abs(ref).max())
    assert 0 < rel < 0.1


def test_bf16_attention_softmax_is_float32():
    q = jnp.zeros((1, 64, 2, 32), jnp.bfloat16)
    jaxpr = jax.make_jaxpr(lambda q: attention.attend(q, q, q, "xla"))(q)

    def exps(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "exp":
                yield eqn.invars[0].aval.dtype
            for v in eqn.params.values():
                if hasattr(v, "jaxpr"):
                    yield from exps(v.jaxpr)

    dtypes = list(exps(jaxpr.jaxpr))
    assert dtypes and all(d == jnp.float32 for d in dtypes)
    assert attention.attend(q, q, q, "xla").dtype == jnp.bfloat16


@pytest.mark.parametrize("name", ["mit_b0", "mit_b2", "segformer_b5"])
def test_other_variants_build(name):
    model = make_model(name, 3, scan_blocks=True)
    out = jax.eval_shape(
        lambda x: model.init_with_output(jax.random.key(0), x)[0], jnp.zeros((2, 64, 96, 3))
    )
    if name.startswith("mit"):
        dims = mit.VARIANTS[name.removeprefix("mit_")]["embed_dims"]
        assert [o.shape for o in out["stages"]] == [(2, 64 // s, 96 // s, c) for s, c in
                                          zip((4, 8, 16, 32), dims, strict=True)]  # fmt: skip
    else:
        assert out["heatmaps"].shape == (2, 16, 24, 3)
