"""The one device predict of the app and of its export: uint8 crops in, keypoints and scores out.

Normalisation (`models.preprocess`), the model, the flip test and the heatmap decoding
(`keypoints.codecs.decode_heatmaps`, DARK by default) all run inside one traced function, so the
host only crops and maps the keypoints back to image pixels. The decode runs in float32 on the
device; the evaluator decodes the same heatmaps on the host in float64 (to_persons), so the two
agree to float32 rounding (about 1e-4 pixels of the heatmap; tests/inference/test_equality.py).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.evaluation import predict as predict_lib
from aggpose_jax.keypoints import codecs
from aggpose_jax.keypoints.metainfo import KeypointFormat
from aggpose_jax.models import preprocess

PredictFn = Callable[[Any], tuple[Any, Any]]  # crops (B, H, W, 3) uint8 -> (B, K, 2), (B, K)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a predictor needs to know besides the weights: format, crop and heatmap sizes, decode.

    name: "<family>_<variant>" (e.g. "aggpose_l"); options: the family's model options.
    """

    name: str
    fmt: KeypointFormat
    input_hw: tuple[int, int] = (256, 192)
    heatmap_hw: tuple[int, int] = (64, 48)
    decode: str = "dark"
    flip_test: bool = True
    flip_shift: bool = False
    options: dict = dataclasses.field(default_factory=dict)


def make_predict_fn(model: nn.Module, spec: ModelSpec) -> Callable[[Any, jax.Array], tuple]:
    """A traceable (variables, crops) -> (coords, scores) of the model under `spec`.

    Shapes: crops (B, H, W, 3) uint8 RGB -> coords (B, K, 2) float32 heatmap pixels (x, y),
    scores (B, K) float32 (the un-blurred heatmap peaks). Map coords to the image with
    `geometry.output_to_image_coords(..., output_hw=spec.heatmap_hw)`.
    """
    flip = np.asarray(spec.fmt.flip_indices) if spec.flip_test else None

    def predict(variables: Any, crops: jax.Array) -> tuple[jax.Array, jax.Array]:
        def heatmaps_of(x):
            out = model.apply(variables, preprocess.normalize_images(x), train=False)
            return out["heatmaps"].astype(jnp.float32)

        heatmaps = predict_lib.predict_heatmaps(heatmaps_of, crops, flip, spec.flip_shift)
        return codecs.decode_heatmaps(heatmaps, spec.decode, xp=jnp)

    return predict


def bucket_size(n: int, max_batch: int) -> int:
    """The padded batch for n crops: the next power of two, at most max_batch (few compilations)."""
    return min(max_batch, 1 << max(0, (n - 1).bit_length()))


def run_batched(fn: PredictFn, crops: np.ndarray, max_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """`fn` over crops in padded batches of `bucket_size`. Shapes: (N, H, W, 3) -> (N, K, 2), (N, K)."""
    coords, scores = [], []
    for start in range(0, len(crops), max_batch):
        part = crops[start : start + max_batch]
        size = bucket_size(len(part), max_batch)
        padded = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
        c, s = fn(padded)
        coords.append(np.asarray(c)[: len(part)])
        scores.append(np.asarray(s)[: len(part)])
    return np.concatenate(coords), np.concatenate(scores)
