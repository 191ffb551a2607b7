"""Training losses of the official release (JointsMSELoss with target weights)."""

import jax.numpy as jnp


def joints_mse_loss(
    heatmaps: jnp.ndarray, targets: jnp.ndarray, target_weights: jnp.ndarray
) -> jnp.ndarray:
    """Target-weighted heatmap MSE, as the official JointsMSELoss(use_target_weight=True).

    Shapes: heatmaps, targets (B, H, W, K); target_weights (B, K). Returns a scalar.

    The official loss sums, over joints, 0.5 * mean over (batch, pixels) of (w*pred - w*gt)^2 and divides
    by K, which is 0.5 * mean over (B, H, W, K) of (w * (pred - gt))^2. Computed in float32 whatever the
    compute dtype of the heatmaps.
    """
    diff = heatmaps.astype(jnp.float32) - targets.astype(jnp.float32)
    weighted = diff * target_weights.astype(jnp.float32)[:, None, None, :]
    return 0.5 * jnp.mean(jnp.square(weighted))
