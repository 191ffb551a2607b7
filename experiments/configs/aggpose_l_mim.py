"""AggPose-L pretrained by masked image modelling (SimMIM) on unlabeled infant video frames.

Command (pod):   python -m experiments.run --exp=aggpose_l_mim --workdir=gs://BUCKET/runs/aggpose_l_mim \
                     --config.data.frames='("gs://BUCKET/frames/part-000", ...)'   (docs/pretraining.md)
Command (tiny):  python -m experiments.run --exp=aggpose_l_mim:tiny --workdir=workdirs/mim_tiny
                 (frames of the synthetic infant video, written and extracted at start-up)
Fine-tune:       python -m experiments.run --exp=aggpose_l_infant --config.train.init_from=<run>/best
                 (every param but `mask_token` and `pixel_head` loads; the pose head stays fresh)

Method (Xie et al., CVPR 2022, SimMIM): 32-pixel mask units at ratio 0.6, masked pixels zeroed before
the 7x7 stem and a learned mask token after patch_embed1, the whole dense network, a linear head on the
stride-4 branch + pixel shuffle x4, L1 on the masked pixels. No published work pretrains an infant pose
model this way: there is no paper number to match.

Recipe: AdamW (0.9, 0.999), weight decay 0.05 (none on the mask token, biases and norms), clip 5,
lr 2e-4 per 512 images (8e-4 at the global batch 2048), 10 warm-up epochs, cosine to 1e-5 per 512
(4e-5), drop path 0, 100 epochs; random-resized crops (scale 0.67-1) and flips. Warm-up in steps
assumes 15 M frames (7,324 steps per epoch at batch 2048); set optim.warmup_steps for other sizes.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    """AggPose-L SimMIM pretraining; `arg="tiny"` gives the CPU-sized variant."""
    c = common.get_base_config()
    c.exp_name = "aggpose_l_mim"
    c.model = common.model_block("aggpose", "l")
    common.mim_recipe(c)
    return common.finalize(c, arg)
