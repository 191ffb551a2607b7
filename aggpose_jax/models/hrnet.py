"""HRNet (Sun et al., CVPR 2019), the official pose network, with RAM fusion and a GPR head as options.

Dataflow of the official `pose_hrnet.py`: stem (conv1 3x3 s2 64 + bn1 + ReLU, conv2 3x3 s2 64 + bn2 +
ReLU), `layer1` (4 Bottlenecks, 64 planes -> 256 channels), then stages 2-4 with 2, 3, 4 branches of
width * (1, 2, 4, 8) channels at 1/4 ... 1/32 of the input. A `transition<s>` starts each stage: a
3x3 conv + BN + ReLU where a branch changes channels (only transition1's branch 0), and the new branch
from the coarsest old one by 3x3 s2 conv + BN + ReLU. A stage is `num_modules` HighResolutionModules:
`num_blocks` BasicBlocks per branch (`branches/<b>/<k>`), then `fuse_layers/<i>` rebuilds branch i as
ReLU(sum of every branch rescaled to it) (blocks/fusion.py). The last module of stage 4 outputs only
the finest branch (multi_scale_output False), and `final_layer`, a 1x1 conv with bias, gives the K
heatmaps at 1/4 of the input. Conv layers have no bias except final_layer; BatchNorm has PyTorch's
semantics (blocks/hr.py).

Options beyond the official network (Zhang et al., ICIP 2020, "Learning enhanced resolution-wise
features"; family `ramgpr`): `fusion="ram"` replaces every fuse sum by resolution-wise attention
(`fuse_layers/<i>/attention` next to HRNet's rescalers), `head="gpr"` keeps all four branches at the
end of stage 4 (its last module fuses into every branch) and replaces final_layer by the Gradual
Pyramid Refinement head (`deconv3`, `deconv2`, `deconv1`, `final_layer`).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks import fusion, heads
from aggpose_jax.models.blocks.hr import BatchNorm as BN
from aggpose_jax.models.blocks.hr import Blocks, ConvBN, DownChain, conv

Dtype = Any
STEM_CHANNELS = 64  # conv1, conv2 and layer1's planes (layer1 outputs 4 x 64).


class Transition(nn.Module):
    """`transition<s>`: the branches of the previous stage -> those of the next (modules `<i>`)."""

    channels_pre: tuple[int, ...]
    channels: tuple[int, ...]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
        out = []
        for i, c in enumerate(self.channels):
            if i < len(self.channels_pre):
                if c == self.channels_pre[i]:
                    out.append(xs[i])
                else:
                    out.append(ConvBN(c, 3, 1, True, self.dtype, name=str(i))(xs[i], train))
            else:  # A new, coarser branch from the coarsest old one.
                steps = (self.channels_pre[-1],) * (i - len(self.channels_pre)) + (c,)
                out.append(DownChain(steps, True, self.dtype, name=str(i))(xs[-1], train))
        return out


class Branches(nn.Module):
    """`branches`: `num_blocks` BasicBlocks on each branch (modules `<b>/<k>`)."""

    channels: tuple[int, ...]
    num_blocks: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
        return [
            Blocks("basic", c, self.num_blocks, self.dtype, name=str(b))(x, train)
            for b, (c, x) in enumerate(zip(self.channels, xs, strict=True))
        ]


class FuseLayers(nn.Module):
    """`fuse_layers`: output i (module `<i>`) from every branch; only output 0 unless multi-scale."""

    channels: tuple[int, ...]
    multi_scale_output: bool = True
    attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
        fuse = fusion.ram if self.attention else fusion.hrnet_fuse
        rows = len(xs) if self.multi_scale_output else 1
        return [
            fuse(xs, i, self.channels[i], name=str(i), train=train, dtype=self.dtype)
            for i in range(rows)
        ]


class HighResolutionModule(nn.Module):
    """One HighResolutionModule: `branches`, then `fuse_layers`. [(B, H/2^b, W/2^b, C_b)] -> same
    (or only the finest branch when not `multi_scale_output`)."""

    channels: tuple[int, ...]
    num_blocks: int
    multi_scale_output: bool = True
    attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
        xs = Branches(self.channels, self.num_blocks, self.dtype, name="branches")(xs, train)
        if len(xs) == 1:
            return xs
        return FuseLayers(
            self.channels, self.multi_scale_output, self.attention, self.dtype, name="fuse_layers"
        )(xs, train)


class Stage(nn.Module):
    """`stage<s>`: `num_modules` HighResolutionModules (modules `<m>`); the last one outputs only the
    finest branch unless `multi_scale_output`."""

    channels: tuple[int, ...]
    num_modules: int
    num_blocks: int
    multi_scale_output: bool = True
    attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, xs: Sequence[jax.Array], train: bool = False) -> list[jax.Array]:
        for m in range(self.num_modules):
            multi = self.multi_scale_output or m < self.num_modules - 1
            xs = HighResolutionModule(
                self.channels, self.num_blocks, multi, self.attention, self.dtype, name=str(m)
            )(xs, train)
        return xs


class HRNet(nn.Module):
    """Pose HRNet. Shapes: images (B, H, W, 3) -> heatmaps (B, H/4, W/4, K) float32 (an array).

    H and W must be multiples of 32. `width` gives the branch channels width * (1, 2, 4, 8),
    `num_modules` the HighResolutionModules of stages 2-4, `num_blocks` the BasicBlocks per branch
    (layer1 is always 4 Bottlenecks of 64 planes). W32 = HRNet(32, (1, 4, 3), 4), W48 = width 48.
    `fusion`: "sum" (official) or "ram"; `head`: "final" (official 1x1 conv) or "gpr" (with
    `gpr_deconv_kernel`). Params float32, `dtype` the compute dtype (BatchNorm runs in float32).
    `train=True` normalises with batch statistics and updates `batch_stats` (pass mutable=...).
    The `hrnet` family's models (`HRNetPose`) return {"heatmaps": ...} instead.
    """

    width: int = 8
    num_modules: Sequence[int] = (1, 1, 2)
    num_blocks: int = 1
    num_keypoints: int = 17
    fusion: str = "sum"
    head: str = "final"
    gpr_deconv_kernel: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        for key, known in CHOICES.items():
            if getattr(self, key) not in known:
                raise ValueError(f"unknown HRNet {key} {getattr(self, key)!r}; known: {known}")
        dt = self.dtype
        x = images.astype(dt)
        x = nn.relu(BN(dtype=dt, name="bn1")(conv(STEM_CHANNELS, 3, 2, "conv1", dt)(x), train))
        x = nn.relu(BN(dtype=dt, name="bn2")(conv(STEM_CHANNELS, 3, 2, "conv2", dt)(x), train))
        x = Blocks("bottleneck", STEM_CHANNELS, 4, dt, name="layer1")(x, train)
        xs, pre = [x], (4 * STEM_CHANNELS,)
        widths = tuple(self.width * 2**b for b in range(4))
        for s, num_modules in enumerate(self.num_modules):
            channels = widths[: s + 2]
            xs = Transition(pre, channels, dt, name=f"transition{s + 1}")(xs, train)
            multi = s < len(self.num_modules) - 1 or self.head == "gpr"
            xs = Stage(
                channels,
                num_modules,
                self.num_blocks,
                multi,
                self.fusion == "ram",
                dt,
                name=f"stage{s + 2}",
            )(xs, train)
            pre = channels
        if self.head == "gpr":
            out = heads.pyramid_head(
                xs, self.num_keypoints, deconv_kernel=self.gpr_deconv_kernel, dtype=dt
            )
        else:
            out = conv(self.num_keypoints, 1, 1, "final_layer", dt, use_bias=True)(xs[0])
        return out.astype(jnp.float32)


class HRNetPose(HRNet):
    """HRNet returning named outputs: images (B, H, W, 3) -> {"heatmaps": (B, H/4, W/4, K)}.

    The same fields and the same variables as HRNet (a subclass adds no module level).
    """

    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return {"heatmaps": super().__call__(images, train)}


# Architecture per variant: w32 and w48 are the official COCO 256x192 / 384x288 models.
VARIANTS: dict[str, dict[str, Any]] = {
    "w32": dict(width=32, num_modules=(1, 4, 3), num_blocks=4),
    "w48": dict(width=48, num_modules=(1, 4, 3), num_blocks=4),
    "tiny": dict(width=8, num_modules=(1, 1, 1), num_blocks=1),
}
# Run options (config `model.options`); fusion and head make the RAM / GPR ablations one flag each.
OPTIONS: dict[str, Any] = dict(dtype="float32", fusion="sum", head="final")
CHOICES = dict(fusion=("sum", "ram"), head=("final", "gpr"))
OUTPUTS = ("heatmaps",)


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> HRNetPose:
    """HRNetPose from a variant's fields merged with options; out_channels {"heatmaps": K}."""
    for key, known in CHOICES.items():
        if fields[key] not in known:
            raise ValueError(f"unknown HRNet {key} {fields[key]!r}; known: {', '.join(known)}")
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    return HRNetPose(**fields, num_keypoints=out_channels["heatmaps"])
