"""Two processes evaluate half of the crops each and write what one process writes (subprocesses).

Each run is tests/evaluation/eval_script.py: the run's evaluation (experiments.data) of a fixed conv
net on the bundled sample, 4 fake CPU devices in all.
"""

import json
import pathlib
import subprocess
import sys

import processes
import pytest

SCRIPT = pathlib.Path(__file__).with_name("eval_script.py")


@pytest.mark.slow
def test_two_processes_give_the_one_process_results(tmp_path):
    one = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "one"), "--devices=4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    single = processes.last_json(one.stdout)

    halves = processes.json_results(
        processes.start_two(SCRIPT, [str(tmp_path / "two"), "--devices=2"], port_offset=7)
    )

    # Each process predicted half of the 12 crops; both score the whole set, as one process does.
    assert single["rows"] == 12 and [h["rows"] for h in halves] == [6, 6]
    assert halves[0]["stats"] == halves[1]["stats"] == single["stats"]
    # Process 0 alone writes the results and the pictures: the same entries, in the same order.
    read = lambda d: json.loads((d / "results" / "keypoints_val.json").read_text())  # noqa: E731
    entries = read(tmp_path / "one" / "p0")
    assert len(entries) == 12
    assert read(tmp_path / "two" / "p0") == entries
    assert sorted(p.name for p in (tmp_path / "two" / "p0").glob("*.png")) == sorted(
        p.name for p in (tmp_path / "one" / "p0").glob("*.png")
    )
    assert not any((tmp_path / "two" / "p1").iterdir())
