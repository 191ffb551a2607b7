"""Entry point: python -m experiments.run --exp=NAME[:tiny] [--workdir=DIR] [--config.a.b=VALUE ...]

Builds the config (experiments/configs/NAME.py, locked; overrides are type-checked), starts
jax.distributed when asked, builds this host's data iterators from data_pipelines and calls
`aggpose_jax.training.trainer.train_and_evaluate`. Without `data.root` the run trains and evaluates on
the bundled real COCO sample (4 images) and says so.

Overrides: `--config.optim.lr=1e-4` or `optim.lr=1e-4`; values are Python literals (numbers, True,
tuples like (256,192)) or bare strings. Multi-host: --coordinator_address=HOST:PORT --num_processes=N
--process_id=I (or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment).
"""

import argparse
import ast
import difflib
import importlib
import logging
import os
import pathlib
import pkgutil
import sys

import ml_collections

log = logging.getLogger("experiments.run")

CONFIGS_PACKAGE = "experiments.configs"


class UsageError(ValueError):
    """A bad command line: unknown experiment, unknown config key or a value of the wrong type."""


def known_experiments() -> list[str]:
    """Names of the experiment config modules (every module of experiments/configs but common)."""
    pkg = importlib.import_module(CONFIGS_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "common")


def load_config(exp: str) -> ml_collections.ConfigDict:
    """`NAME` or `NAME:ARG` -> the locked config of experiments/configs/NAME.py, get_config(ARG)."""
    name, _, arg = exp.partition(":")
    known = known_experiments()
    if name not in known:
        raise UsageError(f"unknown experiment {name!r}; known: {', '.join(known)}")
    module = importlib.import_module(f"{CONFIGS_PACKAGE}.{name}")
    return module.get_config(arg or None)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets config.<key> (dotted) from a command-line string, keeping the declared type."""
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise UsageError(
                f"unknown config key {key!r}: {'.'.join(parents[: i + 1])!r} is no group"
            )
        node = node[part]
    if leaf not in node:
        close = difflib.get_close_matches(leaf, list(node.keys()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown config key {key!r}{hint}")
    old = node[leaf]
    value = _parse_value(text)
    if isinstance(old, str) and not isinstance(value, str):
        value = text  # a string field takes the text as written (e.g. a numeric-looking path)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, bool) != isinstance(value, bool) or (
        isinstance(old, tuple) != isinstance(value, tuple)
    ):
        raise UsageError(f"bad value for {key}: {text!r} is not a {type(old).__name__}")
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise UsageError(f"bad value for {key}: {text!r} ({e})") from e


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
    """Known flags, and the config overrides (--config.a.b=v or a.b=v) in order."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.run", description=__doc__.split("\n")[0]
    )
    p.add_argument("--exp", required=True, help="experiment NAME or NAME:tiny")
    p.add_argument("--workdir", default="", help="run folder (default workdirs/<exp>)")
    p.add_argument("--coordinator_address", default=os.environ.get("JAX_COORDINATOR_ADDRESS", ""))
    p.add_argument("--num_processes", type=int, default=int(os.environ.get("JAX_NUM_PROCESSES", 0)))
    p.add_argument("--process_id", type=int, default=int(os.environ.get("JAX_PROCESS_ID", -1)))
    p.add_argument("--jax_cache_dir", default=os.path.expanduser("~/.cache/aggpose_jax/xla"),
                   help="persistent XLA compilation cache ('' to disable)")  # fmt: skip
    args, rest = p.parse_known_args(argv)
    overrides = []
    for item in rest:
        body = item[len("--config.") :] if item.startswith("--config.") else item
        if "=" not in body or body.startswith("-"):
            raise UsageError(f"unrecognised argument {item!r} (overrides look like --config.a.b=v)")
        key, _, value = body.partition("=")
        overrides.append((key, value))
    return args, overrides


def setup_jax(args: argparse.Namespace) -> None:
    """Multi-host start-up and the compilation cache; must run before any computation."""
    import jax

    if args.coordinator_address:
        if jax.config.jax_platforms in (None, "", "cpu") and not _has_accelerator():
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator_address,
            num_processes=args.num_processes or None,
            process_id=args.process_id if args.process_id >= 0 else None,
        )
    if args.jax_cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.jax_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _has_accelerator() -> bool:
    return any(pathlib.Path(p).exists() for p in ("/dev/nvidia0", "/dev/accel0"))


def main(argv: list[str] | None = None) -> int:
    """Runs one experiment; returns the process exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("absl", "jax._src.xla_bridge", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        config = load_config(args.exp)
        for key, value in overrides:
            apply_override(config, key, value)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    setup_jax(args)

    from aggpose_jax.training import setup, trainer
    from experiments import data as data_lib

    workdir = pathlib.Path(args.workdir or f"workdirs/{args.exp.replace(':', '_')}")
    try:
        task = data_lib.make_task(config)
        setup.make_model(config, task)  # a bad model family, variant or option fails here
        data = data_lib.make_data(config, task)
    except (OSError, ValueError, KeyError) as e:  # bad data paths or annotations, bad names
        print(f"error: {e}", file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    try:
        summary = trainer.train_and_evaluate(
            config, workdir, task=task, train_iter=data.train_iter,
            steps_per_epoch=data.steps_per_epoch, eval_fn=data.eval_fn, after_train=data.render_fn,
        )  # fmt: skip
    except trainer.NonFiniteError as e:
        log.error("%s", e)
        return 1
    if summary["preempted"]:
        log.info("preempted at step %d; rerun the same command to resume", summary["step"])
    elif "eval" in summary:
        log.info(
            "done: step %d, %s %.4f; workdir %s", summary["step"], task.best_metric,
            summary["eval"][task.best_metric], workdir,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
