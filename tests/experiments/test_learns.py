"""It learns: the tiny AggPose trained on the bundled real sample reaches AP >= 0.9 on those images
(ground-truth boxes, the ported scorer). One process, one CPU device, the README's quickstart path."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

STEPS = 1000


@pytest.mark.slow
def test_tiny_model_learns_the_bundled_sample(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as a user runs it
    cmd = [
        sys.executable, "-m", "experiments.run", "--exp=aggpose_l:tiny", f"--workdir={tmp_path}",
        f"--config.train.total_steps={STEPS}", f"--config.train.checkpoint_every_steps={STEPS}",
        "--config.log.progress_bar=False", "--config.eval.render=False",
        f"--jax_cache_dir={tmp_path / 'xla_cache'}",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.25 * losses[0]
    final = [r for r in records if "eval/AP" in r][-1]
    assert final["step"] == STEPS
    assert final["eval/AP"] >= 0.9, final
