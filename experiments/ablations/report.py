"""A study's rows, read from its run folders, and its outputs: table.md, table.csv, ap_vs_gflops.png.

A training run's row comes from the run's own files, so a run finished elsewhere (a cluster job of
`--dry-run`'s commands) is read like one finished here: AP/AR from the final evaluation of
`metrics.jsonl`, img/s its median `perf/img_per_s`, wall time the sum of the attempts `ablate`
recorded in `ablate_attempts.jsonl`; parameters and GMACs are `aggpose_jax.models.summary`'s for the
run's model, keypoints and input size (the numbers the summary CLI prints).
"""

import csv
import dataclasses
import json
import pathlib
import statistics
from typing import Any

import ml_collections

from aggpose_jax.training import logger as log_lib
from experiments.ablations import study as study_lib

ATTEMPTS = "ablate_attempts.jsonl"


@dataclasses.dataclass
class Row:
    """One run of a study as reported."""

    name: str
    exp: str
    changes: str  # the run's own overrides, as written in the study
    status: str  # done | failed: ... | pending: ... | skipped: ...
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # eval/AP -> "AP", ...
    params: int | None = None
    gmacs: float | None = None
    img_per_s: float | None = None
    wall_s: float | None = None
    eval_s: float | None = None
    paper: tuple[float, str] | None = None


# column -> (header, value of a row, format)
COLUMNS = {
    "AP": ("AP", lambda r: r.metrics.get("AP"), "{:.3f}"),
    "AP50": ("AP50", lambda r: r.metrics.get("AP50"), "{:.3f}"),
    "AP75": ("AP75", lambda r: r.metrics.get("AP75"), "{:.3f}"),
    "AR": ("AR", lambda r: r.metrics.get("AR"), "{:.3f}"),
    "params_M": ("params (M)", lambda r: r.params / 1e6 if r.params else None, "{:.2f}"),
    "GMACs": ("GMACs", lambda r: r.gmacs, "{:.3f}"),
    "img_per_s": ("train img/s", lambda r: r.img_per_s, "{:.1f}"),
    "wall_min": ("wall (min)", lambda r: r.wall_s / 60 if r.wall_s else None, "{:.1f}"),
    "eval_s": ("eval (s)", lambda r: r.eval_s, "{:.1f}"),
}


def read_records(run_dir: pathlib.Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return log_lib.read_metrics(path) if path.exists() else []


def final_eval(records: list[dict[str, Any]], steps: int | None) -> dict[str, float] | None:
    """The evaluation written at the run's last step (`steps`), as {"AP": ...}; None if absent."""
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    if steps is not None:
        evals = [r for r in evals if r["step"] == steps]
    if not evals:
        return None
    return {k[len("eval/") :]: v for k, v in evals[-1].items() if k.startswith("eval/")}


def run_state(run_dir: pathlib.Path, config: ml_collections.ConfigDict) -> str:
    """ "finished" (its final evaluation is written), "interrupted" (checkpoints to resume) or "new"."""
    records = read_records(run_dir)
    if final_eval(records, expected_steps(config, records)) is not None:
        return "finished"
    ckpt = run_dir / "checkpoints"
    if ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir()):
        return "interrupted"
    return "new"


def expected_steps(config: ml_collections.ConfigDict, records: list[dict[str, Any]]) -> int | None:
    """The run's total steps; steps per epoch taken from the data are read back from its `epoch`."""
    spe = next(
        (round(r["step"] / r["epoch"]) for r in records if r.get("epoch") and "step" in r), None
    )
    return study_lib.total_steps(config, spe)


def record_attempt(run_dir: pathlib.Path, wall_s: float, outcome: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ATTEMPTS).open("a") as f:
        f.write(json.dumps({"wall_s": round(wall_s, 2), "outcome": outcome}) + "\n")


def _wall(run_dir: pathlib.Path) -> float | None:
    path = run_dir / ATTEMPTS
    if not path.exists():
        return None
    return sum(json.loads(x)["wall_s"] for x in path.read_text().splitlines() if x.strip())


def make_row(
    spec: study_lib.RunSpec, study: study_lib.Study, run_dir: pathlib.Path, status: str = ""
) -> Row:
    """The row of a training run from its folder (`status` overrides "done" / "not run")."""
    row = _base_row(spec, study, status)
    if spec.config is None:
        return row
    records = read_records(run_dir)
    final = final_eval(records, expected_steps(spec.config, records))
    row.metrics = final or {}
    speeds = [r["perf/img_per_s"] for r in records if r.get("perf/img_per_s")]
    row.img_per_s = statistics.median(speeds) if speeds else None
    row.wall_s = _wall(run_dir)
    if not row.status:
        row.status = "done" if final is not None else "not run"
    return row


def _base_row(spec: study_lib.RunSpec, study: study_lib.Study, status: str) -> Row:
    raw = study.runs[spec.name]
    changes = (
        ", ".join(f"{k}={study_lib.as_text(v)}" for k, v in raw.items()) or "(base)"
        if isinstance(raw, dict)
        else "-"
    )
    row = Row(spec.name, spec.exp, changes, status or spec.skip, paper=study.paper.get(spec.name))
    if spec.config is not None:
        s = study_lib.model_summary(spec.config)
        row.params, row.gmacs = s["params"], s["gmacs"]
    return row


def eval_row(
    spec: study_lib.RunSpec,
    study: study_lib.Study,
    metrics: dict[str, float] | None,
    eval_s: float | None,
    status: str,
) -> Row:
    """The row of an evaluation-only run."""
    row = _base_row(spec, study, status)
    row.metrics, row.eval_s = metrics or {}, eval_s
    return row


def _cell(row: Row, column: str) -> str:
    _, get, fmt = COLUMNS[column]
    value = get(row)
    return "-" if value is None else fmt.format(value)


def write_outputs(
    rows: list[Row], study: study_lib.Study, workdir: pathlib.Path, label: str
) -> str:
    """Writes table.md, table.csv and ap_vs_gflops.png into `workdir`; returns the Markdown table."""
    workdir.mkdir(parents=True, exist_ok=True)
    heads = [COLUMNS[c][0] for c in study.columns]
    lines = [
        f"| run | experiment | changes | {' | '.join(heads)} | paper AP | status |",
        "|" + "---|" * (len(heads) + 5),
    ]
    for r in rows:
        cells = [_cell(r, c) for c in study.columns]
        paper = f"{r.paper[0]:.1f} ({r.paper[1]})" if r.paper else "-"
        lines.append(
            f"| {r.name} | {r.exp} | {r.changes} | {' | '.join(cells)} | {paper} | {r.status} |"
        )
    table = "\n".join(lines)
    notes = f"\n\n{study.notes}" if study.notes else ""
    (workdir / "table.md").write_text(f"# {study.title} ({label})\n\n{table}{notes}\n")
    with (workdir / "table.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "experiment", "changes", *study.columns, "paper_AP", "paper_source",
                    "status"])  # fmt: skip
        for r in rows:
            values = [COLUMNS[c][1](r) for c in study.columns]
            paper = list(r.paper) if r.paper else ["", ""]
            w.writerow([r.name, r.exp, r.changes, *["" if v is None else v for v in values],
                        *paper, r.status])  # fmt: skip
    plot_ap_vs_gmacs(rows, workdir / "ap_vs_gflops.png", f"{study.title} ({label})")
    return table


def plot_ap_vs_gmacs(rows: list[Row], path: pathlib.Path, title: str) -> None:
    """AP against GMACs per image (the papers' "GFLOPs"), one labelled point per finished run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = [r for r in rows if r.gmacs is not None and "AP" in r.metrics]
    for r in points:
        ax.scatter(r.gmacs, r.metrics["AP"], s=30)
        ax.annotate(r.name, (r.gmacs, r.metrics["AP"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    if not points:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel('GMACs per image (the papers\' "GFLOPs")')
    ax.set_ylabel("AP")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
