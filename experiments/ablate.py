"""Ablation studies: python -m experiments.ablate --study=NAME [--scale=tiny|full] [--workdir=DIR]
[--dry-run] [--checkpoint=RUN_DIR_OR_PARAMS] [--config.a.b=VALUE ...] [--run.ROW.a.b=VALUE ...]

Runs a study's experiments (experiments/ablations/<NAME>.py) one after another in this process, or with
--dry-run prints one command per run for a cluster scheduler. Resumable: a finished run (its final
evaluation is in its metrics.jsonl) is read, not redone; an interrupted one resumes from its latest
checkpoint; a failed one becomes a row saying so and the study goes on. Writes table.md, table.csv and
ap_vs_gflops.png into the study's workdir (default workdirs/ablations/<NAME>_<scale>).

`--scale=tiny` runs each experiment's tiny variant (CPU-sized, the bundled 4-image COCO sample);
`--scale=full` runs the real configs (give --config.data.root) and first prints each run's compute.
`--config.KEY=V` applies to every run, `--run.ROW.KEY=V` to one (e.g. a weights file a row asks for).
Evaluation-only studies (abl_decode) score `--checkpoint` (a run folder, or a weights file of the
study's base experiment, `--exp` to name another) under each row's overrides.
"""

import argparse
import contextlib
import io
import logging
import os
import pathlib
import sys
import time
import traceback

from experiments import evaluate, run
from experiments.ablations import report
from experiments.ablations import study as study_lib

TINY_LABEL = "tiny scale"
TINY_WARNING = (
    "Tiny scale: CPU-sized models trained for a few minutes on the bundled 4-image COCO sample; "
    "these numbers test the pipeline and say nothing about the papers' claims at full scale."
)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list, dict]:
    """Flags, the overrides of every run, and those of one run ({row: [(key, text)]})."""
    p = argparse.ArgumentParser(prog="python -m experiments.ablate", description=__doc__)
    p.add_argument("--study", required=True, help=f"one of {', '.join(study_lib.known_studies())}")
    p.add_argument("--scale", choices=("tiny", "full"), default="tiny")
    p.add_argument("--workdir", default="", help="default workdirs/ablations/<study>_<scale>")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print one command per run (and the compute at full scale), run nothing")  # fmt: skip
    p.add_argument(
        "--checkpoint", default="", help="evaluation-only studies: run folder or weights"
    )
    p.add_argument("--exp", default="", help="the experiment of a --checkpoint weights file")
    p.add_argument("--jax_cache_dir", default="", help="persistent XLA cache (default: run's)")
    args, rest = p.parse_known_args(argv)
    overrides, rows = [], {}
    for item in rest:
        if item.startswith("--run."):
            body = item[len("--run.") :]
            name, _, keyval = body.partition(".")
            key, sep, value = keyval.partition("=")
            if not sep or not key:
                raise run.UsageError(f"bad argument {item!r} (per-run overrides: --run.ROW.a.b=v)")
            rows.setdefault(name, []).append((key, value))
        else:
            overrides += run.parse_args(["--exp=-", item])[1]
    return args, overrides, rows


@contextlib.contextmanager
def _capture_errors():
    """Collects the `error:` lines a run prints and the ERROR records it logs (for its row)."""
    lines: list[str] = []

    class Tee(io.TextIOBase):
        def write(self, s):
            lines.extend(x for x in s.splitlines() if x.startswith("error:"))
            return sys.__stderr__.write(s)

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage().splitlines()[0])

    handler = Collect(level=logging.ERROR)
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stderr(Tee()):
            yield lines
    finally:
        logging.getLogger().removeHandler(handler)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def train(spec: study_lib.RunSpec, run_dir: pathlib.Path, cache_dir: str) -> str:
    """Runs (or resumes) one training run; "done", "interrupted" or "failed: <why>"."""
    argv = spec.argv(str(run_dir)) + ([f"--jax_cache_dir={cache_dir}"] if cache_dir else [])
    t0, outcome = time.perf_counter(), "interrupted"
    try:
        with _capture_errors() as errors:
            rc = run.main(argv)
        if rc != 0:
            outcome = f"failed: {errors[-1] if errors else f'exit status {rc}'}"
        elif report.run_state(run_dir, spec.config) == "finished":
            outcome = "done"
    except Exception as e:  # noqa: BLE001 - any failure of one run is that run's row
        outcome = f"failed: {_one_line(e)}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "ablate_error.txt").write_text(traceback.format_exc())
    finally:
        report.record_attempt(run_dir, time.perf_counter() - t0, outcome)
    return outcome


def evaluate_row(spec, study, checkpoint: str, run_dir: pathlib.Path) -> report.Row:
    t0 = time.perf_counter()
    try:
        metrics, status = evaluate.evaluate(checkpoint, config=spec.config, workdir=run_dir), "done"
    except Exception as e:  # noqa: BLE001
        metrics, status = None, f"failed: {_one_line(e)}"
    return report.eval_row(spec, study, metrics, time.perf_counter() - t0, status)


def _commands(specs, study, args, workdir: pathlib.Path) -> list[str]:
    out = []
    for spec in specs:
        run_dir = str(workdir / spec.name)
        if spec.skip:
            out.append(f"# {spec.name}: {spec.skip}")
        elif study.eval_only:
            exp = [f"--exp={args.exp or spec.exp}"] if not (pathlib.Path(args.checkpoint) / "config.json").exists() else []  # fmt: skip
            flags = [f"--config.{k}={v}" for k, v in spec.overrides]
            out.append(" ".join(["python -m experiments.evaluate", f"--checkpoint={args.checkpoint}",
                                 *exp, f"--workdir={run_dir}", *flags]))  # fmt: skip
        else:
            out.append(spec.command(run_dir))
    return out


def print_compute(specs) -> None:
    print(f"compute of each run at full scale ({study_lib.ASSUMPTION}):")
    hours, unknown = 0.0, 0
    for spec in specs:
        if spec.config is None:
            print(f"  {spec.name}: {spec.skip}")
            continue
        c = study_lib.estimate_compute(spec.config)
        hours += c["gpu_hours"] or 0.0
        unknown += c["gpu_hours"] is None
        skip = f" ({spec.skip})" if spec.skip else ""
        print(f"  {study_lib.format_compute(spec.name, c)}{skip}")
    more = f" + {unknown} run(s) of unknown steps" if unknown else ""
    print(f"  total: {hours:.1f} GPU-hours{more}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Runs a study; 0 when every runnable row is done, 1 when a run failed or was stopped, 2 usage."""
    # Before any run: run.main's basicConfig would find _capture_errors' handler and do nothing.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args, overrides, row_overrides = parse_args(sys.argv[1:] if argv is None else argv)
        study = study_lib.load_study(args.study)
        base_config = None
        if study.eval_only:
            if not args.checkpoint:
                raise run.UsageError(
                    f"study {args.study!r} evaluates a checkpoint: give --checkpoint=RUN_DIR_OR_PARAMS"
                )
            exp = args.exp or (f"{study.base}:tiny" if args.scale == "tiny" else study.base)
            base_config = evaluate.load_run_config(args.checkpoint, exp)
        elif args.checkpoint:
            raise run.UsageError(
                f"study {args.study!r} trains: --checkpoint is for evaluation-only"
            )
        specs = study_lib.plan(study, args.scale, overrides, row_overrides, base_config)
        roots = {s.config.data.root for s in specs if s.config is not None}
        if args.scale == "full" and not study.eval_only and not args.dry_run and "" in roots:
            raise run.UsageError("--scale=full trains on real data: give --config.data.root=DIR")
    except run.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tiny = any(s.config is not None and s.config.model.variant == "tiny" for s in specs)
    label = TINY_LABEL if tiny else "full scale"
    if study.eval_only:
        default = f"workdirs/ablations/{args.study}_{pathlib.Path(args.checkpoint).stem}"
    else:
        default = f"workdirs/ablations/{args.study}_{args.scale}"
    workdir = pathlib.Path(args.workdir or default)
    if args.scale == "full" and not study.eval_only:
        print_compute(specs)
    if args.dry_run:
        print("\n".join(_commands(specs, study, args, workdir)))
        return 0
    if study.eval_only and (args.jax_cache_dir or not os.environ.get("JAX_COMPILATION_CACHE_DIR")):
        cache = args.jax_cache_dir or run.parse_args(["--exp=-"])[0].jax_cache_dir
        run.setup_jax(argparse.Namespace(coordinator_address="", jax_cache_dir=cache))
    rows, n = [], len(specs)
    for i, spec in enumerate(specs, 1):
        tag, run_dir = f"[{i}/{n}] {spec.name}", workdir / spec.name
        if spec.skip:
            print(f"{tag}: {spec.skip}", flush=True)
            rows.append(report.make_row(spec, study, run_dir, spec.skip))
            continue
        if study.eval_only:
            changes = " ".join(f"{k}={v}" for k, v in spec.overrides)
            print(f"{tag}: evaluating {args.checkpoint} with {changes}", flush=True)
            rows.append(evaluate_row(spec, study, args.checkpoint, run_dir))
        else:
            state = report.run_state(run_dir, spec.config)
            status = ""
            if state == "finished":
                print(f"{tag}: finished earlier, read from {run_dir}", flush=True)
            else:
                verb = "resuming" if state == "interrupted" else "starting"
                print(f"{tag}: {verb} {spec.exp} -> {run_dir}", flush=True)
                outcome = train(spec, run_dir, args.jax_cache_dir)
                if outcome == "interrupted":
                    print(f"{tag}: stopped; rerun the same command to resume", flush=True)
                    return 1
                status = outcome if outcome.startswith("failed") else ""
            rows.append(report.make_row(spec, study, run_dir, status))
        r = rows[-1]
        ap = f", AP {r.metrics['AP']:.3f}" if "AP" in r.metrics else ""
        print(f"{tag}: {r.status}{ap}", flush=True)
    table = report.write_outputs(rows, study, workdir, label)
    print(f"\n{study.title} ({label})\n\n{table}\n")
    if tiny:
        print(TINY_WARNING)
    print(f"wrote {workdir / 'table.md'}, {workdir / 'table.csv'}, {workdir / 'ap_vs_gflops.png'}")
    return 1 if any(r.status.startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
