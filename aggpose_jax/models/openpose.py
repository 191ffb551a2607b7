"""OpenPose (Cao et al., CVPR 2017, "Realtime Multi-Person 2D Pose Estimation using Part Affinity
Fields"): the CMU 6-stage, 2-branch network, the bottom-up baseline of MLN's Table 2.

Dataflow of the CMU release (its Caffe prototxt; names ours where the release's would not be valid
flax names):
* `features`: VGG-19's first ten convs (conv1_1 ... conv4_2, stride 8; `blocks/vgg.VGGFront`, torchvision
  layout so that ImageNet weights load), then `cpm` (conv4_3_CPM 3x3 256, conv4_4_CPM 3x3 128, ReLU):
  the 128-channel features F that every stage reads.
* stage 1, two branches `stage1_L1` (PAFs) and `stage1_L2` (joint maps): three 3x3 128 convs, a 1x1 512
  conv, a 1x1 prediction conv (no ReLU after it).
* stages t = 2..6, `stage<t>_L1` / `stage<t>_L2`: on concat(PAFs, joint maps, F) of the stage before,
  five 7x7 128 convs, a 1x1 128 conv, a 1x1 prediction conv.
Every stage's predictions are supervised (intermediate supervision): the outputs are lists.

Size: with the release's 38 PAF and 19 joint channels (18 parts and a background map), 52,311,446
parameters, of which 52,298,816 are conv weights and 12,630 biases: MLN's Table 2 counts the weights
(52.3 M; its text: 52,298,816, exactly). 159.6 GFLOPs (the same table) are the multiply-adds of one
368 x 432 image (MLN's timing input): counted here, 159.57 G (-0.02%; 135.9 G at 368 x 368).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.vgg import VGG19_FRONT, ConvChain, VGGFront

Dtype = Any


class OpenPose(nn.Module):
    """The CMU OpenPose network. Shapes: images (B, H, W, 3) -> {"heatmaps": [stages x (B, H/8, W/8,
    K)], "pafs": [stages x (B, H/8, W/8, P)]} float32 (P = 2 L channels). H, W multiples of 8.

    `vgg` the front's widths per resolution, `cpm` the widths of the 3x3 convs after it, `width` the
    stages' conv width, `hidden` stage 1's 1x1 width, `kernel` and `refine_layers` the later stages'
    conv size and count. Params float32, `dtype` the compute dtype.
    """

    vgg: Sequence[Sequence[int]] = VGG19_FRONT
    cpm: Sequence[int] = (256, 128)
    width: int = 128
    hidden: int = 512
    stages: int = 6
    kernel: int = 7
    refine_layers: int = 5
    num_keypoints: int = 19
    num_pafs: int = 38
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, list[jax.Array]]:
        dt = self.dtype
        x = VGGFront(self.vgg, dt, name="features")(images.astype(dt))
        feats = ConvChain([(c, 3) for c in self.cpm], dtype=dt, name="cpm")(x)
        first = [(self.width, 3)] * 3 + [(self.hidden, 1)]
        later = [(self.width, self.kernel)] * self.refine_layers + [(self.width, 1)]
        heatmaps, pafs = [], []
        x = feats
        for t in range(1, self.stages + 1):
            layers = first if t == 1 else later
            paf = ConvChain(layers, self.num_pafs, dtype=dt, name=f"stage{t}_L1")(x)
            hm = ConvChain(layers, self.num_keypoints, dtype=dt, name=f"stage{t}_L2")(x)
            pafs.append(paf.astype(jnp.float32))
            heatmaps.append(hm.astype(jnp.float32))
            x = jnp.concatenate([paf, hm, feats], axis=-1)
        return {"heatmaps": heatmaps, "pafs": pafs}


# cmu: the released COCO network; tiny: CPU runs and CI (two stages, 3x3 convs).
VARIANTS: dict[str, dict[str, Any]] = {
    "cmu": dict(vgg=VGG19_FRONT, cpm=(256, 128), width=128, hidden=512, stages=6, kernel=7,
                refine_layers=5),
    "tiny": dict(vgg=((8,), (16,), (16,), (32,)), cpm=(16,), width=16, hidden=32, stages=2,
                 kernel=3, refine_layers=2),
}  # fmt: skip
OPTIONS: dict[str, Any] = dict(dtype="float32")
OUTPUTS = ("heatmaps", "pafs")


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> OpenPose:
    """OpenPose from a variant's fields merged with options; out_channels {"heatmaps": K, "pafs": 2L}."""
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    return OpenPose(**fields, num_keypoints=out_channels["heatmaps"], num_pafs=out_channels["pafs"])
