"""A study: a base experiment, named runs (override sets), the columns to report, the papers' numbers.

A study file (`experiments/ablations/<name>.py`) defines `STUDY = Study(...)`. Each run is a dict of
config overrides (dotted keys, Python values; the key "exp" changes the experiment), or `Pending(...)`
for a row whose model or task does not exist yet. `plan` turns a study into `RunSpec`s for one scale
and checks every override against the locked config before anything runs, so a mistyped key fails at
once, naming the key. `estimate_compute` gives the training compute of a run from its measured GMACs.
"""

import dataclasses
import functools
import importlib
import json
import math
import pkgutil
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from aggpose_jax.keypoints import metainfo
from aggpose_jax.models import build
from aggpose_jax.training import setup
from experiments import data as data_lib
from experiments import run

NOT_STUDIES = ("study", "report")  # the modules of this package that hold no STUDY
DEFAULT_COLUMNS = ("AP", "AR", "params_M", "GMACs", "img_per_s", "wall_min")

# Training persons of the top-down sample lists, for runs whose steps per epoch come from the data:
# COCO train2017 yields 149,813 person boxes with keypoints (the HRNet / AggPose COCO loaders).
TRAIN_SAMPLES = {"coco": 149_813}
# The compute estimate's assumption: 40% model-FLOPs utilisation of an A100's 312 TFLOP/s (bf16).
ASSUMED_FLOPS_PER_S = 0.4 * 312e12
ASSUMPTION = "40% MFU of an A100's 312 TFLOP/s (bfloat16), training FLOPs = 3 x 2 x MACs per image"


@dataclasses.dataclass(frozen=True)
class Pending:
    """A row that cannot run yet: `what` it waits for (shown in the table, never run or faked)."""

    what: str


@dataclasses.dataclass(frozen=True)
class Required:
    """An override value the user gives on the command line: `--run.<row>.<key>=VALUE`."""

    what: str


@dataclasses.dataclass(frozen=True)
class Study:
    """An ablation: runs of `base` (or of the experiment a run names with "exp") with overrides."""

    title: str
    base: str
    runs: Mapping[str, Mapping[str, Any] | Pending]
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    paper: Mapping[str, tuple[float, str]] = dataclasses.field(
        default_factory=dict
    )  # row: AP, source
    eval_only: bool = False  # runs evaluate one checkpoint (`--checkpoint`) instead of training
    notes: str = ""  # printed under the table (e.g. what the tiny scale runs on)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One row of a planned study: the experiment, the overrides as command-line text, or why not."""

    name: str
    exp: str  # NAME or NAME:tiny
    overrides: tuple[tuple[str, str], ...] = ()
    skip: str = ""  # "pending: ..." or "skipped: needs ..."; empty when the run can go
    config: ml_collections.ConfigDict | None = None  # the run's locked config (None when skipped)

    def argv(self, workdir: str) -> list[str]:
        """The arguments of `experiments.run` for this run."""
        return [f"--exp={self.exp}", f"--workdir={workdir}"] + [
            f"--config.{k}={v}" for k, v in self.overrides
        ]

    def command(self, workdir: str) -> str:
        return shlex.join(["python", "-m", "experiments.run", *self.argv(workdir)])


def known_studies() -> list[str]:
    """The study modules of experiments/ablations."""
    pkg = importlib.import_module(__package__)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in NOT_STUDIES)


def load_study(name: str) -> Study:
    """The STUDY of experiments/ablations/<name>.py; an unknown name is a UsageError listing them."""
    known = known_studies()
    if name not in known:
        raise run.UsageError(f"unknown study {name!r}; known: {', '.join(known)}")
    return importlib.import_module(f"{__package__}.{name}").STUDY


def as_text(value: Any) -> str:
    """A Python value as `experiments.run` parses it back (strings bare, the rest as literals)."""
    return value if isinstance(value, str) else repr(value)


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise run.UsageError(f"unknown config key {key!r}")
        node = node[part]
    return node


def check_model(config: ml_collections.ConfigDict) -> None:
    """Builds (without initialising) the config's model: a bad variant or option value fails here."""
    try:
        setup.make_model(config, data_lib.make_task(config))  # sized by the task, as the trainer
    except (ValueError, KeyError, ModuleNotFoundError) as e:
        raise run.UsageError(str(e)) from e


def plan(
    study: Study,
    scale: str,
    overrides: Sequence[tuple[str, str]] = (),
    row_overrides: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    base_config: ml_collections.ConfigDict | None = None,
) -> list[RunSpec]:
    """The study's runs at `scale` ("tiny" | "full"), every override checked; raises UsageError.

    `overrides` apply to every run (e.g. data.root), `row_overrides[row]` to one run (e.g. a weights
    file a `Required` value asks for). `base_config` (evaluation-only studies: the checkpoint's config)
    replaces the experiment's config.
    """
    row_overrides = dict(row_overrides or {})
    unknown = sorted(set(row_overrides) - set(study.runs))
    if unknown:
        raise run.UsageError(
            f"unknown run(s) {unknown} of {study.title!r}; known: {list(study.runs)}"
        )
    specs = []
    for name, row in study.runs.items():
        if isinstance(row, Pending):
            specs.append(RunSpec(name, study.base, skip=f"pending: {row.what}"))
            continue
        row = dict(row)
        exp = row.pop("exp", study.base)
        exp = f"{exp}:tiny" if scale == "tiny" and ":" not in exp else exp
        if base_config is not None:  # the checkpoint's experiment
            tiny = base_config.model.variant == "tiny"
            exp = f"{base_config.exp_name}{':tiny' if tiny else ''}"
        config = base_config.copy_and_resolve_references() if base_config else run.load_config(exp)
        given = dict(row_overrides.get(name, ()))
        texts, missing = [], []
        for key, value in row.items():
            _lookup(config, key)
            if key in given:
                continue
            if isinstance(value, Required):
                missing.append(f"--run.{name}.{key}=<{value.what}>")
            else:
                texts.append((key, as_text(value)))
        texts += list(overrides) + list(given.items())
        try:
            for key, text in texts:
                run.apply_override(config, key, text)
            check_model(config)
        except run.UsageError as e:
            raise run.UsageError(f"run {name!r}: {e}") from e
        skip = f"skipped: needs {' '.join(missing)}" if missing else ""
        specs.append(RunSpec(name, exp, tuple(texts), skip=skip, config=config))
    return specs


def model_name(config: ml_collections.ConfigDict) -> str:
    return f"{config.model.family}_{config.model.variant}"


def summary_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The model options that differ from the family's defaults (what `--option` would pass)."""
    defaults = build.family_module(config.model.family).OPTIONS
    return {k: v for k, v in config.model.options.to_dict().items() if defaults.get(k) != v}


@functools.lru_cache(maxsize=64)
def _summarize(name: str, k: int, input_hw: tuple[int, int], options_json: str) -> dict[str, Any]:
    from aggpose_jax.models import summary

    return summary.summarize(name, k, input_hw, options=json.loads(options_json))


def model_summary(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """`aggpose_jax.models.summary.summarize` of the run's model, keypoints and input size."""
    k = metainfo.get_format(config.data.keypoint_format).num_keypoints
    options = json.dumps(summary_options(config), sort_keys=True)
    return _summarize(model_name(config), k, tuple(config.data.input_hw), options)


def total_steps(
    config: ml_collections.ConfigDict, steps_per_epoch: int | None = None
) -> int | None:
    """The run's optimizer steps (None when its steps per epoch come from data of unknown size)."""
    tc = config.train
    if tc.total_steps > 0:
        return tc.total_steps
    spe = tc.steps_per_epoch if tc.steps_per_epoch > 0 else steps_per_epoch
    if not spe and config.data.root and config.data.keypoint_format in TRAIN_SAMPLES:
        spe = TRAIN_SAMPLES[config.data.keypoint_format] // config.train.global_batch_size
    return tc.num_epochs * spe if spe else None


def estimate_compute(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """GMACs per image, steps, images, training FLOPs and GPU-hours (at ASSUMED_FLOPS_PER_S)."""
    gmacs = model_summary(config)["gmacs"]
    steps = total_steps(config)
    out = {"gmacs": gmacs, "steps": steps, "images": None, "flops": None, "gpu_hours": None}
    if steps is not None:
        images = steps * config.train.global_batch_size
        flops = 3 * 2 * gmacs * 1e9 * images
        out.update(images=images, flops=flops, gpu_hours=flops / ASSUMED_FLOPS_PER_S / 3600)
    return out


def format_compute(name: str, c: dict[str, Any]) -> str:
    """One line of `estimate_compute`."""
    if c["steps"] is None:
        return (
            f"{name}: {c['gmacs']:.2f} GMACs/image; steps unknown (steps per epoch come from data "
            f"of unknown size: give --config.train.steps_per_epoch or --config.train.total_steps)"
        )
    exp = int(math.floor(math.log10(c["flops"]))) if c["flops"] else 0
    return (
        f"{name}: {c['gmacs']:.2f} GMACs/image x {c['images']:,} images ({c['steps']:,} steps) "
        f"-> {c['flops'] / 10**exp:.2f}e{exp} FLOPs -> {c['gpu_hours']:.1f} GPU-hours"
    )
