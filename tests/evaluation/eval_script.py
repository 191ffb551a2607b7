"""The run's evaluation (experiments.data) on the bundled sample, on one or several processes.

python tests/evaluation/eval_script.py WORKDIR [--devices=D]
    [--coordinator=HOST:PORT --num_processes=N --process_id=I]

A fixed random conv net (17 keypoints, 64x48 crops) predicts through the trainer's predict function;
each process writes into WORKDIR/p<process id>. Prints one JSON line {"stats", "rows"}: the scores,
and the number of crops this process predicted during the evaluation (flip test included).
"""

import argparse
import json
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import processes  # noqa: E402

args = processes.join_job(parser, devices=4)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from aggpose_jax.training import sharding, steps  # noqa: E402
from experiments import data  # noqa: E402
from experiments.configs import aggpose_l  # noqa: E402


class ConvNet(nn.Module):
    """(B, H, W, 3) -> (B, H/4, W/4, 17)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.gelu(nn.Conv(32, (4, 4), strides=(4, 4))(x))
        return nn.Conv(17, (3, 3))(nn.gelu(nn.Conv(32, (3, 3))(x)))


config = aggpose_l.get_config("tiny")
with config.unlocked():
    config.data.input_hw = (64, 48)
    config.data.heatmap_hw = (16, 12)
    config.eval.batch_size = 4

mesh = sharding.make_mesh(-1, 1)
model = ConvNet()
params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 48, 3)))["params"]
params = jax.device_put(params, sharding.replicated(mesh))
predict = steps.make_predict_fn(model, lambda: params, mesh)
rows = [0]


def counting_predict(images):
    rows[0] += len(images)
    return predict(images)


run_data = data.make_data(config)
workdir = pathlib.Path(args.workdir) / f"p{jax.process_index()}"
workdir.mkdir(parents=True, exist_ok=True)
stats = run_data.eval_fn(counting_predict, workdir)
print(json.dumps({"stats": stats, "rows": rows[0]}), flush=True)
run_data.render_fn(predict, workdir)
