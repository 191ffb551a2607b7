"""A small training job for the subprocess tests: a conv net on synthetic data through the trainer.

python tests/training/train_script.py WORKDIR STEPS [--kill_at=N] [--sleep=S] [--fsdp=F]
    [--coordinator=HOST:PORT --num_processes=N --process_id=I] [--ckpt_every=K] [--nan_step=N] [--bn]

Prints one JSON line {"step", "loss", "params_sha"} at the end (the sha covers params and model
state, e.g. BatchNorm statistics). With --kill_at=N the process SIGKILLs
itself when the data pipeline produces batch N (a crash mid-run, possibly during an async save).
"""

import argparse
import hashlib
import json
import os
import pathlib
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
parser.add_argument("steps", type=int)
parser.add_argument("--kill_at", type=int, default=-1)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--fsdp", type=int, default=1)
parser.add_argument("--ckpt_every", type=int, default=2)
parser.add_argument("--nan_step", type=int, default=-1)
parser.add_argument("--bn", action="store_true", help="the model with BatchNorm")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import processes  # noqa: E402

args = processes.join_job(parser, devices=8)

import grain  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
from tiny_models import ConvNet  # noqa: E402

from aggpose_jax.keypoints.metainfo import COCO  # noqa: E402
from aggpose_jax.tasks.topdown_heatmap import TopdownHeatmap  # noqa: E402
from aggpose_jax.training import trainer  # noqa: E402
from experiments.configs import aggpose_l  # noqa: E402

K, HW, GLOBAL_BATCH = 5, (32, 32), 8


def make_iter(seed: int = 0):
    """Global batches of 8, each process taking its contiguous rows (as the mesh lays them out)."""
    rng = np.random.default_rng(seed)
    items = [
        dict(
            image=rng.integers(0, 256, size=(*HW, 3), dtype=np.uint8),
            heatmaps=rng.uniform(size=(HW[0] // 4, HW[1] // 4, K)).astype(np.float32),
            target_weight=(rng.uniform(size=K) > 0.2).astype(np.float32),
        )
        for _ in range(24)
    ]
    local = GLOBAL_BATCH // jax.process_count()
    lo = jax.process_index() * local

    def take(index, batch):
        if index + 1 == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if args.sleep:
            time.sleep(args.sleep)
        return {k: v[lo : lo + local] for k, v in batch.items()}

    ds = grain.MapDataset.source(items).shuffle(seed=seed).repeat().batch(GLOBAL_BATCH)
    # No read-ahead: the map (and its kill) runs when the trainer asks for the batch.
    read = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    return iter(ds.map_with_index(take).to_iter_dataset(read))


config = aggpose_l.get_config("tiny")
with config.unlocked():
    config.data.keypoint_format = "coco"
    config.data.input_hw = HW
    config.train.global_batch_size = GLOBAL_BATCH
    config.train.total_steps = args.steps
    config.train.steps_per_epoch = 4
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = args.ckpt_every
    config.train.debug_nan_step = args.nan_step
    config.mesh.data = -1
    config.mesh.fsdp = args.fsdp
    config.mesh.fsdp_min_size = 1024
    config.log.progress_bar = False
    config.log.tensorboard = False
    config.optim.milestones_epochs = (1,)

try:
    summary = trainer.train_and_evaluate(
        config,
        args.workdir,
        task=TopdownHeatmap(COCO),
        train_iter=make_iter(),
        model=ConvNet(out=K, batch_norm=args.bn),
    )
except trainer.NonFiniteError as e:
    print(f"NonFiniteError: {e}", flush=True)
    sys.exit(3)
params = jax.tree.leaves(summary["state"].variables)
from jax.experimental import multihost_utils  # noqa: E402

host = [np.asarray(multihost_utils.process_allgather(p, tiled=True)) for p in params]
sha = hashlib.sha256(b"".join(p.tobytes() for p in host)).hexdigest()
flat = np.concatenate([p.ravel() for p in host])
out = {
    "step": summary["step"],
    "preempted": summary["preempted"],
    "loss": summary["last_metrics"]["loss"],
    "params_sha": sha,
    "params_head": flat[:64].tolist(),
}
print(json.dumps(out), flush=True)
