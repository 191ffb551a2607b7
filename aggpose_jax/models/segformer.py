"""The official SegFormer (MiT) pose baseline: AggPose's "without aggregation" ablation.

An MiT encoder (patch_embed1-4, block1-4, norm1-4), then one decoder per stage: a Mix-FFN(C_i -> 64 -> 64)
at the stage's own resolution followed by nearest up-sampling x1, x2, x4, x8 to 1/4 resolution (the
same module as AggPose's MlpUpsample; params `to_fused/{i}/mlp/...`, the official `to_fused.{i}.mlp.*`
ModuleList of `pose_segformer.py`). The four maps are concatenated in
stage order and `final_layer` = Mix-FFN(4*64 -> 64 -> K) gives the heatmaps. The official model also
registers an unused 1x1 conv `recover` (16,448 dead params): it is left out here, and `convert.py`
drops it when reading official weights.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models import mit
from aggpose_jax.models.blocks import heads
from aggpose_jax.models.blocks.layers import Dtype
from aggpose_jax.models.blocks.mixffn import MlpUpsample
from aggpose_jax.models.mit import MixVisionTransformer


class _ToFused(nn.Module):
    """The per-stage decoders (official `to_fused`: a list of MlpDecoders, children named 0-3).

    Shapes: stages [(B, H/2^(i+2), W/2^(i+2), C_i)] -> [(B, H/4, W/4, dim)] * 4.
    """

    dim: int
    dtype: Dtype

    @nn.compact
    def __call__(self, stages: list[jax.Array]) -> list[jax.Array]:
        return [
            MlpUpsample(self.dim, 2**i, self.dtype, name=str(i))(x) for i, x in enumerate(stages)
        ]


class SegFormerPose(MixVisionTransformer):
    """SegFormer pose baseline. Shapes: images (B, H, W, 3) -> {"heatmaps": (B, H/4, W/4, K) float32}.

    Defaults are the official one (MiT-B5); the encoder fields are MixVisionTransformer's.
    """

    num_keypoints: int = 17
    decoder_dim: int = 64

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        stages = super().__call__(images, train)["stages"]
        ups = _ToFused(self.decoder_dim, self.dtype, name="to_fused")(stages)
        out = heads.mixffn_head(
            jnp.concatenate(ups, axis=-1), self.num_keypoints, hidden=self.decoder_dim,
            dtype=self.dtype, refine=False,
        )  # fmt: skip
        return {"heatmaps": out.astype(jnp.float32)}


# The pose baseline on every MiT encoder (b5 is the official one; tiny: CPU runs and CI).
VARIANTS = mit.VARIANTS
OPTIONS = {k: v for k, v in mit.OPTIONS.items() if k != "head"}  # its head is the pose head
OUTPUTS = ("heatmaps",)


def make(fields: dict, out_channels: dict[str, int]) -> SegFormerPose:
    """SegFormerPose from a variant's fields merged with options; out_channels {"heatmaps": K}."""
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    fields["attention_impl"] = fields["attention_impl"] or None
    return SegFormerPose(**fields, num_keypoints=out_channels["heatmaps"])
