"""RAM + GPR (Zhang et al., ICIP 2020, "Learning enhanced resolution-wise features for human pose
estimation"): HRNet with resolution-wise attention fusion and the Gradual Pyramid Refinement head.

The network is `hrnet.HRNet(fusion="ram", head="gpr")`: every HighResolutionModule fuses with RAM
(`blocks/fusion.py`: HRNet's rescalers, then a softmax across branches of per-branch pooled scores,
an affine omega / beta per (output, input) pair, a weighted sum, ReLU), the last module of stage 4
keeps all four branches, and GPR (`blocks/heads.py`) merges them from 1/32 up to 1/4 of the input
(bilinear x2 + a 2x2 stride-2 deconv, summed, concatenated with the next finer branch; a final 1x1
conv to K heatmaps).

The paper gives no widths. Branch widths stay HRNet's (32 or 48 x (1, 2, 4, 8), 4 BasicBlocks,
modules (1, 4, 3)); the free choice is GPR's deconvolution, whose channels are fixed by eq. 4 (they
must equal the interpolated map's: 15 x width on the way up). A 2x2 kernel (stride 2, no overlap)
brings both models within 5% of the paper's table (GMACs counted as torch's FlopCounterMode at
256x192; the HRNet figures of both papers are MACs / 2^30, e.g. HRNet-W32's 7.1 = 7.645e9 / 2^30):

    variant  params (paper)         GMACs / 2^30 (paper)
    w32      30,978,489 (31.4M)     7.97 (7.7)     8.56e9 MACs
    w48      69,075,497 (70.0M)    16.47 (15.8)   17.69e9 MACs

A 4x4 deconv (SimpleBaseline's) would give 35.9M / 10.0 and 80.2M / 21.1. There are no official
weights; HRNet (pose or ImageNet) weights fill everything but RAM's attention and GPR
(`convert.load_hrnet_backbone`, or the trainer's general init).
"""

from typing import Any

from aggpose_jax.models import hrnet

VARIANTS: dict[str, dict[str, Any]] = {
    "w32": dict(width=32, num_modules=(1, 4, 3), num_blocks=4, gpr_deconv_kernel=2),
    "w48": dict(width=48, num_modules=(1, 4, 3), num_blocks=4, gpr_deconv_kernel=2),
    "tiny": dict(width=8, num_modules=(1, 1, 1), num_blocks=1, gpr_deconv_kernel=2),
}
# The same options as the hrnet family, defaults RAM and GPR (fusion="sum" / head="final" are the
# paper's ablations).
OPTIONS: dict[str, Any] = dict(dtype="float32", fusion="ram", head="gpr")
OUTPUTS = ("heatmaps",)


def make(fields: dict[str, Any], out_channels: dict[str, int]) -> hrnet.HRNetPose:
    """HRNetPose with RAM / GPR from a variant's fields merged with options; out_channels
    {"heatmaps": K}. Returns {"heatmaps": (B, H/4, W/4, K)}."""
    return hrnet.make(fields, out_channels)
