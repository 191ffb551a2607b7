"""Top-down heatmap pose estimation (the official AggPose task): one person per crop, K Gaussian maps.

Train batch: "image" (B, H, W, 3) uint8 crops, "heatmaps" (B, h, w, K) targets, "target_weight" (B, K).
Loss: the official JointsMSELoss with target weights. Predict (device): heatmaps, averaged with the
flip test's when on. To persons (host): the official float64 decode (DARK by default) and the inverse
crop transform; a person's area is that of its box (200 s_x)(200 s_y).
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.evaluation import predict as predict_lib
from aggpose_jax.evaluation.persons import Persons
from aggpose_jax.keypoints import geometry
from aggpose_jax.keypoints.metainfo import KeypointFormat
from aggpose_jax.tasks import Apply

EVAL_KEYS = ("center", "scale", "score", "image_id")


def joints_mse_loss(
    heatmaps: jax.Array, targets: jax.Array, target_weights: jax.Array
) -> jax.Array:
    """Target-weighted heatmap MSE, as the official JointsMSELoss(use_target_weight=True).

    Shapes: heatmaps, targets (B, H, W, K); target_weights (B, K). Returns a scalar.

    The official loss sums, over joints, 0.5 * mean over (batch, pixels) of (w*pred - w*gt)^2 and divides
    by K, which is 0.5 * mean over (B, H, W, K) of (w * (pred - gt))^2. Computed in float32 whatever the
    compute dtype of the heatmaps.
    """
    diff = heatmaps.astype(jnp.float32) - targets.astype(jnp.float32)
    weighted = diff * target_weights.astype(jnp.float32)[:, None, None, :]
    return 0.5 * jnp.mean(jnp.square(weighted))


def _check_keys(batch: Mapping[str, np.ndarray], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"lacks {missing}")


@dataclasses.dataclass(frozen=True)
class TopdownHeatmap:
    """The top-down heatmap task for a keypoint format (see the module docstring).

    flip_test: average with the mirrored crop's heatmaps at predict time; nms: "oks" (COCO), None
    (the official infant evaluation) or "soft"; decode: "dark" | "quarter" | "argmax"; flip_shift:
    HRNet's SHIFT_HEATMAP (the flipped maps shifted one pixel, `evaluation.predict.flip_back_average`).
    """

    fmt: KeypointFormat
    flip_test: bool = True
    flip_shift: bool = False
    nms: str | None = "oks"
    decode: str = "dark"
    batch_keys: tuple[str, ...] = ("image", "heatmaps", "target_weight")
    best_metric: str = "AP"

    @property
    def out_channels(self) -> dict[str, int]:
        """{"heatmaps": K}."""
        return {"heatmaps": self.fmt.num_keypoints}

    @property
    def sigmas(self) -> np.ndarray:
        """The format's OKS sigmas (K,)."""
        return self.fmt.sigmas_array

    def loss(self, apply: Apply, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
        """Scalar JointsMSE loss of the model's heatmaps, no extra metrics."""
        heatmaps = apply(batch["image"])["heatmaps"]
        return joints_mse_loss(heatmaps, batch["heatmaps"], batch["target_weight"]), {}

    def predict(self, apply: Apply, images: jax.Array) -> dict[str, jax.Array]:
        """Traced: images (B, H, W, 3) uint8 -> {"heatmaps": (B, h, w, K) float32}, flip-tested."""
        heatmaps = apply(images)["heatmaps"].astype(jnp.float32)
        if not self.flip_test:
            return {"heatmaps": heatmaps}
        flipped = apply(images[:, :, ::-1, :])["heatmaps"].astype(jnp.float32)
        back = predict_lib.flip_back_average(
            heatmaps, flipped, self.fmt.flip_indices, shift=self.flip_shift
        )
        return {"heatmaps": back}

    def to_persons(
        self, predicted: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]
    ) -> Persons:
        """Host: one person per valid crop. Shapes: predicted["heatmaps"] (B, h, w, K); batch with
        "center" (B, 2), "scale" (B, 2), "score" (B,), "image_id" (B,), "record_index" (B,) and
        optionally "valid" (B,) (False for padding rows, which are dropped) -> Persons (N <= B)."""
        _check_keys(batch, (*EVAL_KEYS, "record_index"))
        centers = np.asarray(batch["center"], np.float64)
        scales = np.asarray(batch["scale"], np.float64)
        coords, maxvals = predict_lib.keypoints_from_heatmaps(
            predicted["heatmaps"], centers, scales, method=self.decode
        )
        if maxvals.shape[1] != self.fmt.num_keypoints:
            raise ValueError(
                f"the model gave {maxvals.shape[1]} keypoints, format {self.fmt.name!r} has "
                f"{self.fmt.num_keypoints}"
            )
        valid = np.asarray(batch.get("valid", np.ones(len(centers), bool)), bool)
        persons = Persons(
            image_ids=np.asarray(batch["image_id"], np.int64), keypoints=coords,
            keypoint_scores=maxvals, box_scores=np.asarray(batch["score"], np.float64),
            areas=np.prod(scales * geometry.PIXEL_STD, axis=-1), centers=centers, scales=scales,
            record_indices=np.asarray(batch["record_index"], np.int64),
        )  # fmt: skip
        return persons.take(valid)

    def host_persons_fn(
        self, heatmaps_fn: Callable[[np.ndarray], np.ndarray]
    ) -> Callable[[Mapping[str, np.ndarray]], Persons]:
        """batch -> Persons from a host heatmap function (images -> (B, h, w, K)), flip test on the
        host: for predict functions that are not traceable (oracles in tests, exported models)."""
        flip = self.fmt.flip_indices if self.flip_test else None

        def persons_fn(batch: Mapping[str, np.ndarray]) -> Persons:
            _check_keys(batch, ("image", *EVAL_KEYS, "record_index"))
            heatmaps = np.asarray(
                predict_lib.predict_heatmaps(heatmaps_fn, batch["image"], flip, self.flip_shift)
            )
            return self.to_persons({"heatmaps": heatmaps}, batch)

        return persons_fn
