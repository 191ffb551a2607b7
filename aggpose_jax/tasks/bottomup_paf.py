"""Bottom-up pose with part affinity fields (OpenPose, Cao et al. CVPR 2017; MLN, Huang et al. ICIP
2019): whole images in, every person out, no person detector.

Train batch: "image" (B, H, W, 3) uint8, "heatmaps" (B, h, w, K) joint-map targets, "pafs" (B, h, w,
L, 2) PAF targets and "mask" (B, h, w) loss weights (0 on crowds and unlabelled people), at the model's
stride H / h (`data_pipelines.bottomup`). The model returns {"heatmaps": [stages x (B, h, w, K)],
"pafs": [stages x (B, h, w, 2 L)]} (a single array counts as one stage); PAF channel 2 l + c is
component c (x, y) of limb l of `part_fields.limbs_for(fmt)`.

Loss: the masked L2 of MLN's eqs. 3-4 over every stage's joint maps and PAFs (intermediate
supervision), each term a mean over its elements (the sums of the paper divided by B h w C).
Predict (device): the last stage's maps, averaged with the mirrored image's (joints and limbs swapped,
PAF x negated: `part_fields.flip_maps`) and over the test scales (each scale's maps resized to the
first scale's grid); the peaks of the joint maps (4-neighbourhood maxima above a threshold, the
`max_peaks` best per joint: the `peaks` structure of `keypoints.grouping`) found on the model's grid
and refined to sub-pixel precision by a log-parabola. OpenPose instead up-samples the maps to the
input and takes the peaks there; on exact stride-8 Gaussians that misplaces them by ~2.6 input
pixels (the refined grid peaks are exact), so the maps are not up-sampled here.
To persons (host): `part_fields.group_peaks` per image, input pixels -> image pixels by the example's
`scale` and `offset`; the person score is the evaluator's rescoring of its keypoint scores (box score
1), and there is no OKS-NMS (the bottom-up protocol).
"""

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.evaluation import persons as persons_lib
from aggpose_jax.evaluation.persons import Persons
from aggpose_jax.keypoints import part_fields
from aggpose_jax.keypoints.metainfo import KeypointFormat
from aggpose_jax.tasks import Apply

EVAL_KEYS = ("image", "scale", "offset", "image_id", "record_index")


def stages(output: jax.Array | Sequence[jax.Array]) -> list[jax.Array]:
    """A model output as a list of stages: an array is one stage."""
    return [output] if isinstance(output, jax.Array | np.ndarray) else list(output)


def masked_l2(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """MLN's eq. 3 (or 4) as a mean: mean over (B, h, w, C) of mask * (pred - target)^2.

    Shapes: pred, target (B, h, w, C); mask (B, h, w) -> a float32 scalar.
    """
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(mask.astype(jnp.float32)[..., None] * jnp.square(diff))


def _log_offset(minus: jax.Array, centre: jax.Array, plus: jax.Array) -> jax.Array:
    """The vertex of the parabola through the logs of three samples (exact for a Gaussian)."""
    lm, lc, lp = (jnp.log(jnp.maximum(v, 1e-10)) for v in (minus, centre, plus))
    curvature = lm - 2.0 * lc + lp
    safe = jnp.where(curvature < -1e-12, curvature, -1.0)
    return jnp.clip(jnp.where(curvature < -1e-12, 0.5 * (lm - lp) / safe, 0.0), -0.5, 0.5)


def device_peaks(
    heatmaps: jax.Array, threshold: float, max_peaks: int, stride: float = 1.0
) -> jax.Array:
    """Joint candidates on the device, as `grouping.find_peaks` (traceable).

    Shapes: heatmaps (B, h, w, K) at `stride` -> peaks (B, K, M, 3) x, y in input pixels and the
    peak's score, the M = `max_peaks` best per joint, padded with zeros. A peak is > its left and
    upper neighbours, >= its right and lower ones and above `threshold`; its position is refined by
    the parabola through the logs of its neighbours (exact for a Gaussian).
    """
    b, h, w, k = heatmaps.shape
    hm = heatmaps.astype(jnp.float32)
    pad = jnp.pad(hm, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    left, right = pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]
    up, down = pad[:, :-2, 1:-1], pad[:, 2:, 1:-1]
    is_peak = (hm > threshold) & (hm > left) & (hm > up) & (hm >= right) & (hm >= down)
    score = jnp.where(is_peak, hm, 0.0).transpose(0, 3, 1, 2).reshape(b, k, h * w)
    values, index = jax.lax.top_k(score, max_peaks)  # (B, K, M)
    ys, xs = index // w, index % w
    maps = hm.transpose(0, 3, 1, 2)  # (B, K, H, W)

    def at(y, x):
        return jnp.take_along_axis(maps.reshape(b, k, h * w), y * w + x, axis=-1)

    centre = at(ys, xs)
    dx = _log_offset(at(ys, jnp.maximum(xs - 1, 0)), centre, at(ys, jnp.minimum(xs + 1, w - 1)))
    dy = _log_offset(at(jnp.maximum(ys - 1, 0), xs), centre, at(jnp.minimum(ys + 1, h - 1), xs))
    dx = jnp.where((xs > 0) & (xs < w - 1), dx, 0.0)
    dy = jnp.where((ys > 0) & (ys < h - 1), dy, 0.0)
    found = values > 0
    xy = (jnp.stack([xs + dx, ys + dy], axis=-1) + 0.5) * stride - 0.5  # half-pixel centres
    xy = xy * found[..., None]
    return jnp.concatenate([xy, values[..., None]], axis=-1)


def _resize(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Bilinear (half-pixel centres) resize of (B, h, w, C) maps to (B, *hw, C) float32."""
    x = x.astype(jnp.float32)
    return (
        x
        if x.shape[1:3] == tuple(hw)
        else jax.image.resize(x, (x.shape[0], *hw, x.shape[-1]), "linear")
    )


@dataclasses.dataclass(frozen=True)
class BottomupPaf:
    """The bottom-up part-field task for a keypoint format (see the module docstring).

    flip_test: average with the mirrored image's maps; scales: test scales (multi-scale when several;
    1.0 = the input size, each scaled input a multiple of 8 pixels); nms: None (bottom-up protocol)
    or "oks"; peak_threshold, max_peaks: the device peak finder's; grouping: `group_peaks` settings.
    """

    fmt: KeypointFormat
    flip_test: bool = True
    scales: tuple[float, ...] = (1.0,)
    nms: str | None = None
    peak_threshold: float = 0.1
    max_peaks: int = 32
    grouping: tuple[tuple[str, float], ...] = ()
    batch_keys: tuple[str, ...] = ("image", "heatmaps", "pafs", "mask")
    best_metric: str = "AP"

    @property
    def limbs(self) -> np.ndarray:
        """The format's limb table (L, 2)."""
        return part_fields.limbs_for(self.fmt)

    @property
    def out_channels(self) -> dict[str, int]:
        """{"heatmaps": K, "pafs": 2 L}."""
        return {"heatmaps": self.fmt.num_keypoints, "pafs": 2 * len(self.limbs)}

    @property
    def sigmas(self) -> np.ndarray:
        """The format's OKS sigmas (K,)."""
        return self.fmt.sigmas_array

    def loss(self, apply: Apply, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
        """Sum over stages of the masked L2 of joint maps and PAFs; metrics: the last stage's terms."""
        out = apply(batch["image"])
        targets = batch["pafs"].reshape(*batch["pafs"].shape[:3], -1)
        terms = [
            (
                masked_l2(hm, batch["heatmaps"], batch["mask"]),
                masked_l2(paf, targets, batch["mask"]),
            )
            for hm, paf in zip(stages(out["heatmaps"]), stages(out["pafs"]), strict=True)
        ]
        total = sum(a + b for a, b in terms)
        return total, {"loss_heatmaps": terms[-1][0], "loss_pafs": terms[-1][1]}

    def _maps(self, apply: Apply, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The last stage's maps of `images`, flip-averaged. -> (B, h, w, K), (B, h, w, L, 2)."""
        out = apply(images)
        hm, paf = stages(out["heatmaps"])[-1], stages(out["pafs"])[-1]
        paf = paf.astype(jnp.float32).reshape(*paf.shape[:3], -1, 2)
        hm = hm.astype(jnp.float32)
        if self.flip_test:
            out = apply(images[:, :, ::-1])
            fhm, fpaf = stages(out["heatmaps"])[-1], stages(out["pafs"])[-1]
            fpaf = fpaf.astype(jnp.float32).reshape(*fpaf.shape[:3], -1, 2)
            back_hm, back_paf = part_fields.flip_maps(
                fhm.astype(jnp.float32), fpaf, fmt=self.fmt, limbs=self.limbs, xp=jnp
            )
            hm, paf = 0.5 * (hm + back_hm), 0.5 * (paf + back_paf)
        return hm, paf

    def predict(self, apply: Apply, images: jax.Array) -> dict[str, jax.Array]:
        """Traced: images (B, H, W, 3) uint8 -> {"heatmaps": (B, h, w, K), "pafs": (B, h, w, L, 2),
        "peaks": (B, K, M, 3) input pixels, "stride": (B,)}; maps at the model's stride h = H / s."""
        b, height, width, _ = images.shape
        hm_sum = paf_sum = None
        for scale in self.scales:
            hw = (int(round(height * scale / 8)) * 8, int(round(width * scale / 8)) * 8)
            x = images
            if hw != (height, width):
                x = jnp.clip(jnp.round(_resize(images, hw)), 0, 255).astype(jnp.uint8)
            hm, paf = self._maps(apply, x)
            if hm_sum is None:
                grid = hm.shape[1:3]
                hm_sum, paf_sum = hm, paf
            else:
                hm_sum = hm_sum + _resize(hm, grid)
                flat = _resize(paf.reshape(*paf.shape[:3], -1), grid)
                paf_sum = paf_sum + flat.reshape(paf_sum.shape)
        n, stride = len(self.scales), height / hm_sum.shape[1]
        peaks = device_peaks(hm_sum / n, self.peak_threshold, self.max_peaks, stride)
        strides = jnp.full((b,), stride, jnp.float32)
        return {"heatmaps": hm_sum / n, "pafs": paf_sum / n, "peaks": peaks, "stride": strides}

    def to_persons(
        self, predicted: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]
    ) -> Persons:
        """Host: the people of every valid image. Shapes: predicted as `predict` returns; batch with
        "scale" (B,), "offset" (B, 2) (image pixel = (input pixel - offset) / scale), "image_id"
        (B,), "record_index" (B,), optionally "valid" (B,) -> Persons (any number per image)."""
        missing = [k for k in EVAL_KEYS[1:] if k not in batch]
        if missing:
            raise KeyError(f"lacks {missing}")
        valid = np.asarray(batch.get("valid", np.ones(len(batch["image_id"]), bool)), bool)
        parts = []
        for i in np.flatnonzero(valid):
            people, _ = part_fields.group_peaks(
                np.asarray(predicted["peaks"][i]), np.asarray(predicted["pafs"][i]),
                limbs=self.limbs, stride=float(predicted["stride"][i]), **dict(self.grouping),
            )  # fmt: skip
            parts.append(self._image_persons(people, batch, i))
        return persons_lib.concat(parts, self.fmt.num_keypoints)

    def _image_persons(
        self, people: np.ndarray, batch: Mapping[str, np.ndarray], i: int
    ) -> Persons:
        """One image's people (N, K, 3) in input pixels -> Persons in image pixels."""
        n, k = len(people), self.fmt.num_keypoints
        scale = float(batch["scale"][i])
        offset = np.asarray(batch["offset"][i], np.float64)
        found = people[..., 2] > 0
        xy = np.where(found[..., None], (people[..., :2] - offset) / scale, 0.0)
        big = np.where(found[..., None], xy, np.inf).min(axis=1)
        small = np.where(found[..., None], xy, -np.inf).max(axis=1)
        size = np.maximum(small - big, 1.0)
        return Persons(
            image_ids=np.full(n, int(batch["image_id"][i]), np.int64), keypoints=xy,
            keypoint_scores=people[..., 2].astype(np.float64).reshape(n, k),
            box_scores=np.ones(n), areas=np.prod(size, axis=-1), centers=(big + small) / 2,
            scales=size / 200.0,
            record_indices=np.full(n, int(batch["record_index"][i]), np.int64),
        )  # fmt: skip
