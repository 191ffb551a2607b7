"""MLN, the Multi-Level Network (Huang, Zhuang and Qin, ICIP 2019, "Multi-Level Network for
High-Speed Multi-Person Pose Estimation"): bottom-up joint maps and PAFs from multi-level features.

The paper's four modules (its Fig. 2; no code was released, so names and the details the text leaves
open are ours, chosen as below and checked against its parameter and FLOP counts):
* Backbone (`features`, `cpm`): VGG-19's first ten convs (conv1_1 ... conv4_2, stride 8; torchvision
  layout, so ImageNet weights load: `models/weights/vgg.py`), then the two 3x3 convs of its baseline
  OpenPose (256, 128 channels). Their output F is the bifurcation layer: the network splits there, and
  F is the global context the refinement reads.
* Body part detection (`detect_joint`, `detect_limb`): a joint and a limb branch on F, each Conv-1 to
  Conv-3 (3x3, 128), Conv-4 (1x1, 512), Conv-5 (1x1 prediction): OpenPose's stage 1, the paper's
  Conv-1 ... Conv-5. A branch's multi-level features are concat(Conv-1 ... Conv-4): the lower-level
  (left/right) and upper-level (localisation) features that the paper aggregates.
* Feature transfer (`transfer_limb_to_joint`, `transfer_joint_to_limb`): on one branch's multi-level
  features, 4 transfer blocks of three 3x3 128-channel convs with ReLU whose outputs are aggregated
  (summed; `blocks/vgg.TransferBlock`); the result is merged (concatenated) with the target branch's
  Conv-4 features (eq. 5: A_b^T = ReLU(A_b * f^T)).
* Refinement (`refine_joint`, `refine_limb`): on concat(joint maps, limb maps, F, the branch's merged
  features), 7 blocks of the transfer block's structure and a 1x1 prediction conv (no ReLU).
Both the detection and the refinement predictions are supervised (eqs. 3-4 on each): the outputs
are two-entry lists [detection, refinement].

Size, against the paper (Table 2; its text: 21,278,912 parameters; 82.5 GFLOPs): with OpenPose's 19
joint and 38 PAF channels, 21,497,408 conv weights (+1.0%) and 21,510,578 parameters with biases. The
paper counts weights only: its OpenPose figure, 52,298,816, is exactly OpenPose's weights without its
12,630 biases (models/openpose.py). Its FLOPs are multiply-adds at 368 x 432, the input of its 42.2 FPS
timing: MLN has 83.06 GMACs there (+0.7%; OpenPose 159.57 vs 159.6). The paper's two counts agree with
each other only at that size: 21.28 M weights, of which all but VGG's 5.86 M run at stride 8, give
82.5 G multiply-adds at 368 x 432 (44.2 G in the VGG front, 38.3 G after it).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aggpose_jax.models.blocks.vgg import VGG19_FRONT, BlockStack, ConvChain, VGGFront

Dtype = Any


class MLN(nn.Module):
    """The Multi-Level Network. Shapes: images (B, H, W, 3) -> {"heatmaps": [2 x (B, H/8, W/8, K)],
    "pafs": [2 x (B, H/8, W/8, P)]} float32 ([detection, refinement]; P = 2 L). H, W multiples of 8.

    `vgg` the front's widths per resolution, `cpm` the widths of the 3x3 convs after it, `width` the
    conv width of every module, `hidden` the detection branches' Conv-4 width, `transfer_blocks` and
    `refine_blocks` the block counts. Params float32, `dtype` the compute dtype.
    """

    vgg: Sequence[Sequence[int]] = VGG19_FRONT
    cpm: Sequence[int] = (256, 128)
    width: int = 128
    hidden: int = 512
    transfer_blocks: int = 4
    refine_blocks: int = 7
    num_keypoints: int = 19
    num_pafs: int = 38
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, list[jax.Array]]:
        dt = self.dtype
        x = VGGFront(self.vgg, dt, name="features")(images.astype(dt))
        context = ConvChain([(c, 3) for c in self.cpm], dtype=dt, name="cpm")(x)
        layers = [(self.width, 3)] * 3 + [(self.hidden, 1)]
        joints, joint_levels = ConvChain(
            layers, self.num_keypoints, features=True, dtype=dt, name="detect_joint"
        )(context)
        limbs, limb_levels = ConvChain(
            layers, self.num_pafs, features=True, dtype=dt, name="detect_limb"
        )(context)

        def transfer(levels: list[jax.Array], name: str) -> jax.Array:
            x = jnp.concatenate(levels, axis=-1)
            return BlockStack(self.transfer_blocks, self.width, dtype=dt, name=name)(x)

        to_joint = transfer(limb_levels, "transfer_limb_to_joint")
        to_limb = transfer(joint_levels, "transfer_joint_to_limb")
        maps = [joints, limbs, context]
        joint_in = jnp.concatenate([*maps, to_joint, joint_levels[-1]], axis=-1)
        limb_in = jnp.concatenate([*maps, to_limb, limb_levels[-1]], axis=-1)
        refined_joints = BlockStack(
            self.refine_blocks, self.width, self.num_keypoints, dt, name="refine_joint"
        )(joint_in)
        refined_limbs = BlockStack(
            self.refine_blocks, self.width, self.num_pafs, dt, name="refine_limb"
        )(limb_in)
        f32 = lambda *xs: [x.astype(jnp.float32) for x in xs]  # noqa: E731
        return {"heatmaps": f32(joints, refined_joints), "pafs": f32(limbs, refined_limbs)}


# base: the paper's network; tiny: CPU runs and CI (one block per module, narrow).
VARIANTS: dict[str, dict[str, Any]] = {
    "base": dict(vgg=VGG19_FRONT, cpm=(256, 128), width=128, hidden=512, transfer_blocks=4,
                 refine_blocks=7),
    "tiny": dict(vgg=((8,), (16,), (16,), (32,)), cpm=(16,), width=16, hidden=32,
                 transfer_blocks=1, refine_blocks=1),
}  # fmt: skip
OPTIONS: dict[str, Any] = dict(dtype="float32")
OUTPUTS = ("heatmaps", "pafs")


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> MLN:
    """MLN from a variant's fields merged with options; out_channels {"heatmaps": K, "pafs": 2L}."""
    fields = dict(fields, dtype=jnp.dtype(fields["dtype"]))
    return MLN(**fields, num_keypoints=out_channels["heatmaps"], num_pafs=out_channels["pafs"])
