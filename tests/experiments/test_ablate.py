"""experiments.ablate: dry runs, override checks before any run, resume, failed rows, the summary's
numbers in the table, and abl_decode's evaluation of a checkpoint.

Training runs are faked (a stand-in for `run.main` writes the files a run writes), so these tests
check the study machinery; the real runs are covered by tests/experiments/test_run.py.
"""

import csv
import json
import pathlib

import pytest

from experiments import ablate, run
from experiments.ablations import study as study_lib


def _forbidden(argv):
    raise AssertionError(f"no run may start: {argv}")


class FakeRuns:
    """Stands in for run.main: writes config.json, metrics.jsonl (final eval) and a checkpoint."""

    def __init__(self, fail=(), raise_=(), stop=()):
        self.calls, self.fail, self.raise_, self.stop = [], set(fail), set(raise_), set(stop)

    def __call__(self, argv):
        args, overrides = run.parse_args(argv)
        workdir = pathlib.Path(args.workdir)
        name = workdir.name
        self.calls.append(name)
        if name in self.raise_:
            raise RuntimeError(f"boom in {name}\nsecond line")
        if name in self.fail:
            print(f"error: bad data for {name}", file=__import__("sys").stderr)
            return 2
        config = run.load_config(args.exp)
        for key, value in overrides:
            run.apply_override(config, key, value)
        steps = config.train.total_steps
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort())
        (workdir / "checkpoints" / "1").mkdir(parents=True, exist_ok=True)
        last = 1 if name in self.stop else steps  # "stop": preempted after step 1
        lines = [{"step": 1, "train/loss": 0.5, "perf/img_per_s": 10.0, "epoch": 0.5}]
        if name not in self.stop:
            lines.append({"step": last, "eval/AP": 0.5, "eval/AR": 0.6})
        with (workdir / "metrics.jsonl").open("a") as f:
            f.writelines(json.dumps(x) + "\n" for x in lines)
        return 0


STEPS = ["--config.train.total_steps=2", "--config.log.progress_bar=False"]


def _table(workdir):
    with (workdir / "table.csv").open() as f:
        return {r["run"]: r for r in csv.DictReader(f)}


def test_dry_run_prints_one_command_per_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(run, "main", _forbidden)
    assert ablate.main(["--study=abl_fusion", f"--workdir={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    commands = [x for x in out if x.startswith("python -m experiments.run")]
    assert len(commands) == 3
    for fusion, cmd in zip(("merge", "merge_residual", "ram"), commands, strict=True):
        assert f"--config.model.options.fusion={fusion}" in cmd and "--exp=aggpose_l:tiny" in cmd
        assert f"--workdir={tmp_path / fusion}" in cmd
    # A pending row prints as a comment, never as a command.
    assert ablate.main(["--study=table4_infant", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len([x for x in out if x.startswith("python -m experiments.run")]) == 3
    assert any(x.startswith("# openpose: pending: an openpose_infant config") for x in out)
    assert any("--exp=mln_infant:tiny" in x for x in out)
    # An evaluation-only study prints evaluate commands; a weights file gets the base experiment.
    argv = ["--study=abl_decode", "--checkpoint=aggpose_l_coco.msgpack", "--dry-run"]
    assert ablate.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and all(x.startswith("python -m experiments.evaluate") for x in out)
    assert "--checkpoint=aggpose_l_coco.msgpack --exp=aggpose_l:tiny" in out[0]
    assert not list(tmp_path.iterdir())


def test_unknown_keys_and_bad_usage_fail_before_any_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(run, "main", _forbidden)
    bad = study_lib.Study(
        title="bad", base="aggpose_l",
        runs={"fine": {"model.options.fusion": "ram"}, "typo": {"model.options.fusoin": "ram"}},
    )  # fmt: skip
    monkeypatch.setattr(study_lib, "load_study", lambda name: bad)
    assert ablate.main(["--study=bad", f"--workdir={tmp_path}"]) == 2
    assert "'model.options.fusoin'" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setattr(run, "main", _forbidden)
    cases = {
        ("--study=abl_fusion", "--config.optim.lrr=1"): "'optim.lrr'",
        ("--study=abl_fusion", "--run.ram.data.sigmaa=2"): "'data.sigmaa'",
        ("--study=abl_fusion", "--run.rma.data.sigma=2"): "unknown run(s) ['rma']",
        ("--study=abl_fusion", "--config.model.options.fusion=sum"): "unknown AggPose fusion",
        ("--study=abl_nothing",): "unknown study 'abl_nothing'",
        ("--study=abl_decode",): "give --checkpoint",
    }
    for argv, message in cases.items():
        assert ablate.main([*argv, f"--workdir={tmp_path}"]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not list(tmp_path.iterdir())


def test_failed_runs_are_rows_and_a_rerun_redoes_only_those(capsys, monkeypatch, tmp_path):
    fake = FakeRuns(fail={"ram"}, raise_={"merge_residual"})
    monkeypatch.setattr(run, "main", fake)
    argv = ["--study=abl_fusion", f"--workdir={tmp_path}", *STEPS]
    assert ablate.main(argv) == 1  # the study finished; some rows failed
    assert fake.calls == ["merge", "merge_residual", "ram"]
    rows = _table(tmp_path)
    assert rows["merge"]["status"] == "done" and float(rows["merge"]["AP"]) == 0.5
    assert float(rows["merge"]["img_per_s"]) == 10.0
    assert rows["merge_residual"]["status"] == "failed: RuntimeError: boom in merge_residual"
    assert rows["ram"]["status"] == "failed: error: bad data for ram"
    assert (tmp_path / "merge_residual" / "ablate_error.txt").exists()
    for name in ("table.md", "table.csv", "ap_vs_gflops.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "tiny scale" in (tmp_path / "table.md").read_text()

    fake = FakeRuns()
    monkeypatch.setattr(run, "main", fake)
    assert ablate.main(argv) == 0
    assert fake.calls == ["merge_residual", "ram"]  # merge was read, not redone
    assert "[1/3] merge: finished earlier" in capsys.readouterr().out
    assert {r["status"] for r in _table(tmp_path).values()} == {"done"}


def test_interrupted_run_resumes_and_a_stopped_run_stops_the_study(capsys, monkeypatch, tmp_path):
    argv = ["--study=abl_fusion", f"--workdir={tmp_path}", *STEPS]
    fake = FakeRuns(stop={"merge_residual"})  # SIGTERM: run.main saves and returns 0 unfinished
    monkeypatch.setattr(run, "main", fake)
    assert ablate.main(argv) == 1
    assert fake.calls == ["merge", "merge_residual"]  # ram never started
    assert "rerun the same command to resume" in capsys.readouterr().out
    fake = FakeRuns()
    monkeypatch.setattr(run, "main", fake)
    assert ablate.main(argv) == 0
    assert fake.calls == ["merge_residual", "ram"]
    assert "[2/3] merge_residual: resuming" in capsys.readouterr().out


def test_table_params_and_gmacs_are_the_summary_clis(capsys, monkeypatch, tmp_path):
    from aggpose_jax.models import summary

    monkeypatch.setattr(run, "main", FakeRuns())
    assert ablate.main(["--study=abl_fusion", f"--workdir={tmp_path}", *STEPS]) == 0
    rows = _table(tmp_path)
    for fusion in ("merge", "ram"):
        capsys.readouterr()
        argv = ["--model=aggpose_tiny", "--input-hw", "128", "96", "--json"]
        assert (
            summary.main(argv + ([f"--option=fusion={fusion}"] if fusion != "merge" else [])) == 0
        )
        cli = json.loads(capsys.readouterr().out)
        assert float(rows[fusion]["params_M"]) * 1e6 == pytest.approx(cli["params"], abs=0.5)
        assert float(rows[fusion]["GMACs"]) == pytest.approx(cli["gmacs"], rel=1e-12)
    assert rows["merge"]["GMACs"] != rows["ram"]["GMACs"]


def test_full_scale_prints_compute_before_commands(capsys, monkeypatch):
    monkeypatch.setattr(run, "main", _forbidden)
    fake = {"params": 1, "gmacs": 10.0}
    monkeypatch.setattr(study_lib, "_summarize", lambda *a: fake)
    argv = ["--study=abl_head", "--scale=full", "--dry-run", "--config.data.root=/data/coco"]
    assert ablate.main(argv) == 0
    out = capsys.readouterr().out
    # 500 epochs x (149,813 // 64) steps x 64 images x 6 x 10 GMACs at 40% of 312 TFLOP/s.
    steps = 500 * (149_813 // 64)
    hours = 6 * 10e9 * steps * 64 / (0.4 * 312e12) / 3600
    assert f"mixffn: 10.00 GMACs/image x {steps * 64:,} images ({steps:,} steps)" in out
    assert f"{hours:.1f} GPU-hours" in out
    assert out.index("GPU-hours") < out.index("python -m experiments.run --exp=aggpose_l ")
    assert "--config.model.options.head=gpr --config.data.root=/data/coco" in out
    assert ablate.main(["--study=abl_head", "--scale=full"]) == 2  # no data.root: refused
    assert "--config.data.root" in capsys.readouterr().err


@pytest.mark.slow
def test_abl_decode_evaluates_a_run_folder(capsys, tmp_path):
    """A run folder (config.json + best/) of the tiny model, scored under each decode row."""
    import jax
    import jax.numpy as jnp

    from aggpose_jax.training import checkpoint as ckpt_lib
    from aggpose_jax.training import setup
    from experiments import data as data_lib

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = run.load_config("aggpose_l:tiny")
    (run_dir / "config.json").write_text(config.to_json_best_effort())
    model = setup.make_model(config, data_lib.make_task(config))
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 128, 96, 3)), train=False))
    variables = init(jax.random.key(0))
    manager = ckpt_lib.make_manager(run_dir / "best", max_to_keep=1, async_save=False,
                                    best_metric="AP")  # fmt: skip
    ckpt_lib.save_best_variables(manager, 1, variables, "AP", 0.0)
    manager.close()
    out = tmp_path / "decode"
    # The compilation cache is the suite's (tests/conftest.py): the tiny predictor is compiled once.
    argv = ["--study=abl_decode", f"--checkpoint={run_dir}", f"--workdir={out}"]
    assert ablate.main(argv) == 0
    rows = _table(out)
    assert list(rows) == ["dark", "quarter", "argmax", "dark+flip", "dark+det_boxes"]
    assert {r["status"] for r in rows.values()} == {"done"}
    assert all(0.0 <= float(r["AP"]) <= 1.0 for r in rows.values())
    results = {n: (out / n / "results" / "keypoints_val.json").read_text() for n in rows}
    assert len(set(results.values())) == 5  # each choice changed the predictions

    # A weights file (as a converted official checkpoint) with its experiment named: same scores.
    from flax import serialization

    from experiments import evaluate

    weights = tmp_path / "params.msgpack"
    weights.write_bytes(serialization.to_bytes(jax.device_get(variables)))
    overrides = [("task.decode", "dark"), ("eval.flip_test", "False")]
    stats = evaluate.evaluate(str(weights), overrides, exp="aggpose_l:tiny", workdir=tmp_path / "w")
    assert stats["AP"] == float(rows["dark"]["AP"]) and stats["AR"] == float(rows["dark"]["AR"])
    assert (tmp_path / "w" / "results" / "keypoints_val.json").read_text() == results["dark"]
