"""Masked image modelling (SimMIM: Xie et al., CVPR 2022): predict the masked pixels of a frame.

Train batch: "image" (B, H, W, 3) uint8, "mask" (B, H/u, W/u) uint8 (1 = masked, u = mask unit, 32).
The model is called as apply(images, mask=mask) and returns {"pixels": (B, H, W, 3) its prediction,
"target": (B, H, W, 3) the normalised input before masking} (the model owns the input normalisation).
Loss: L1 over the masked pixels (SimMIM), optionally against per-patch normalised targets (each mask
unit to zero mean, unit variance, as MAE's norm_pix_loss). Predict (device): a fixed mask per batch row
(`eval_masks`, from `seed`), so held-out losses compare across checkpoints and runs. The evaluation
compares with predicting each image's mean visible colour at every masked pixel (`baseline_l1`).
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.tasks import Apply


def upsample_mask(mask: jax.Array, factor: int) -> jax.Array:
    """(B, gh, gw) -> (B, gh * f, gw * f, 1) float32, each unit repeated over its f x f pixels."""
    m = jnp.repeat(jnp.repeat(mask.astype(jnp.float32), factor, axis=1), factor, axis=2)
    return m[..., None]


def patch_normalize(x: jax.Array, unit: int, eps: float = 1e-6) -> jax.Array:
    """(B, H, W, C) -> (B, H, W, C): every unit x unit patch and channel to zero mean, unit variance."""
    b, h, w, c = x.shape
    p = x.reshape(b, h // unit, unit, w // unit, unit, c)
    mean = p.mean(axis=(2, 4), keepdims=True)
    var = p.var(axis=(2, 4), keepdims=True)
    return ((p - mean) / jnp.sqrt(var + eps)).reshape(x.shape)


def masked_l1(pred: jax.Array, target: jax.Array, mask: jax.Array, unit: int) -> jax.Array:
    """Mean |pred - target| over masked pixels and channels. pred, target (B, H, W, C); mask (B, gh, gw)."""
    m = upsample_mask(mask, unit)
    diff = jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
    return jnp.sum(diff * m) / (jnp.sum(m) * pred.shape[-1] + 1e-8)


def eval_masks(batch: int, grid_hw: tuple[int, int], ratio: float, seed: int) -> jax.Array:
    """(B, gh, gw) uint8: row r masks exactly round(ratio * n) units drawn from key(seed) folded with r."""
    n = grid_hw[0] * grid_hw[1]
    k = int(round(ratio * n))

    def row(r):
        order = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), r), n)
        return jnp.zeros(n, jnp.uint8).at[order[:k]].set(1).reshape(grid_hw)

    return jax.vmap(row)(jnp.arange(batch))


def baseline_l1(target: np.ndarray, mask: np.ndarray, unit: int) -> np.ndarray:
    """Per image: L1 of predicting the mean visible colour at every masked pixel. -> (B,) float64.

    target (B, H, W, C) the normalised image; mask (B, gh, gw) 1 = masked.
    """
    m = np.repeat(np.repeat(mask.astype(np.float64), unit, 1), unit, 2)[..., None]
    t = target.astype(np.float64)
    visible = np.maximum((1 - m).sum(axis=(1, 2)), 1.0)
    mean = ((1 - m) * t).sum(axis=(1, 2)) / visible  # (B, C)
    err = np.abs(t - mean[:, None, None, :]) * m
    return err.sum(axis=(1, 2, 3)) / np.maximum(m.sum(axis=(1, 2, 3)) * t.shape[-1], 1e-8)


@dataclasses.dataclass(frozen=True)
class MaskedImage:
    """SimMIM pretraining (see the module docstring). `mask_unit` pixels per mask unit; `mask_ratio`
    of the units masked at evaluation; `norm_target`: per-patch normalised targets."""

    mask_unit: int = 32
    mask_ratio: float = 0.6
    norm_target: bool = False
    seed: int = 0
    batch_keys: tuple[str, ...] = ("image", "mask")
    best_metric: str = "skill"  # 1 - L1 / baseline L1 on held-out frames (0: the mean colour)

    @property
    def out_channels(self) -> dict[str, int]:
        """{"pixels": 3}."""
        return {"pixels": 3}

    def _target(self, target: jax.Array) -> jax.Array:
        return patch_normalize(target, self.mask_unit) if self.norm_target else target

    def loss(self, apply: Apply, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
        """Scalar masked L1; no extra metrics."""
        out = apply(batch["image"], mask=batch["mask"])
        return masked_l1(
            out["pixels"], self._target(out["target"]), batch["mask"], self.mask_unit
        ), {}

    def predict(self, apply: Apply, images: jax.Array) -> dict[str, jax.Array]:
        """Traced: images (B, H, W, 3) uint8 -> {"pixels", "target": (B, H, W, 3), "mask": (B, gh, gw)}."""
        b, h, w = images.shape[:3]
        mask = eval_masks(b, (h // self.mask_unit, w // self.mask_unit), self.mask_ratio, self.seed)
        out = apply(images, mask=mask)
        return {"pixels": out["pixels"], "target": self._target(out["target"]), "mask": mask}

    def score(self, predicted: Mapping[str, np.ndarray], valid: np.ndarray) -> dict[str, float]:
        """Held-out numbers from `predict`'s rows (valid (B,) bool): L1, the mean-colour baseline, skill."""
        m = predicted["mask"][valid]
        pred, target = predicted["pixels"][valid], predicted["target"][valid]
        mu = np.repeat(np.repeat(m.astype(np.float64), self.mask_unit, 1), self.mask_unit, 2)
        err = np.abs(pred.astype(np.float64) - target) * mu[..., None]
        per_image = err.sum(axis=(1, 2, 3)) / np.maximum(mu.sum(axis=(1, 2)) * pred.shape[-1], 1e-8)
        l1 = float(np.mean(per_image))
        base = float(np.mean(baseline_l1(target, m, self.mask_unit)))
        return {"L1": float(l1), "L1_mean_baseline": base, "skill": 1.0 - float(l1) / base}
