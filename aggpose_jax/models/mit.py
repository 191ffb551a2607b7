"""The Mix Transformer encoder family (MiT B0-B5, SegFormer: Xie et al. 2021).

Four stages, each an overlapping patch embed, a block group and a LayerNorm; the params mirror the
official SegFormer `mit_b*` layout (patch_embed1-4, block1-4, norm1-4). Its output is the four stage
maps: the backbone of the SegFormer pose baseline, and of masked-image pretraining.

`head="pixels"` is the SimMIM encoder (blocks/masking.py): called with `mask` (B, H/32, W/32), it
zeroes the masked pixels, puts `mask_token` in the masked positions after patch_embed1, and returns
{"pixels": (B, H, W, 3) from a 1 x 1 conv on the last stage + pixel shuffle x32, "target": the input}.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks import masking
from aggpose_jax.models.blocks.attention import AttentionImpl
from aggpose_jax.models.blocks.layers import NORM_EPS, OverlapPatchEmbed, make_layer_norm
from aggpose_jax.models.blocks.transformer import BlockGroup, drop_path_schedule

Dtype = Any
MASK_UNIT = 32  # SimMIM's mask unit = the last stage's stride


class MixVisionTransformer(nn.Module):
    """MiT encoder. Shapes: images (B, H, W, 3) -> {"stages": [(B, H/4, W/4, C1) ... (B, H/32, W/32, C4)]}.

    Params: patch_embed1-4, block1-4, norm1-4 (the official SegFormer `mit_b*` layout).
    """

    embed_dims: Sequence[int] = (64, 128, 320, 512)
    num_heads: Sequence[int] = (1, 2, 5, 8)
    sr_ratios: Sequence[int] = (8, 4, 2, 1)
    depths: Sequence[int] = (3, 6, 40, 3)
    mlp_ratio: int = 4
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    dtype: Dtype = jnp.float32
    remat: bool = False
    scan_blocks: bool = False
    attention_impl: AttentionImpl = None
    head: str = "none"  # "pixels": SimMIM pretraining (see the module docstring)

    @nn.compact
    def __call__(
        self, images: jax.Array, train: bool = False, mask: jax.Array | None = None
    ) -> dict[str, Any]:
        dpr = drop_path_schedule(sum(self.depths), self.drop_path_rate)
        x = images.astype(self.dtype)
        target = images
        if self.head == "pixels":
            x = masking.mask_pixels(x, mask, MASK_UNIT)
        outs, start = [], 0
        for i in range(4):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            x = OverlapPatchEmbed(
                self.embed_dims[i], kernel, stride, self.dtype, name=f"patch_embed{i + 1}"
            )(x)
            if i == 0 and self.head == "pixels":
                x = masking.MaskTokens(MASK_UNIT // 4, name="mask_token")(x, mask)
            x = BlockGroup(
                tuple(dpr[start : start + self.depths[i]]),
                self.num_heads[i],
                self.sr_ratios[i],
                self.mlp_ratio,
                self.qkv_bias,
                self.dtype,
                self.remat,
                self.scan_blocks,
                self.attention_impl,
                name=f"block{i + 1}",
            )(x, train)
            start += self.depths[i]
            x = make_layer_norm(NORM_EPS, f"norm{i + 1}", self.dtype)(x)
            outs.append(x)
        if self.head == "pixels":
            pixels = masking.PixelHead(MASK_UNIT, self.dtype, name="pixel_head")(outs[-1])
            return {"pixels": pixels, "target": target.astype(jnp.float32)}
        return {"stages": outs}


_HEADS_SR = dict(num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1))
# Official MiT variants (SegFormer): dims, heads, sr ratios and mlp ratio 4 are shared from B1 on.
VARIANTS: dict[str, dict[str, Any]] = {
    "b0": dict(_HEADS_SR, embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
    "b1": dict(_HEADS_SR, embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2)),
    "b2": dict(_HEADS_SR, embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3)),
    "b3": dict(_HEADS_SR, embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3)),
    "b4": dict(_HEADS_SR, embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3)),
    "b5": dict(_HEADS_SR, embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3)),
    "tiny": dict(_HEADS_SR, embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1)),
}
OPTIONS: dict[str, Any] = dict(
    dtype="float32", remat=False, scan_blocks=True, drop_path_rate=0.1, attention_impl="",
    head="none",
)  # fmt: skip
HEADS = ("none", "pixels")
OUTPUTS: tuple[str, ...] = ()  # the stage maps are not sized by a task


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> MixVisionTransformer:
    """The encoder alone (out_channels unused: it returns {"stages": ...}, or head="pixels"'s)."""
    del out_channels
    if fields["head"] not in HEADS:
        raise ValueError(f"unknown MiT head {fields['head']!r}; known: {', '.join(HEADS)}")
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    fields["attention_impl"] = fields["attention_impl"] or None
    return MixVisionTransformer(**fields)
