"""Exact resume after SIGKILL, SIGTERM -> save and exit 0, NaN -> stop naming the step (subprocesses).

Each run is tests/training/train_script.py: a conv net on synthetic data through
trainer.train_and_evaluate on 8 fake CPU devices (the AggPose path is in tests/experiments).
"""

import pathlib
import signal
import subprocess
import sys
import time

import processes
import pytest

SCRIPT = pathlib.Path(__file__).with_name("train_script.py")


def run_script(workdir, steps, *extra, timeout=300):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(workdir), str(steps), *extra],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return proc


def result_of(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return processes.last_json(proc.stdout)


def checkpoint_steps(workdir) -> list[int]:
    d = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("model", ["plain", "batchnorm"])
def test_sigkill_then_resume_is_bitwise_equal(tmp_path, model):
    """Params (and BatchNorm statistics) of a resumed run equal an uninterrupted one's, bit for bit."""
    bn = ("--bn",) if model == "batchnorm" else ()
    full = result_of(run_script(tmp_path / "full", 8, *bn))
    killed = run_script(tmp_path / "resumed", 8, "--kill_at=6", *bn)
    assert killed.returncode == -signal.SIGKILL
    saved = checkpoint_steps(tmp_path / "resumed")
    assert saved and max(saved) < 8, saved
    resumed = result_of(run_script(tmp_path / "resumed", 8, *bn))
    assert resumed["step"] == 8
    assert resumed["params_sha"] == full["params_sha"]
    assert resumed["loss"] == full["loss"]


@pytest.mark.slow
def test_sigterm_saves_at_the_next_step_and_exits_0(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(workdir), "1000", "--sleep=0.3", "--ckpt_every=100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 2
    ):
        time.sleep(0.2)
    seen = metrics.read_text().count("\n")
    proc.send_signal(signal.SIGTERM)
    (result,) = processes.json_results([proc], timeout=120)
    assert result["preempted"]
    saved = checkpoint_steps(workdir)
    # Saved only because of the signal (periodic saves are off), a step or two after it arrived.
    assert saved == [result["step"]]
    assert seen <= result["step"] <= seen + 3


@pytest.mark.slow
def test_nan_batch_stops_naming_the_step_and_keeps_good_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    proc = run_script(workdir, 8, "--nan_step=5", "--ckpt_every=2")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "non-finite loss or gradient at step 5" in proc.stdout
    assert checkpoint_steps(workdir) == [2, 4]
    # The last good checkpoint restores, finite.
    import numpy as np
    import orbax.checkpoint as ocp

    state = ocp.StandardCheckpointer().restore((workdir / "checkpoints" / "4" / "state").absolute())
    leaves = [np.asarray(x) for x in __import__("jax").tree.leaves(state["params"])]
    assert all(np.isfinite(x).all() for x in leaves)
    assert int(state["step"]) == 4


def start_two_processes(workdir, steps, *extra, port_offset=0):
    """The script on 2 processes of 4 fake devices each (the 8 of one process), as two hosts run it."""
    args = [str(workdir), str(steps), "--devices=4", *extra]
    return processes.start_two(SCRIPT, args, port_offset)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    import numpy as np

    single = result_of(run_script(tmp_path / "single", 4, "--fsdp=2"))
    for r in processes.json_results(start_two_processes(tmp_path / "multi", 4, "--fsdp=2")):
        assert r["step"] == 4
        np.testing.assert_allclose(r["loss"], single["loss"], rtol=1e-5)
        np.testing.assert_allclose(r["params_head"], single["params_head"], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step_and_resumes(tmp_path):
    """A preemption notice on one host: both hosts save the same step, exit 0, and resume from it."""
    import numpy as np

    workdir = tmp_path / "multi"
    procs = start_two_processes(workdir, 12, "--fsdp=2", "--sleep=0.3", "--ckpt_every=100000")
    metrics = workdir / "metrics.jsonl"  # written by process 0
    deadline = time.time() + 240
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 2
    ):
        time.sleep(0.2)
    seen = metrics.read_text().count("\n")
    procs[1].send_signal(signal.SIGTERM)
    stopped = processes.json_results(procs)
    assert [r["preempted"] for r in stopped] == [True, True]
    step = stopped[0]["step"]
    assert stopped[1]["step"] == step and seen <= step < 12
    assert checkpoint_steps(workdir) == [step]  # saved only because of the signal

    resumed = processes.json_results(start_two_processes(workdir, 12, "--fsdp=2", port_offset=1))
    single = result_of(run_script(tmp_path / "single", 12, "--fsdp=2"))
    for r in resumed:
        assert r["step"] == 12 and not r["preempted"]
        np.testing.assert_allclose(r["loss"], single["loss"], rtol=1e-5)
        np.testing.assert_allclose(r["params_head"], single["params_head"], rtol=1e-4, atol=1e-6)
