"""The one base schema of every experiment: each key is declared here with its default.

An experiment file (`experiments/configs/<name>.py`) calls `get_base_config()`, sets the values that
differ, and calls `finalize(config, arg)`, which applies the `tiny` variant (same code path, small model,
bundled sample, a few steps) when asked and locks the config so that a mistyped override fails at once.

Units: `*_hw` sizes are (height, width) in pixels; `*_epochs` are epochs of `train.steps_per_epoch` steps
(-1: derived from the dataset size and the global batch); `*_steps` are optimizer steps.
"""

import ml_collections

from aggpose_jax.models import build

# Shared by every tiny variant: CPU-sized, bundled sample, a few steps.
TINY_STEPS = 600


# init_take for an ImageNet MiT backbone (AggPose's branch-main groups, SegFormer's encoder).
MIT_BACKBONE = "^params/(patch_embed[1-4]|block[1-4]|norm[1-4])/"
# init_reinit when fine-tuning a pose AggPose from an aggpose_l_mim checkpoint: the parts that
# SimMIM's stride-4 pixel head does not build (the coarser final merges and the pose head).
MIM_FRESH = (
    "^params/(final|final_layer|merge_1234_[234]|patch_embed(12|23|34)kk|upsample3_(32|43)"
    "|upsample4_[234]1)/"
)
# init_take for torchvision's ImageNet VGG-19 (`vgg19-dcbb9e9d.pth`) in MLN's and OpenPose's front.
VGG_BACKBONE = "^params/features/"


def model_block(family: str, variant: str) -> ml_collections.ConfigDict:
    """config.model for a family's variant: its options (aggpose_jax.models.<family>.OPTIONS)."""
    m = ml_collections.ConfigDict()
    m.family = family  # a module of aggpose_jax.models (or a dotted path)
    m.variant = variant  # a key of the family's VARIANTS
    m.options = ml_collections.ConfigDict(dict(build.family_module(family).OPTIONS))
    return m


def get_base_config() -> ml_collections.ConfigDict:
    """The complete schema with the defaults of the official COCO 256x192 recipe (AggPose-L)."""
    c = ml_collections.ConfigDict()
    c.exp_name = ""
    c.seed = 0

    c.model = model_block("aggpose", "l")

    c.task = ml_collections.ConfigDict()
    c.task.name = "topdown_heatmap"  # a module of aggpose_jax.tasks
    c.task.nms = "oks"  # oks | soft | none (the official infant evaluation has none)
    c.task.decode = "dark"  # dark | quarter | argmax
    c.task.flip_shift = False  # HRNet's SHIFT_HEATMAP: flipped maps shifted 1 px (AggPose: none)
    c.task.scales = (1.0,)  # bottomup_paf: test scales of the input size (several: multi-scale)
    c.task.mask_unit = 32  # masked_image: pixels per mask unit (SimMIM: 32)
    c.task.mask_ratio = 0.6  # masked_image: fraction of the units masked
    c.task.norm_target = False  # masked_image: per-unit normalised pixel targets (MAE's norm_pix)

    c.data = ml_collections.ConfigDict()
    c.data.keypoint_format = "coco"  # coco (17) | infant (21)
    c.data.root = ""  # "" = the bundled COCO sample (4 images)
    c.data.train_ann = ""  # "" = <root>/annotations/person_keypoints_train2017.json
    c.data.train_images = ""  # "" = <root>/images/train2017
    c.data.val_ann = ""
    c.data.val_images = ""
    c.data.det_file = ""  # person detections for evaluation with use_gt_bbox=False
    c.data.input_hw = (256, 192)
    c.data.heatmap_hw = (64, 48)
    c.data.sigma = 2.0
    c.data.augment = "official"  # official (half body, scale, rotation, flip, colour) | hrnet (no colour) | light | none
    c.data.cutout = 0.0  # cutout square side / input width (RAM + GPR: 0.25); 0 = off
    c.data.num_workers = 0  # grain worker processes per host, training and evaluation (0: none)
    c.data.shuffle = True
    c.data.repeat_sample = 1  # repeat a tiny training set within one epoch
    # masked_image: folders of frame shards (python -m data_pipelines.video) or of images; () = the
    # synthetic infant video, written and extracted into frames_cache at start-up.
    c.data.frames = ()
    c.data.frames_cache = ""  # "" = <system temp dir>/aggpose_jax_synthetic_infant_video
    c.data.frame_stride = 2  # the synthetic video's extraction keeps every n-th frame
    c.data.heldout_fraction = 0.1  # the last frames of the sources, held out for evaluation

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 64
    c.train.grad_accum_steps = 1
    c.train.num_epochs = 500
    c.train.steps_per_epoch = -1
    c.train.total_steps = -1  # > 0 overrides num_epochs * steps_per_epoch
    c.train.log_every_steps = 50
    c.train.checkpoint_every_steps = -1  # -1: once per epoch
    c.train.keep_checkpoints = 3
    c.train.async_checkpointing = True
    # Weights to start from when the workdir has no checkpoint to resume: a run's best/ or
    # checkpoints/, a flax msgpack, or a PyTorch state dict (.pth/.safetensors/.npz: official AggPose
    # or SegFormer, ImageNet MiT official or Hugging Face). Paths are "params/<module>/.../<leaf>".
    c.train.init_from = ""
    c.train.init_take = ""  # regex of the paths taken from the file ("" = all; e.g. MIT_BACKBONE)
    c.train.init_reinit = ""  # regex of paths kept fresh (e.g. "^params/final_layer/fc2/")
    c.train.init_rename = ()  # ((regex, replacement), ...) applied to the file's paths first
    c.train.debug_nan_step = -1  # tests: poison the batch of this step with NaN

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.01  # torch AdamW's default: the official code ignores the yaml's 1e-4
    c.optim.schedule = "multistep"  # multistep | cosine | sgdr | constant
    c.optim.min_lr = 0.0  # cosine / sgdr: the lr at the end of a decay
    c.optim.decay_epochs = -1  # cosine: epochs to reach min_lr, then held (-1: the whole run)
    c.optim.restart_epochs = 16  # sgdr: the first cycle (T_0)
    c.optim.restart_mult = 2  # sgdr: each cycle this many times the last (T_mult)
    c.optim.milestones_epochs = (170, 200, 240)
    c.optim.gamma = 0.1
    # The official loop calls scheduler.step() before each epoch, so each decay lands one epoch early.
    c.optim.one_epoch_early = True
    c.optim.warmup_steps = 0
    c.optim.clip_grad_norm = 0.0  # 0: no clipping (official)
    c.optim.no_decay = ""  # regex of param paths without weight decay ("": decay all, official)

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: fill with the devices left
    c.mesh.fsdp = 1
    c.mesh.fsdp_min_size = 2**18  # params with fewer elements are replicated
    c.mesh.rules = (
        ("", "fsdp"),
    )  # (regex on the param path, "fsdp" | "replicate"), first match wins

    c.eval = ml_collections.ConfigDict()
    c.eval.enabled = True
    c.eval.every_steps = -1  # -1: once per epoch; 0: only at the end
    c.eval.use_gt_bbox = True  # the official COCO yaml evaluates with ground-truth boxes
    c.eval.flip_test = True
    c.eval.batch_size = 32  # global: each of P processes takes batch_size // P crops a batch
    c.eval.max_images = -1
    c.eval.render = True  # save a picture of predicted poses and heatmaps into the workdir

    c.log = ml_collections.ConfigDict()
    c.log.progress_bar = True
    c.log.tensorboard = True
    return c


def hrnet_recipe(c: ml_collections.ConfigDict) -> None:
    """The HRNet pose release's COCO recipe (`w32_256x192_adam_lr1e-3.yaml` and its train loop).

    Adam lr 1e-3 without weight decay (AdamW with 0 is the same update), MultiStep x0.1 at epochs
    170/200 of 210 stepped before each epoch (one epoch early, as AggPose's loop inherited), global
    batch 128 (32/GPU x 4), sigma 2, half body / scale / rotation / flip without colour jitter,
    evaluation on person-detector boxes with flip test, the flipped maps shifted one pixel
    (SHIFT_HEATMAP) and the quarter-offset decode.
    """
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.milestones_epochs = (170, 200)
    c.train.num_epochs = 210
    c.train.global_batch_size = 128
    c.data.augment = "hrnet"
    c.task.decode = "quarter"
    c.task.flip_shift = True
    c.eval.use_gt_bbox = False


def bottomup_recipe(c: ml_collections.ConfigDict, stride: int) -> None:
    """The bottom-up part-field task (OpenPose's data settings): whole images at 368 x 368 (its
    training crop), targets at the model's `stride`, sigma 7 input pixels (in heatmap pixels here),
    whole-image augmentation, no OKS-NMS (the bottom-up protocol: every grouped person is scored)."""
    c.task.name = "bottomup_paf"
    c.task.nms = "none"
    c.data.input_hw = (368, 368)
    c.data.heatmap_hw = (368 // stride, 368 // stride)
    c.data.sigma = 7.0 / stride
    c.data.augment = "official"
    c.eval.use_gt_bbox = True  # no boxes at all: the flag is unused by the bottom-up chain


def mim_recipe(c: ml_collections.ConfigDict) -> None:
    """SimMIM pretraining (Xie et al., CVPR 2022) on unlabeled frames, scaled to the global batch 2048:
    AdamW (0.9, 0.999), wd 0.05 without the mask token, biases and norms, clip 5, lr 2e-4 per 512,
    10 warm-up epochs (in steps, for 15 M frames), cosine to 1e-5 per 512, 100 epochs, drop path 0."""
    per_512 = 2048 / 512
    c.task.name = "masked_image"
    c.model.options.head = "pixels"
    c.model.options.drop_path_rate = 0.0
    c.train.global_batch_size = 2048
    c.train.num_epochs = 100
    c.optim.lr = 2e-4 * per_512
    c.optim.min_lr = 1e-5 * per_512
    c.optim.schedule = "cosine"
    c.optim.weight_decay = 0.05
    c.optim.no_decay = "mask_token|bias$|norm|scale$"
    c.optim.clip_grad_norm = 5.0
    c.optim.warmup_steps = 10 * (15_000_000 // 2048)
    c.optim.one_epoch_early = False
    c.data.augment = "official"  # random-resized crops and flips
    c.eval.every_steps = -1


def apply_tiny(c: ml_collections.ConfigDict) -> None:
    """The tiny variant: same code path, tiny model, bundled sample, few steps, CPU-sized."""
    stride = c.data.input_hw[0] // c.data.heatmap_hw[0]
    c.model.variant = "tiny"  # every family has one
    opts = c.model.options
    if "drop_path_rate" in opts:
        opts.drop_path_rate = 0.0
    if "scan_blocks" in opts:
        # One block per group: unrolled compiles faster here (train step 45 s vs 65 s on 2 cores).
        opts.scan_blocks = False
    c.data.root = ""
    c.eval.use_gt_bbox = True  # the learning check scores the sample's annotated people
    c.data.input_hw = (128, 96)
    c.data.heatmap_hw = (32, 24)
    # A recipe that learns the 12 sample persons in a few minutes of CPU on any float path
    # (docs/training.md): no augmentation, all 12 persons per step, cosine from 3e-3, and sigma 3,
    # whose wider targets leave the all-zero plateau at once (sigma 2 sat there ~90 steps and left it
    # at a CPU-dependent step: AP 0.42-0.64 at step 400 on two float paths).
    c.data.sigma = 3.0
    c.data.augment = "none"
    c.data.cutout = 0.0
    c.data.repeat_sample = 1
    c.train.global_batch_size = 12
    c.train.total_steps = TINY_STEPS
    c.train.steps_per_epoch = 40
    c.train.log_every_steps = 20
    c.train.checkpoint_every_steps = 200
    c.train.init_from = ""
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"
    c.optim.min_lr = 0.0
    c.optim.decay_epochs = -1
    c.optim.one_epoch_early = False
    c.optim.warmup_steps = 20
    c.eval.every_steps = 0
    # Trained without flips, the model has never seen a mirrored person: flip test would hurt.
    c.eval.flip_test = False
    c.eval.batch_size = 12
    if c.task.name == "bottomup_paf":
        # Whole sample images (landscape) rather than person crops: a larger canvas, so that the
        # people span more than a few cells of the stride-8 grid; sigma one cell.
        c.data.input_hw = (192, 256)
        c.data.heatmap_hw = (192 // stride, 256 // stride)
        c.data.sigma = 1.0
    if c.task.name == "masked_image":
        # The synthetic infant video's 48 frames (43 to train on), crops and flips, lr 1e-3 as
        # SimMIM's at batch 2048 would be at batch 8 (scaled linearly: too small); 300 steps.
        c.data.augment = "official"
        c.train.global_batch_size = 8
        c.train.total_steps = TINY_STEPS // 2
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 20
        c.eval.batch_size = 8


def finalize(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies the variant named by `arg` (None or "tiny") and locks the config."""
    if arg not in (None, "", "tiny"):
        raise ValueError(f"unknown config variant {arg!r}; known: tiny")
    if arg == "tiny":
        apply_tiny(c)
    c.lock()
    return c
