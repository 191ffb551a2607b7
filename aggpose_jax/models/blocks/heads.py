"""Heads: from the network's stride-4 features to the task's output channels.

Heads are functions called inside a network's compact `__call__` (their modules take the network's
official names). `mixffn_head`: AggPose / SegFormer; `pyramid_head`: RAM+GPR's coarse-to-fine head over
all branches (HRNet's own head, a 1x1 conv on the finest branch, lives in `models/hrnet.py`).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.layers import Dtype
from aggpose_jax.models.blocks.mixffn import MixFFN


def mixffn_head(
    x: jax.Array, out_channels: int, *, hidden: int, dtype: Dtype, refine: bool
) -> jax.Array:
    """The official AggPose / SegFormer pose head: Mix-FFN(s) down to `out_channels` raw maps.

    Shapes: x (B, H/4, W/4, C) -> (B, H/4, W/4, out_channels) in `dtype`. With `refine` (AggPose) a
    Mix-FFN `final` (C -> hidden -> hidden) runs first; `final_layer` (-> hidden -> out_channels) always.
    """
    if refine:
        x = MixFFN(hidden, hidden, dtype, name="final")(x)
    return MixFFN(hidden, out_channels, dtype, name="final_layer")(x)


def pyramid_head(
    parts: Sequence[jax.Array], out_channels: int, *, deconv_kernel: int = 2, dtype: Dtype
) -> jax.Array:
    """GPR, Gradual Pyramid Refinement (Zhang et al., ICIP 2020, eqs. 4-6): from the coarsest part
    up, X'_{k-1} = Int(X_k) + Deconv(X_k), X_{k-1} = Concat(X'_{k-1}, X_{k-1}); H = Conv(X_1).

    Shapes: parts [(B, H/2^k, W/2^k, C_k)], part k at half the resolution of part k - 1 ->
    (B, H, W, out_channels) in `dtype`. Channels grow on the way up: the map brought to level k - 1
    has C_k + ... + C_{M-1} channels, the final conv sees all sum_k C_k.
    Choices the paper leaves open: Int is bilinear x2 (half-pixel centres, torch's
    align_corners=False); Deconv (module `deconv<k>`, bias, no BN or ReLU) is a `deconv_kernel`
    x `deconv_kernel` transposed conv of stride 2 (torch padding (k - 2) / 2, output exactly 2x) that
    keeps the channels, as the sum with Int requires; the final conv (module `final_layer`) is 1x1 with
    bias, as HRNet's. Kernels Normal(0, 0.001), biases 0 (HRNet's init of convs and deconvs).
    """
    init = nn.initializers.normal(stddev=0.001)
    k = deconv_kernel
    pad = k - 1 - (k - 2) // 2  # torch's padding (k - 2) / 2, seen from the dilated input
    x = parts[-1].astype(dtype)
    for level in range(len(parts) - 1, 0, -1):
        batch, height, width, channels = x.shape
        up = jax.image.resize(x, (batch, 2 * height, 2 * width, channels), "bilinear")
        up = up + nn.ConvTranspose(
            channels,
            (k, k),
            strides=(2, 2),
            padding=((pad, pad), (pad, pad)),
            dtype=dtype,
            kernel_init=init,
            name=f"deconv{level}",
        )(x)
        x = jnp.concatenate([up, parts[level - 1].astype(dtype)], axis=-1)
    return nn.Conv(out_channels, (1, 1), dtype=dtype, kernel_init=init, name="final_layer")(x)
