"""AggPose (Cao et al., IJCAI 2022): a multi-branch, multi-resolution MiT with cross-resolution merges.

Dataflow of the official release (see docs/models.md): four branches at 1/4, 1/8, 1/16 and 1/32 of the
input, each a chain of block groups; after stages 2, 3 and 4 every branch is re-built by a merge Mix-FFN
over a channel concat of itself and its neighbours (down-sampled by an extra OverlapPatchEmbed,
up-sampled by an MlpUpsample). Concat orders are the official ones: the first branch-2 merge is
[self, down], all later multi-input merges are [down, self, up]. Merges have no residual.

`depths[b][k]` is the number of blocks of branch b's k-th group:
branch 1: block1, block1_1, block1_2, block1_3; branch 2: block2, block2_1, block2_2;
branch 3: block3, block3_1; branch 4: block4. The official constructor can only express tables whose
extra groups all have depths[0][0] blocks; this table has no such limit.

Ablation switches (defaults = the official model; each switches one part only):
* `fusion`: "merge" (official: Mix-FFN over the concat, no residual) | "merge_residual" (the paper's
  eq. 5, `+ x_j`: the branch's own input added to the merge) | "ram" (RAM's resolution-wise attention
  sum of the re-sampled parts in place of the concat + Mix-FFN; the re-sampling stays AggPose's).
* `head`: "mixffn" (official: concat at 1/4, two Mix-FFNs) | "gpr" (RAM + GPR's gradual pyramid head
  over the four final merges) | "paf" (bottom-up: the official head's shared `final` Mix-FFN, then
  `final_layer` for the K joint maps and `final_layer_paf` for the 2 L PAF channels, both at 1/4;
  outputs one-entry lists {"heatmaps": [...], "pafs": [...]}, as the staged bottom-up families) |
  "pixels" (SimMIM pretraining, blocks/masking.py: called with `mask` (B, H/32, W/32), the masked
  pixels are zeroed, `mask_token` fills the masked positions after patch_embed1, and a linear head on
  the stride-4 branch's final merge + pixel shuffle x4 gives {"pixels": (B, H, W, 3), "target": the
  input}; the other final merges and the pose head are not built).
* `attention`: "efficient" (official: sequence reduction) | "window_grid" (window then grid attention,
  MaxViT / WGNet, in every transformer block; see `blocks/transformer.py`).

Drop path (stochastic depth): dpr = linspace(0, rate, sum of the main groups' depths). Main group b uses
its consecutive slice starting at start_b; block j of every extra group of branch b uses dpr[start_b + j]
(clipped to the last entry), which is exactly the official rule (extras reuse the first entries of their
stage's slice) whenever the official constructor can build the table.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks import fusion, heads, masking
from aggpose_jax.models.blocks.attention import AttentionImpl
from aggpose_jax.models.blocks.layers import NORM_EPS, OverlapPatchEmbed, make_layer_norm
from aggpose_jax.models.blocks.mixffn import MixFFN, MlpUpsample
from aggpose_jax.models.blocks.transformer import BlockGroup, drop_path_schedule

Dtype = Any
MASK_UNIT = 32  # SimMIM's mask unit (head="pixels")

# Group names per branch, in order; the first of each is the main (MiT) group.
GROUP_NAMES: tuple[tuple[str, ...], ...] = (
    ("block1", "block1_1", "block1_2", "block1_3"),
    ("block2", "block2_1", "block2_2"),
    ("block3", "block3_1"),
    ("block4",),
)
# Group norms share the group's suffix: block1_2 -> norm1_2.
NORM_NAMES = tuple(tuple(g.replace("block", "norm") for g in branch) for branch in GROUP_NAMES)


def group_drop_path_rates(
    depths: Sequence[Sequence[int]], rate: float
) -> dict[str, tuple[float, ...]]:
    """Per-group stochastic-depth rates (the official schedule generalised to a per-group table)."""
    dpr = drop_path_schedule(sum(branch[0] for branch in depths), rate)
    rates, start = {}, 0
    for names, branch in zip(GROUP_NAMES, depths, strict=True):
        for k, (name, n) in enumerate(zip(names, branch, strict=True)):
            if k == 0:
                rates[name] = tuple(dpr[start : start + n])
            else:
                rates[name] = tuple(dpr[min(start + j, len(dpr) - 1)] for j in range(n))
        start += branch[0]
    return rates


class AggPose(nn.Module):
    """AggPose pose network. Shapes: images (B, H, W, 3) -> {"heatmaps": (B, H/4, W/4, K) float32}.

    H and W must be multiples of 32. Defaults are AggPose-L (the official get_pose_net). Parameters are
    float32; `dtype` is the compute dtype. `remat` checkpoints each block; `scan_blocks` runs each group
    under nn.scan (params stacked per group, see `convert.stack_block_groups`).
    """

    embed_dims: Sequence[int] = (64, 128, 320, 512)
    num_heads: Sequence[int] = (1, 2, 5, 8)
    sr_ratios: Sequence[int] = (8, 4, 2, 1)
    depths: Sequence[Sequence[int]] = ((3, 3, 3, 3), (6, 3, 3), (40, 3), (3,))
    num_keypoints: int = 17
    mlp_ratio: int = 4
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    dtype: Dtype = jnp.float32
    remat: bool = False
    scan_blocks: bool = False
    attention_impl: AttentionImpl = None
    attention: str = "efficient"
    fusion: str = "merge"
    head: str = "mixffn"
    num_pafs: int = 0  # PAF channels (2 L) of head="paf"

    @nn.compact
    def __call__(
        self, images: jax.Array, train: bool = False, mask: jax.Array | None = None
    ) -> dict[str, Any]:
        c1, c2, c3, c4 = self.embed_dims
        dims = self.embed_dims
        rates = group_drop_path_rates(self.depths, self.drop_path_rate)
        dt = self.dtype

        def run(branch: int, k: int, x: jax.Array) -> jax.Array:
            x = BlockGroup(
                rates[GROUP_NAMES[branch][k]],
                self.num_heads[branch],
                self.sr_ratios[branch],
                self.mlp_ratio,
                self.qkv_bias,
                dt,
                self.remat,
                self.scan_blocks,
                self.attention_impl,
                self.attention,
                name=GROUP_NAMES[branch][k],
            )(x, train)
            return make_layer_norm(NORM_EPS, NORM_NAMES[branch][k], dt)(x)

        def down(name: str, features: int, x: jax.Array) -> jax.Array:
            return OverlapPatchEmbed(features, 3, 2, dt, name=name)(x)

        def up(name: str, features: int, factor: int, x: jax.Array) -> jax.Array:
            return MlpUpsample(features, factor, dt, name=name)(x)

        def merge(name: str, branch: int, parts: list[jax.Array], own: int) -> jax.Array:
            # parts[own] is the branch's own map (x_j of the paper's eq. 5).
            if self.fusion == "ram":
                return fusion.resolution_attention(parts, name=name, dtype=dt)
            y = fusion.merge(parts, dims[branch], name=name, dtype=dt)
            return y + parts[own] if self.fusion == "merge_residual" else y

        # Stage 1.
        pretrain = self.head == "pixels"
        x = images.astype(dt)
        x = masking.mask_pixels(x, mask, MASK_UNIT) if pretrain else x
        x1 = OverlapPatchEmbed(c1, 7, 4, dt, name="patch_embed1")(x)
        if pretrain:
            x1 = masking.MaskTokens(MASK_UNIT // 4, name="mask_token")(x1, mask)
        x1 = run(0, 0, x1)
        # Stage 2: a new branch, no fusion.
        x2 = down("patch_embed2", c2, x1)
        x1 = run(0, 1, x1)
        x2 = run(1, 0, x2)
        # Stage 3.
        x3 = down("patch_embed3", c3, x2)
        m1 = merge("merge_12_1", 0, [x1, up("upsample1_21", c1, 2, x2)], 0)
        m2 = merge("merge_12_2", 1, [x2, down("patch_embed12", c2, x1)], 0)
        x1, x2, x3 = run(0, 2, m1), run(1, 1, m2), run(2, 0, x3)
        # Stage 4.
        x4 = down("patch_embed4", c4, x3)
        m1 = merge("merge_123_1", 0, [x1, up("upsample2_21", c1, 2, x2)], 0)
        m2 = merge(
            "merge_123_2",
            1,
            [down("patch_embed12k", c2, x1), x2, up("upsample2_32", c2, 2, x3)],
            1,
        )
        m3 = merge("merge_123_3", 2, [down("patch_embed23k", c3, x2), x3], 1)
        x1, x2, x3, x4 = run(0, 3, m1), run(1, 2, m2), run(2, 1, m3), run(3, 0, x4)
        # Final aggregation (not normalised).
        m1 = merge("merge_1234_1", 0, [x1, up("upsample3_21", c1, 2, x2)], 0)
        if pretrain:
            pixels = masking.PixelHead(4, dt, name="pixel_head")(m1)
            return {"pixels": pixels, "target": images.astype(jnp.float32)}
        m2 = merge(
            "merge_1234_2",
            1,
            [down("patch_embed12kk", c2, x1), x2, up("upsample3_32", c2, 2, x3)],
            1,
        )
        m3 = merge(
            "merge_1234_3",
            2,
            [down("patch_embed23kk", c3, x2), x3, up("upsample3_43", c3, 2, x4)],
            1,
        )
        m4 = merge("merge_1234_4", 3, [down("patch_embed34kk", c4, x3), x4], 1)
        if self.head == "gpr":
            out = heads.pyramid_head([m1, m2, m3, m4], self.num_keypoints, dtype=dt)
            return {"heatmaps": out.astype(jnp.float32)}
        # Head: everything at 1/4 resolution, then two Mix-FFNs; raw fc2 output are the heatmaps.
        out = jnp.concatenate(
            [
                m1,
                up("upsample4_21", c1, 2, m2),
                up("upsample4_31", c1, 4, m3),
                up("upsample4_41", c1, 8, m4),
            ],
            axis=-1,
        )
        if self.head == "paf":
            shared = MixFFN(c1, c1, dt, name="final")(out)
            hm = heads.mixffn_head(shared, self.num_keypoints, hidden=c1, dtype=dt, refine=False)
            paf = MixFFN(c1, self.num_pafs, dt, name="final_layer_paf")(shared)
            return {"heatmaps": [hm.astype(jnp.float32)], "pafs": [paf.astype(jnp.float32)]}
        out = heads.mixffn_head(out, self.num_keypoints, hidden=c1, dtype=dt, refine=True)
        return {"heatmaps": out.astype(jnp.float32)}


_MIT_COMMON = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1))
# Architecture per variant: l = the official get_pose_net (MiT-B5 + extra groups of 3), s = the paper's
# AggPose-S (MiT-B2 + extra groups of 3), tiny = CPU experiments and CI.
VARIANTS: dict[str, dict[str, Any]] = {
    "l": dict(_MIT_COMMON, depths=((3, 3, 3, 3), (6, 3, 3), (40, 3), (3,))),
    "s": dict(_MIT_COMMON, depths=((3, 3, 3, 3), (4, 3, 3), (6, 3), (3,))),
    "tiny": dict(
        _MIT_COMMON, embed_dims=(16, 32, 40, 64), depths=((1, 1, 1, 1), (1, 1, 1), (1, 1), (1,))
    ),
}
# Run options (config `model.options`), defaults of the official recipe.
OPTIONS: dict[str, Any] = dict(
    dtype="float32", remat=False, scan_blocks=True, drop_path_rate=0.1, attention_impl="",
    attention="efficient", fusion="merge", head="mixffn",
)  # fmt: skip
CHOICES = dict(
    attention=("efficient", "window_grid"), fusion=("merge", "merge_residual", "ram"),
    head=("mixffn", "gpr", "paf", "pixels"),
)  # fmt: skip
OUTPUTS: tuple[str, ...] = ()  # per head, checked in make(): HEAD_OUTPUTS
HEAD_OUTPUTS = dict(
    mixffn=("heatmaps",), gpr=("heatmaps",), paf=("heatmaps", "pafs"), pixels=(),
)  # fmt: skip


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> AggPose:
    """AggPose from a variant's fields merged with options; out_channels {"heatmaps": K}, and
    {"heatmaps": K, "pafs": 2 L} for head="paf" (head="pixels" predicts RGB: none needed)."""
    for key, known in CHOICES.items():
        if fields[key] not in known:
            raise ValueError(f"unknown AggPose {key} {fields[key]!r}; known: {', '.join(known)}")
    missing = [k for k in HEAD_OUTPUTS[fields["head"]] if k not in out_channels]
    if missing:
        raise ValueError(f'AggPose head="{fields["head"]}" needs out_channels for {missing}')
    if fields["head"] == "paf":
        fields = dict(fields, num_pafs=out_channels["pafs"])
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    fields["attention_impl"] = fields["attention_impl"] or None
    return AggPose(**fields, num_keypoints=out_channels.get("heatmaps", 0))
