"""Efficient self-attention with sequence reduction (SegFormer, Xie et al. 2021), as in the official AggPose.

Queries come from every position; keys and values from a map shrunk by a strided `sr` conv (kernel =
stride = sr_ratio) and a LayerNorm (eps 1e-5). The kv Linear's first C output channels are K, the next C
are V, and inside each the heads are contiguous chunks of head_dim = C / heads (the same for q).
"""

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.layers import PLAIN_LN_EPS, PatchConv, make_dense, make_layer_norm

Dtype = Any
AttentionImpl = Literal["xla", "cudnn"] | None


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    implementation: AttentionImpl = None,
    bias: jax.Array | None = None,
) -> jax.Array:
    """Scaled dot-product attention with an fp32 softmax. Shapes: q (B, T, N, D), k/v (B, S, N, D) -> q.

    `bias` (broadcastable to (B, N, T, S)) is added to the logits, e.g. a relative-position bias.

    `jax.nn.dot_product_attention` computes the logits with float32 accumulation and the softmax in
    float32 on its XLA path whatever the input dtype; the cuDNN path (GPU, bf16/fp16 only) keeps fp32
    softmax statistics too. `implementation=None` lets JAX choose; 'xla' forces the portable path.
    """
    if implementation == "cudnn" and q.dtype not in (jnp.bfloat16, jnp.float16):
        # cuDNN flash attention takes half precision only; fall back rather than fail in fp32 runs.
        implementation = "xla"
    return jax.nn.dot_product_attention(q, k, v, bias, implementation=implementation)


class EfficientSelfAttention(nn.Module):
    """Multi-head attention over sequence-reduced keys/values. Shapes: (B, H, W, C) -> (B, H, W, C)."""

    num_heads: int
    sr_ratio: int = 1
    qkv_bias: bool = True
    dtype: Dtype = jnp.float32
    attention_impl: AttentionImpl = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        head_dim = channels // self.num_heads
        q = make_dense(channels, "q", self.dtype, self.qkv_bias)(x)
        q = q.reshape(batch, height * width, self.num_heads, head_dim)
        if self.sr_ratio > 1:
            x = PatchConv(channels, self.sr_ratio, self.dtype, name="sr")(x)
            x = make_layer_norm(PLAIN_LN_EPS, "norm", self.dtype)(x)
        kv = make_dense(2 * channels, "kv", self.dtype, self.qkv_bias)(x)
        kv = kv.reshape(batch, -1, 2, self.num_heads, head_dim)
        out = attend(q, kv[:, :, 0], kv[:, :, 1], self.attention_impl)
        out = out.reshape(batch, height, width, channels)
        # The official proj Linear always has a bias, whatever qkv_bias says.
        return make_dense(channels, "proj", self.dtype)(out)
