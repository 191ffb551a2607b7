"""The run's evaluation (experiments.data) on the bundled sample, on one or several processes.

python tests/evaluation/eval_script.py WORKDIR [--devices=D]
    [--coordinator=HOST:PORT --num_processes=N --process_id=I]

A fixed random conv net (17 keypoints, 64x48 crops) predicts through the task's predictor, as in training;
each process writes into WORKDIR/p<process id>. Prints one JSON line {"stats", "rows"}: the scores,
and the number of crops this process predicted during the evaluation.
"""

import argparse
import dataclasses
import json
import pathlib
import sys

parser = argparse.ArgumentParser()
parser.add_argument("workdir")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import processes  # noqa: E402

args = processes.join_job(parser, devices=4)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tiny_models import ConvNet  # noqa: E402

from aggpose_jax import runtime  # noqa: E402
from aggpose_jax.tasks import make_predictor  # noqa: E402
from aggpose_jax.training.setup import make_apply  # noqa: E402
from experiments import data  # noqa: E402
from experiments.configs import aggpose_l  # noqa: E402

config = aggpose_l.get_config("tiny")
with config.unlocked():
    config.data.input_hw = (64, 48)
    config.data.heatmap_hw = (16, 12)
    config.eval.batch_size = 4

mesh = runtime.make_mesh(-1, 1)
model = ConvNet(out=17, width=32, drop=0.0)
variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 48, 3)))
variables = jax.device_put(variables, runtime.replicated(mesh))
task = data.make_task(config)
predictor = make_predictor(task, make_apply(model), mesh, lambda: variables)
rows = [0]


def counting_persons(batch):
    rows[0] += len(batch["image"])
    return predictor.persons(batch)


run_data = data.make_data(config, task)
workdir = pathlib.Path(args.workdir) / f"p{jax.process_index()}"
workdir.mkdir(parents=True, exist_ok=True)
stats = run_data.eval_fn(dataclasses.replace(predictor, persons=counting_persons), workdir)
print(json.dumps({"stats": stats, "rows": rows[0]}), flush=True)
run_data.render_fn(predictor, workdir)
