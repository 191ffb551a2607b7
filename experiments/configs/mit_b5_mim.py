"""The MiT-B5 encoder (SegFormer's, AggPose's main branch) pretrained by SimMIM on infant frames.

Command (pod):   python -m experiments.run --exp=mit_b5_mim --workdir=gs://BUCKET/runs/mit_b5_mim \
                     --config.data.frames='("gs://BUCKET/frames/part-000", ...)'
Command (tiny):  python -m experiments.run --exp=mit_b5_mim:tiny --workdir=workdirs/mit_mim_tiny
Fine-tune:       python -m experiments.run --exp=segformer_b5_pose --config.train.init_from=<run>/best
                 (SegFormerPose is the MiT encoder + its head: the encoder's params load by name),
                 or AggPose's main groups: --config.train.init_take=<common.MIT_BACKBONE>

Method (SimMIM): as aggpose_l_mim, with SimMIM's encoder head: a 1x1 conv on the last stage (stride 32)
+ pixel shuffle x32. Recipe: as aggpose_l_mim (common.mim_recipe).
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """MiT-B5 SimMIM pretraining; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "mit_b5_mim"
    c.model = common.model_block("mit", "b5")
    common.mim_recipe(c)
    return common.finalize(c, arg)
