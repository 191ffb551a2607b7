"""Tasks: what a model is trained to output, how it is scored, and how its outputs become persons.

A task owns its batch keys, the output channels the model must build, its loss, its device-side
predict and (pose tasks) its host-side mapping to `evaluation.Persons`, its NMS policy and its best
metric. The trainer, steps and checkpoint selection know only this protocol. Tasks never import models
or training: the model comes in as `apply`, a function of the images.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from aggpose_jax import runtime
from aggpose_jax.evaluation.persons import Persons

Outputs = Mapping[str, Any]  # a model's named outputs: arrays or sequences of arrays
# images (B, H, W, 3) uint8 [, other model inputs by keyword, e.g. mask=] -> named outputs
Apply = Callable[..., Outputs]


class Task(Protocol):
    """What the trainer needs of any task."""

    batch_keys: tuple[str, ...]  # "image" first; the keys a train batch must carry
    best_metric: str  # the evaluation metric (max) that selects the best checkpoint

    @property
    def out_channels(self) -> Mapping[str, int]: ...  # e.g. {"heatmaps": 17}

    def loss(self, apply: Apply, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]: ...


class PoseTask(Task, Protocol):
    """A task whose predictions are persons, scored by the COCO keypoint evaluation."""

    nms: str | None

    def predict(self, apply: Apply, images: jax.Array) -> dict[str, jax.Array]: ...

    def to_persons(
        self, predicted: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]
    ) -> Persons: ...


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A model's task predictions, callable from the host on this process's rows (collective calls).

    outputs(images (b, H, W, 3) uint8) -> the task's device predict, as numpy rows (b, ...);
    persons(batch) -> the task's persons of a host batch (pose tasks only).
    """

    outputs: Callable[[np.ndarray], dict[str, np.ndarray]]
    persons: Callable[[Mapping[str, np.ndarray]], Persons]


def make_predictor(
    task: Task, apply: Callable[..., Outputs], mesh: Mesh, variables_fn: Callable[[], Any]
) -> Predictor:
    """The task's predict of `apply(variables, images, train=False)` on `variables_fn()` (called at
    each use, so one predictor follows a whole run), jitted over `mesh`."""

    def device_predict(variables, images):
        return task.predict(lambda x, **inputs: apply(variables, x, train=False, **inputs), images)

    host_predict = runtime.make_host_fn(device_predict, mesh)

    def outputs(images: np.ndarray) -> dict[str, np.ndarray]:
        return host_predict(variables_fn(), images)

    def persons(batch: Mapping[str, np.ndarray]) -> Persons:
        return task.to_persons(outputs(batch["image"]), batch)

    return Predictor(outputs=outputs, persons=persons)
