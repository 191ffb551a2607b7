"""The one base schema of every experiment: each key is declared here with its default.

An experiment file (`experiments/configs/<name>.py`) calls `get_base_config()`, sets the values that
differ, and calls `finalize(config, arg)`, which applies the `tiny` variant (same code path, small model,
bundled sample, a few steps) when asked and locks the config so that a mistyped override fails at once.

Units: `*_hw` sizes are (height, width) in pixels; `*_epochs` are epochs of `train.steps_per_epoch` steps
(-1: derived from the dataset size and the global batch); `*_steps` are optimizer steps.
"""

import ml_collections

# Shared by every tiny variant: CPU-sized, bundled sample, a few steps.
TINY_STEPS = 400


def get_base_config() -> ml_collections.ConfigDict:
    """The complete schema with the defaults of the official COCO 256x192 recipe (AggPose-L)."""
    c = ml_collections.ConfigDict()
    c.exp_name = ""
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "aggpose_l"  # a name of aggpose_jax.models.variants
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)
    c.model.remat = False
    # Block groups under nn.scan: on the 2-core CPU the AggPose-L step through the trainer takes
    # ~5 s instead of 12 s and compiles in ~1 min instead of ~9 (docs/benchmarks.md). Params are
    # stacked per group; init_from files load in either layout.
    c.model.scan_blocks = True
    c.model.attention_impl = ""  # "" = the model's default
    c.model.drop_path_rate = 0.1
    c.model.embed_dims = ()  # () = the variant's own; set to shrink a model (tiny variants)
    c.model.depths = ()

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
    c.data.augment = (
        "official"  # official (half body, scale, rotation, flip, colour) | light | none
    )
    c.data.num_workers = 0  # grain worker processes per host, training and evaluation (0: none)
    c.data.shuffle = True
    c.data.repeat_sample = 1  # repeat a tiny training set within one epoch

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
    c.train.init_from = ""  # a params checkpoint (flax msgpack or orbax) to start from
    c.train.init_reinit = ""  # regex of param paths re-initialised after init_from (e.g. the head)
    # MiT ImageNet weights for the backbone (official mit_b*.pth or Hugging Face Segformer; .pth,
    # .safetensors or .npz); used when neither a checkpoint to resume nor init_from is there.
    c.train.init_from_mit = ""
    c.train.debug_nan_step = -1  # tests: poison the batch of this step with NaN

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-3
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.01  # torch AdamW's default: the official code ignores the yaml's 1e-4
    c.optim.schedule = "multistep"  # multistep | cosine | constant
    c.optim.milestones_epochs = (170, 200, 240)
    c.optim.gamma = 0.1
    # The official loop calls scheduler.step() before each epoch, so each decay lands one epoch early.
    c.optim.one_epoch_early = True
    c.optim.warmup_steps = 0
    c.optim.clip_grad_norm = 0.0  # 0: no clipping (official)

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


def apply_tiny(c: ml_collections.ConfigDict) -> None:
    """The tiny variant: same code path, tiny model, bundled sample, few steps, CPU-sized."""
    if c.model.name.startswith("segformer"):
        # A SegFormer at the tiny AggPose's width: the same baseline code path, CPU-sized.
        c.model.embed_dims = (16, 32, 40, 64)
        c.model.depths = (1, 1, 1, 1)
    else:
        c.model.name = "aggpose_tiny"
    c.model.drop_path_rate = 0.0
    # Few blocks per group: unrolled compiles faster here (train step 45 s vs 65 s on the 2-core box).
    c.model.scan_blocks = False
    c.data.root = ""
    c.data.input_hw = (128, 96)
    c.data.heatmap_hw = (32, 24)
    # A recipe that visibly learns the 12 sample persons in a few minutes of CPU (docs/training.md):
    # no augmentation, all 12 persons per step, cosine from 3e-3.
    c.data.sigma = 2.0
    c.data.augment = "none"
    c.data.repeat_sample = 1
    c.train.global_batch_size = 12
    c.train.total_steps = TINY_STEPS
    c.train.steps_per_epoch = 40
    c.train.log_every_steps = 20
    c.train.checkpoint_every_steps = 200
    c.train.init_from = ""
    c.train.init_from_mit = ""
    c.optim.lr = 3e-3
    c.optim.schedule = "cosine"
    c.optim.one_epoch_early = False
    c.optim.warmup_steps = 20
    c.eval.every_steps = 0
    # Trained without flips, the model has never seen a mirrored person: flip test would hurt.
    c.eval.flip_test = False
    c.eval.batch_size = 12


def finalize(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies the variant named by `arg` (None or "tiny") and locks the config."""
    if arg not in (None, "", "tiny"):
        raise ValueError(f"unknown config variant {arg!r}; known: tiny")
    if arg == "tiny":
        apply_tiny(c)
    c.lock()
    return c
