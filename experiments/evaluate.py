"""Evaluation only: python -m experiments.evaluate --checkpoint=RUN_DIR_OR_PARAMS [--exp=NAME[:tiny]]
[--workdir=DIR] [--config.a.b=VALUE ...]

Scores a checkpoint on the config's validation data as the trainer's evaluation does (the same task,
eval function and predictor), with any config override: `task.decode`, `eval.flip_test`,
`eval.use_gt_bbox`, `data.root`, ... The checkpoint is a run folder (its `config.json`, and the
variables of `best/`, else of the latest `checkpoints/` step) or a weights file any init reads (a flax
msgpack, a converted or official PyTorch checkpoint); a weights file needs `--exp` for its config.
Prints the metrics as one JSON line and writes `<workdir>/eval.json`.
"""

import argparse
import json
import logging
import pathlib
import sys
import time
from typing import Any

import ml_collections

from experiments import run
from experiments.configs import common

log = logging.getLogger("experiments.evaluate")


def _as_schema_type(old: Any, value: Any) -> Any:
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(_as_schema_type((), v) if isinstance(v, list) else v for v in value)
    return value


def _assign(node: ml_collections.ConfigDict, values: dict[str, Any], prefix: str = "") -> None:
    for key, value in values.items():
        if key not in node:
            log.warning("config.json key %s%s is not in today's schema: ignored", prefix, key)
        elif isinstance(node[key], ml_collections.ConfigDict):
            _assign(node[key], value, f"{prefix}{key}.")
        else:
            node[key] = _as_schema_type(node[key], value)


def load_run_config(checkpoint: str, exp: str = "") -> ml_collections.ConfigDict:
    """The locked config of a run folder (its config.json) or, for a weights file, of `exp`."""
    saved = pathlib.Path(checkpoint) / "config.json"
    if not saved.exists():
        if not exp:
            raise run.UsageError(
                f"{checkpoint}: no config.json (not a run folder): name its experiment with --exp"
            )
        return run.load_config(exp)
    values = json.loads(saved.read_text())
    name = values.get("exp_name", "")
    config = run.load_config(name) if name in run.known_experiments() else common.get_base_config()
    with config.unlocked():
        config.model = common.model_block(values["model"]["family"], values["model"]["variant"])
    _assign(config, values)
    config.lock()
    return config


def variables_path(checkpoint: str) -> str:
    """The weights of a checkpoint: a run folder's best/ (else checkpoints/), or the file itself."""
    p = pathlib.Path(checkpoint).absolute()  # orbax restores absolute paths only
    if (p / "config.json").exists():
        for sub in ("best", "checkpoints"):
            if (p / sub).is_dir() and any(s.name.isdigit() for s in (p / sub).iterdir()):
                return str(p / sub)
        raise FileNotFoundError(f"{checkpoint}: a run folder without best/ or checkpoints/ steps")
    if not p.exists():
        raise FileNotFoundError(f"{checkpoint}: no such file or folder")
    return str(p)


def default_workdir(checkpoint: str) -> pathlib.Path:
    """<run folder>/eval, or eval/ beside a weights file."""
    p = pathlib.Path(checkpoint)
    return p / "eval" if (p / "config.json").exists() else p.parent / "eval"


def evaluate(
    checkpoint: str,
    overrides: list[tuple[str, str]] | tuple = (),
    *,
    exp: str = "",
    workdir: str | pathlib.Path | None = None,
    config: ml_collections.ConfigDict | None = None,
) -> dict[str, float]:
    """The task's metrics ({"AP", "AR", ...}) of `checkpoint` under `overrides` (key, text) pairs.

    `config` (already overridden) replaces the checkpoint's; `workdir` receives the results JSON.
    """
    import jax
    import jax.numpy as jnp

    from aggpose_jax import runtime
    from aggpose_jax.tasks import make_predictor
    from aggpose_jax.training import init, setup
    from experiments import data as data_lib

    if config is None:
        config = load_run_config(checkpoint, exp)
        for key, text in overrides:
            run.apply_override(config, key, text)
    task = data_lib.make_task(config)
    model = setup.make_model(config, task)
    mesh = runtime.make_mesh(config.mesh.data, config.mesh.fsdp)
    image = jnp.zeros((1, *config.data.input_hw, 3), jnp.float32)
    fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False))
    source = variables_path(checkpoint)
    variables, _ = init.load_into(fresh, init.read_variables(source), source=source)
    variables = jax.device_put(variables, runtime.replicated(mesh))
    predictor = make_predictor(task, setup.make_apply(model), mesh, lambda: variables)
    data = data_lib.make_data(config, task)
    out = pathlib.Path(workdir) if workdir else default_workdir(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    return data.eval_fn(predictor, out)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    p = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a run folder or a weights file")
    p.add_argument("--exp", default="", help="NAME[:tiny] of a weights file's experiment")
    p.add_argument("--workdir", default="", help="where eval.json and the results go")
    p.add_argument("--jax_cache_dir", default="", help="persistent XLA compilation cache")
    args, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        overrides = [run.parse_args(["--exp=x", item])[1][0] for item in rest]
        config = load_run_config(args.checkpoint, args.exp)
        for key, text in overrides:
            run.apply_override(config, key, text)
    except run.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run.setup_jax(argparse.Namespace(coordinator_address="", jax_cache_dir=args.jax_cache_dir))
    workdir = pathlib.Path(args.workdir) if args.workdir else default_workdir(args.checkpoint)
    t0 = time.perf_counter()
    try:
        metrics = evaluate(args.checkpoint, config=config, workdir=workdir)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    record = {"checkpoint": args.checkpoint, "overrides": dict(overrides), "metrics": metrics,
              "eval_s": time.perf_counter() - t0}  # fmt: skip
    (workdir / "eval.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
