"""Every experiment config builds and locks; the command line rejects unknown keys, bad values and
unknown experiments with a clear message."""

import pytest

from aggpose_jax.models import build
from experiments import run
from experiments.configs import common

EXPERIMENTS = [
    "aggpose_l", "aggpose_s", "aggpose_l_384", "aggpose_l_infant", "segformer_b5_pose",
    "hrnet_w32", "hrnet_w48", "hrnet_w48_infant", "ramgpr_w32", "ramgpr_w48", "ramgpr_w48_384",
    "wgnet", "mln_coco", "openpose_coco", "aggpose_l_bottomup", "mln_infant", "aggpose_l_mim",
    "mit_b5_mim",
]  # fmt: skip
BOTTOMUP = {"mln_coco": 8, "openpose_coco": 8, "aggpose_l_bottomup": 4, "mln_infant": 8}


def test_known_experiments_are_the_config_files():
    assert run.known_experiments() == sorted(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
@pytest.mark.parametrize("arg", [None, "tiny"])
def test_config_builds_locked_with_the_base_schema(name, arg):
    config = run.load_config(name if arg is None else f"{name}:{arg}")
    base = common.get_base_config()

    def keys(c, prefix=""):
        out = set()
        for k, v in c.items():
            out |= keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
        return out

    # Nothing re-declared, nothing missing; model.options are the family's own OPTIONS.
    family = build.family_module(config.model.family)
    assert set(config.model.options) == set(family.OPTIONS)
    shared = lambda c: {k for k in keys(c) if not k.startswith("model.options.")}  # noqa: E731
    assert shared(config) == shared(base)
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.optim.lrr = 1.0
    h, w = config.data.input_hw
    stride = BOTTOMUP.get(name, 4)  # the model's output stride: targets are made at it
    assert tuple(config.data.heatmap_hw) == (h // stride, w // stride)
    if config.model.family in ("mln", "openpose"):
        assert h % 8 == 0 and w % 8 == 0 and config.task.name == "bottomup_paf"
    else:
        assert h % 32 == 0 and w % 32 == 0
    assert (config.task.name == "bottomup_paf") == (name in BOTTOMUP)
    assert (config.task.name == "masked_image") == name.endswith("_mim")
    if arg == "tiny":
        assert config.train.global_batch_size <= 12 and config.train.total_steps <= 600
        assert config.data.root == ""


def test_official_recipe_values():
    cl = run.load_config("aggpose_l")
    assert (cl.optim.lr, cl.optim.weight_decay, cl.optim.milestones_epochs) == (
        1e-3,
        0.01,
        (170, 200, 240),
    )
    assert (cl.train.num_epochs, cl.train.global_batch_size, cl.data.sigma) == (500, 64, 2.0)
    assert cl.optim.one_epoch_early
    l384 = run.load_config("aggpose_l_384")
    assert (tuple(l384.data.input_hw), l384.data.sigma, l384.train.global_batch_size) == (
        (384, 288),
        3.0,
        32,
    )
    assert (l384.optim.milestones_epochs, l384.train.num_epochs) == ((210, 280, 350), 400)
    inf = run.load_config("aggpose_l_infant")
    assert (inf.optim.lr, inf.optim.milestones_epochs, inf.train.num_epochs) == (
        1e-4,
        (50, 80),
        100,
    )
    assert (
        inf.data.keypoint_format == "infant" and inf.train.init_reinit == "^params/final_layer/fc2/"
    )
    mln = run.load_config("mln_coco")
    assert (tuple(mln.data.input_hw), mln.data.sigma * 8, mln.task.nms) == ((368, 368), 7.0, "none")
    assert mln.train.init_take == "^params/features/" and mln.model.family == "mln"
    assert run.load_config("aggpose_l_bottomup").model.options.head == "paf"


def test_overrides_typed_and_errors():
    config = run.load_config("aggpose_l:tiny")
    run.apply_override(config, "optim.lr", "1e-4")
    run.apply_override(config, "data.input_hw", "(64, 32)")
    run.apply_override(config, "model.options.dtype", "bfloat16")
    run.apply_override(config, "train.total_steps", "7")
    assert (config.optim.lr, tuple(config.data.input_hw), config.model.options.dtype) == (
        1e-4,
        (64, 32),
        "bfloat16",
    )
    with pytest.raises(run.UsageError, match="did you mean lr"):
        run.apply_override(config, "optim.lrr", "1")
    with pytest.raises(run.UsageError, match="unknown config key"):
        run.apply_override(config, "optimizer.lr", "1")
    with pytest.raises(run.UsageError, match="bad value for train.total_steps"):
        run.apply_override(config, "train.total_steps", "many")
    with pytest.raises(run.UsageError, match="bad value for optim.one_epoch_early"):
        run.apply_override(config, "optim.one_epoch_early", "3")
    with pytest.raises(run.UsageError, match="unknown experiment 'aggpose_xl'; known: aggpose_l"):
        run.load_config("aggpose_xl")
    with pytest.raises(ValueError, match="unknown config variant"):
        run.load_config("aggpose_l:huge")


def test_main_reports_usage_errors(capsys):
    assert run.main(["--exp=nope"]) == 2
    assert "known: aggpose_l" in capsys.readouterr().err
    assert run.main(["--exp=aggpose_l:tiny", "--config.optim.nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    args, overrides = run.parse_args(["--exp=x", "--config.optim.lr=1", "train.seed=3"])
    assert overrides == [("optim.lr", "1"), ("train.seed", "3")]


@pytest.mark.parametrize(
    "override,named",
    [
        ("--config.data.root=/nonexistent", "/nonexistent"),
        ("--config.model.variant=xl", "unknown variant 'xl' of model family 'aggpose'"),
        ("--config.model.family=hrnet_v9", "unknown model family 'hrnet_v9'"),
        ("--config.task.nms=greedy", "unknown task.nms 'greedy'"),
    ],
)
def test_main_answers_bad_data_and_names_in_one_line(override, named, tmp_path, capsys):
    """A new user's mistakes: one line naming the path or value, exit 2, no traceback."""
    argv = ["--exp=aggpose_l:tiny", override, f"--workdir={tmp_path / 'run'}", "--jax_cache_dir="]
    assert run.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start
