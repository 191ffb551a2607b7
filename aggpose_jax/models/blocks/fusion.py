"""Cross-resolution fusion: how a branch is rebuilt from itself and its re-sampled neighbours.

Fusions are functions called inside a network's compact `__call__`, so the modules they create take the
network's own (official) names, e.g. `merge_123_2` or HRNet's `fuse_layers/<i>`.

* `merge`: AggPose's Mix-FFN over a concat of parts already at the output resolution.
* `hrnet_fuse`: HRNet's rescale-and-sum of parts at their own resolutions (`CrossResolutionFusion`).
* `ram`: the same rescaling, then RAM's resolution-wise attention in place of the sum.
* `resolution_attention`: RAM's attention sum alone, for parts already at the output resolution.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks import hr
from aggpose_jax.models.blocks.layers import Dtype, upsample_nearest
from aggpose_jax.models.blocks.mixffn import MixFFN


def merge(parts: Sequence[jax.Array], features: int, *, name: str, dtype: Dtype) -> jax.Array:
    """AggPose's aggregation: one Mix-FFN over the channel concat of the parts, no residual.

    Shapes: parts [(B, H, W, C_i)], all at one resolution -> (B, H, W, features). The concat order is
    the caller's (the official orders are listed in `models/aggpose.py`).
    """
    return MixFFN(features, features, dtype, name=name)(jnp.concatenate(parts, axis=-1))


class ResolutionAttention(nn.Module):
    """RAM's weighting at one output resolution (Zhang et al., ICIP 2020, eqs. 1-3).

    Shapes: parts [(B, H, W, C)] * M, all already rescaled to the output's resolution and channels ->
    (B, H, W, C). Per input h: E_h = Conv1x1(GlobalAvgPool(part_h)) (a scalar per sample; one 1x1 conv
    per input, with bias), a = softmax_h(E) across the M inputs, W_h = omega_h * a_h + beta_h, output
    sum_h W_h * part_h. The printed eq. 2 divides exp(E_h) by sum_i E_h^i, a typo (the sum runs over
    the wrong index and lacks the exp); the text says "activated with SoftMax", which this implements.
    omega starts at 1 and beta at 0 (the paper does not say), so at init the output is the
    softmax-weighted mean. The weights W (B, M) are sown as intermediates `weights`.
    Params: `score_kernel` (M, C), `score_bias` (M,), `omega` (M,), `beta` (M,).
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, parts: Sequence[jax.Array]) -> jax.Array:
        m, channels = len(parts), parts[0].shape[-1]
        kernel = self.param("score_kernel", nn.initializers.normal(0.001), (m, channels))
        bias = self.param("score_bias", nn.initializers.zeros_init(), (m,))
        omega = self.param("omega", nn.initializers.ones_init(), (m,))
        beta = self.param("beta", nn.initializers.zeros_init(), (m,))
        pooled = jnp.stack([p.astype(jnp.float32).mean(axis=(1, 2)) for p in parts], axis=1)
        scores = (pooled * kernel).sum(axis=-1) + bias  # eq. 1: M 1x1 convs C -> 1, (B, M)
        weights = omega * jax.nn.softmax(scores, axis=-1) + beta  # eq. 2, softmax across inputs
        self.sow("intermediates", "weights", weights)
        weights = weights.astype(self.dtype)
        terms = zip(weights.T, parts, strict=True)
        return sum(w[:, None, None, None] * p.astype(self.dtype) for w, p in terms)


class CrossResolutionFusion(nn.Module):
    """One output of HRNet's fuse layers (`fuse_layers/<i>`): every part rescaled to part `out_index`,
    then summed (HRNet) or attention-weighted (RAM), then ReLU.

    Shapes: parts [(B, H/2^j, W/2^j, C_j)], part j at half the resolution of part j - 1 ->
    (B, H/2^i, W/2^i, features), i = out_index; parts[i] must have `features` channels. Rescaling is
    HRNet's: a coarser part (j > i) by 1x1 conv + BN (module `<j>`) and nearest up-sampling by
    2^(j-i); a finer part (j < i) by i - j strided 3x3 conv + BN steps (module `<j>/<k>`, ReLU between
    steps, channels C_j until the last); part i as it is. RAM's weights are module `attention`.
    """

    out_index: int
    features: int
    attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, parts: Sequence[jax.Array], train: bool = False) -> jax.Array:
        i, f, dt = self.out_index, self.features, self.dtype
        rescaled = []
        for j, x in enumerate(parts):
            if j > i:
                x = hr.ConvBN(f, 1, 1, False, dt, name=str(j))(x, train)
                x = upsample_nearest(x, 2 ** (j - i))
            elif j < i:
                steps = (x.shape[-1],) * (i - j - 1) + (f,)
                x = hr.DownChain(steps, False, dt, name=str(j))(x, train)
            rescaled.append(x.astype(dt))
        if self.attention:
            y = ResolutionAttention(dt, name="attention")(rescaled)
        else:
            y = rescaled[0]
            for x in rescaled[1:]:
                y = y + x
        return nn.relu(y)


def hrnet_fuse(
    parts: Sequence[jax.Array],
    out_index: int,
    features: int,
    *,
    name: str,
    train: bool,
    dtype: Dtype,
) -> jax.Array:
    """HRNet's fusion (Sun et al., CVPR 2019): ReLU(sum of the parts rescaled to part `out_index`).

    Shapes: parts [(B, H/2^j, W/2^j, C_j)] at their own resolutions -> (B, H/2^i, W/2^i, features).
    See `CrossResolutionFusion`; `name` is the row's module name (HRNet: `fuse_layers/<i>`'s `<i>`).
    """
    return CrossResolutionFusion(out_index, features, False, dtype, name=name)(parts, train)


def ram(
    parts: Sequence[jax.Array],
    out_index: int,
    features: int,
    *,
    name: str,
    train: bool,
    dtype: Dtype,
) -> jax.Array:
    """RAM (Zhang et al., ICIP 2020): HRNet's rescaling, then the resolution-wise attention sum
    (`ResolutionAttention`) in place of the plain sum, then ReLU (kept from HRNet; the paper's eq. 3
    stops at the sum).

    Shapes: parts [(B, H/2^j, W/2^j, C_j)] at their own resolutions -> (B, H/2^i, W/2^i, features).
    The rescalers have HRNet's names (module `<name>/<j>`), so HRNet weights fill them; the attention
    is `<name>/attention`. For parts already at the output resolution (AggPose's merges bring their
    neighbours there themselves), use `resolution_attention`.
    """
    return CrossResolutionFusion(out_index, features, True, dtype, name=name)(parts, train)


def resolution_attention(parts: Sequence[jax.Array], *, name: str, dtype: Dtype) -> jax.Array:
    """RAM's attention-weighted sum of parts already at one resolution with equal channels (eqs. 1-3).

    Shapes: parts [(B, H, W, C)] * M -> (B, H, W, C). No activation. See `ResolutionAttention`.
    """
    return ResolutionAttention(dtype, name=name)(parts)
