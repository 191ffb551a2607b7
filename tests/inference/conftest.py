"""A trained tiny run, a synthetic video and a cut copy, shared by the inference tests."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN_STEPS = (
    30  # enough for weights that are not random; the notebook test trains the same program
)


def one_device_env() -> dict[str, str]:
    """This environment without the suite's 8 fake devices (the tiny run's batch is 12)."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    env["XLA_FLAGS"] = flags.strip()
    return env


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> pathlib.Path:
    """A tiny AggPose run on the bundled sample (config.json, best/)."""
    out = tmp_path_factory.mktemp("inference_run")
    cmd = [
        sys.executable, "-m", "experiments.run", "--exp=aggpose_l:tiny", f"--workdir={out}",
        f"--config.train.total_steps={TRAIN_STEPS}", "--config.log.progress_bar=False",
        "--config.eval.render=False", "--config.log.tensorboard=False",
    ]  # fmt: skip
    subprocess.run(cmd, cwd=REPO_ROOT, env=one_device_env(), check=True, capture_output=True,
                   timeout=600)  # fmt: skip
    return out


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """A 36-frame synthetic infant video and a copy cut at 60% of its bytes."""
    from data_pipelines import synthetic

    out = tmp_path_factory.mktemp("videos")
    video = synthetic.write_infant_video(out / "baby.mp4", frames=36)
    cut = out / "baby_cut.mp4"  # a damaged video: cut after 60% of its bytes
    data = video.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    return video, cut


@pytest.fixture(scope="session")
def train_steps() -> int:
    """The steps of the shared run (the notebook trains as many, the same compiled program)."""
    return TRAIN_STEPS


@pytest.fixture(scope="session")
def xla_flags_one_device() -> str:
    """XLA_FLAGS without the suite's fake devices, for processes that train the tiny run."""
    return one_device_env()["XLA_FLAGS"]
