"""The trainer takes any task: a test-only image-to-image regression task trains through it unchanged."""

import dataclasses
import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
from tiny_models import ConvNet

from aggpose_jax.training import trainer
from experiments.configs import aggpose_l

HW = (32, 32)


@dataclasses.dataclass(frozen=True)
class PixelRegression:
    """Predict the image's 4x4-mean-pooled colours (normalised to [0, 1]) at stride 4."""

    batch_keys: tuple[str, ...] = ("image", "target")
    best_metric: str = "neg_mse"

    @property
    def out_channels(self):
        return {"pixels": 3}

    def loss(self, apply, batch):
        pred = apply(batch["image"])["pixels"]
        mse = jnp.mean(jnp.square(pred - batch["target"]))
        return mse, {"mean_prediction": jnp.mean(pred)}

    def predict(self, apply, images):
        return {"pixels": apply(images)["pixels"]}


def _iter(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(16, *HW, 3), dtype=np.uint8)
    pooled = images.reshape(16, 8, 4, 8, 4, 3).mean(axis=(2, 4)) / 255.0
    items = [
        {"image": im, "target": t.astype(np.float32)} for im, t in zip(images, pooled, strict=True)
    ]
    return iter(grain.MapDataset.source(items).repeat().batch(8).to_iter_dataset())


def test_regression_task_trains_through_the_unchanged_trainer(tmp_path):
    task = PixelRegression()
    config = aggpose_l.get_config("tiny")
    with config.unlocked():
        config.data.input_hw = HW
        config.train.global_batch_size = 8
        config.train.total_steps = 30
        config.train.steps_per_epoch = 10
        config.train.log_every_steps = 10
        config.train.checkpoint_every_steps = 10
        config.eval.every_steps = 15
        config.optim.lr = 3e-3
        config.log.progress_bar = False
        config.log.tensorboard = False
    held_out = next(_iter(seed=1))

    def eval_fn(predictor, workdir):
        pred = predictor.outputs(held_out["image"])["pixels"]
        return {"neg_mse": -float(np.mean((pred - held_out["target"]) ** 2))}

    model = ConvNet(out=3, drop=0.0, batch_norm=True, output="pixels")
    summary = trainer.train_and_evaluate(
        config, tmp_path, task=task, train_iter=_iter(), eval_fn=eval_fn, model=model
    )
    assert summary["step"] == 30 and "mean_prediction" in summary["last_metrics"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    evals = [r["eval/neg_mse"] for r in records if "eval/neg_mse" in r]
    assert len(evals) == 2 and evals[-1] > evals[0]
    assert sorted(p.name for p in (tmp_path / "best").iterdir() if p.name.isdigit()) == ["30"]
    assert "batch_stats" in summary["state"].model_state
    assert jax.tree.leaves(summary["state"].model_state)  # BatchNorm statistics were carried
