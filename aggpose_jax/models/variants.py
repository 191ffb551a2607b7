"""The model table: one name per architecture, and `make_model` to build it.

| name | what |
|---|---|
| aggpose_l | AggPose-L, the official get_pose_net (MiT-B5 dims/depths + extra groups of 3) |
| aggpose_s | AggPose-S per the paper (MiT-B2 + extra groups of 3) |
| aggpose_tiny | a small AggPose for CPU experiments and CI |
| segformer_b5_pose | the official SegFormer (MiT-B5) pose baseline |
| mit_b0 .. mit_b5 | the MiT encoders alone (return the 4 stage maps; num_keypoints is ignored) |
"""

from typing import Any

import flax.linen as nn

from aggpose_jax.models.aggpose import AggPose
from aggpose_jax.models.mit import MIT_VARIANTS, MixVisionTransformer
from aggpose_jax.models.segformer import SegFormerPose

_MIT_COMMON = dict(num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1))

VARIANTS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "aggpose_l": (
        AggPose,
        dict(
            embed_dims=(64, 128, 320, 512),
            depths=((3, 3, 3, 3), (6, 3, 3), (40, 3), (3,)),
            **_MIT_COMMON,
        ),
    ),
    "aggpose_s": (
        AggPose,
        dict(
            embed_dims=(64, 128, 320, 512),
            depths=((3, 3, 3, 3), (4, 3, 3), (6, 3), (3,)),
            **_MIT_COMMON,
        ),
    ),
    "aggpose_tiny": (
        AggPose,
        dict(
            embed_dims=(16, 32, 40, 64),
            depths=((1, 1, 1, 1), (1, 1, 1), (1, 1), (1,)),
            **_MIT_COMMON,
        ),
    ),
    "segformer_b5_pose": (
        SegFormerPose,
        dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), **_MIT_COMMON),
    ),
}
for _name, _cfg in MIT_VARIANTS.items():
    VARIANTS[_name] = (MixVisionTransformer, dict(_cfg, **_MIT_COMMON))


def make_model(name: str, num_keypoints: int = 17, **overrides: Any) -> nn.Module:
    """Builds a variant by name; `overrides` set any field (dtype, remat, scan_blocks, attention_impl...).

    Shapes of the built model: images (B, H, W, 3) -> heatmaps (B, H/4, W/4, num_keypoints), or for
    mit_b* the 4 stage maps.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(VARIANTS))}")
    cls, cfg = VARIANTS[name]
    kwargs = dict(cfg)
    if cls is not MixVisionTransformer:
        kwargs["num_keypoints"] = num_keypoints
    kwargs.update(overrides)
    return cls(**kwargs)
