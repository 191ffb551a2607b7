"""The data of a run, built from a config: this host's train iterator, the evaluation and pictures.

experiments/ is the one layer that knows both data_pipelines and the trainer; aggpose_jax.training only
receives what is built here (an iterator, `steps_per_epoch`, an eval function, a render function).
"""

import dataclasses
import logging
import pathlib
from collections.abc import Callable, Iterator

import cv2
import jax
import ml_collections
import numpy as np

from aggpose_jax.evaluation import evaluator, visualize
from aggpose_jax.keypoints import codecs, metainfo
from aggpose_jax.tasks.bottomup_paf import BottomupPaf
from aggpose_jax.tasks.masked_image import MaskedImage
from aggpose_jax.tasks.topdown_heatmap import TopdownHeatmap
from data_pipelines import bottomup, image_records, loaders, sources, topdown, transforms

log = logging.getLogger(__name__)

NO_AUGMENT = transforms.AugmentConfig(
    half_body_prob=0.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0, jitter_prob=0.0
)
# Flip and a mild scale change only: enough to regularise a tiny run, cheap on the host.
LIGHT_AUGMENT = transforms.AugmentConfig(
    half_body_prob=0.0, scale_factor=0.15, rotation_factor=15.0, rotation_prob=0.3, jitter_prob=0.0
)
# The HRNet release: the same box augmentation, no colour jitter.
HRNET_AUGMENT = transforms.AugmentConfig(jitter_prob=0.0)
AUGMENTS = {
    "official": transforms.AugmentConfig(), "hrnet": HRNET_AUGMENT, "light": LIGHT_AUGMENT,
    "none": NO_AUGMENT,
}  # fmt: skip


NMS = {"oks": "oks", "soft": "soft", "none": None}

# data.augment for the bottom-up chain (whole images: no half body, no colour jitter).
BOTTOMUP_AUGMENTS = {
    "official": bottomup.BottomupAugment(),
    "light": bottomup.BottomupAugment(scale_range=(0.9, 1.1), rotation=10.0, shift=0.05),
    "none": bottomup.NO_AUGMENT,
}


TASKS = ("topdown_heatmap", "bottomup_paf", "masked_image")


def make_task(config: ml_collections.ConfigDict) -> TopdownHeatmap | BottomupPaf | MaskedImage:
    """The task of config.task, for config.data's keypoint format."""
    if config.task.name not in TASKS:
        raise ValueError(f"unknown task.name {config.task.name!r}; known: {', '.join(TASKS)}")
    if config.task.nms not in NMS:
        raise ValueError(f"unknown task.nms {config.task.nms!r}; known: {', '.join(NMS)}")
    if config.task.name == "masked_image":
        t = config.task
        return MaskedImage(t.mask_unit, t.mask_ratio, t.norm_target, seed=config.seed)
    if config.task.name == "bottomup_paf":
        return BottomupPaf(
            metainfo.get_format(config.data.keypoint_format), flip_test=config.eval.flip_test,
            scales=tuple(config.task.scales), nms=NMS[config.task.nms],
        )  # fmt: skip
    return TopdownHeatmap(
        metainfo.get_format(config.data.keypoint_format), flip_test=config.eval.flip_test,
        nms=NMS[config.task.nms], decode=config.task.decode, flip_shift=config.task.flip_shift,
    )  # fmt: skip


@dataclasses.dataclass
class RunData:
    """What train_and_evaluate needs from the data side."""

    train_iter: Iterator[dict[str, np.ndarray]]
    steps_per_epoch: int
    eval_fn: Callable | None
    render_fn: Callable | None


def _paths(config: ml_collections.ConfigDict, split: str) -> sources.SamplePaths:
    d = config.data
    if not d.root:
        return sources.sample_paths()
    paths = sources.coco_paths(d.root, split, d.det_file or None)
    ann, images = (d.train_ann, d.train_images) if split == "train" else (d.val_ann, d.val_images)
    return dataclasses.replace(
        paths,
        gt_json=pathlib.Path(ann) if ann else paths.gt_json,
        image_root=pathlib.Path(images) if images else paths.image_root,
    )


def make_data(
    config: ml_collections.ConfigDict, task: TopdownHeatmap | BottomupPaf | MaskedImage
) -> RunData:
    """This host's share of the training stream (shard = jax.process_index()), eval and pictures.

    A bottom-up task (task.name "bottomup_paf") gets the whole-image chains (`make_bottomup_data`).
    """
    if config.task.name == "bottomup_paf":
        return make_bottomup_data(config, task)
    if config.task.name == "masked_image":
        from experiments import pretrain_data  # it builds on RunData, defined here

        return pretrain_data.make_masked_data(config, task)
    d, fmt = config.data, metainfo.get_format(config.data.keypoint_format)
    if d.augment not in AUGMENTS:
        raise ValueError(f"unknown data.augment {d.augment!r}; known: {', '.join(AUGMENTS)}")
    if not d.root:
        log.info(
            "no data.root given: training and evaluating on the bundled COCO sample (4 images)"
        )
    train_paths, val_paths = _paths(config, "train"), _paths(config, "val")
    common = dict(fmt=fmt, input_hw=tuple(d.input_hw))
    train_records = sources.load_coco_records(train_paths.gt_json, train_paths.image_root, **common)
    if d.repeat_sample > 1:
        rows = [train_records[i] for i in range(len(train_records))] * d.repeat_sample
        train_records = sources.PersonRecords.from_records(rows, fmt.num_keypoints)
    n_proc = jax.process_count()
    batch = config.train.global_batch_size // n_proc
    codec = codecs.HeatmapCodec(d.input_hw, d.heatmap_hw, d.sigma, method=task.decode)
    augment = dataclasses.replace(AUGMENTS[d.augment], cutout=d.cutout)
    loader = loaders.make_train_loader(
        train_records, topdown.TopdownTrainExample(fmt, codec, augment),
        batch_size=batch, seed=config.seed, shard_index=jax.process_index(),
        shard_count=n_proc, shuffle=d.shuffle, num_workers=d.num_workers,
    )  # fmt: skip
    steps_per_epoch = max(1, loader.batches_per_epoch)

    use_gt = config.eval.use_gt_bbox
    if not use_gt and val_paths.det_json is None:
        raise ValueError("eval.use_gt_bbox=False needs data.det_file (detector boxes)")
    val_records = sources.load_coco_records(
        val_paths.gt_json, val_paths.image_root,
        det_json=None if use_gt else val_paths.det_json, **common,
    )  # fmt: skip
    if config.eval.max_images > 0:
        keep_ids = sorted(set(val_records.image_ids.tolist()))[: config.eval.max_images]
        rows = [
            val_records[i] for i in range(len(val_records)) if val_records.image_ids[i] in keep_ids
        ]
        val_records = sources.PersonRecords.from_records(rows, fmt.num_keypoints)

    def eval_batches():
        # This host's share; `run_evaluation` gathers the predictions of every host before scoring.
        batches = loaders.make_eval_batches(
            val_records, topdown.TopdownEvalExample(codec),
            batch_size=max(1, config.eval.batch_size // n_proc), shard_index=jax.process_index(),
            shard_count=n_proc, num_workers=d.num_workers,
        )  # fmt: skip
        return iter(batches)

    def eval_fn(predictor, workdir: pathlib.Path) -> dict[str, float]:
        stats, _ = evaluator.run_evaluation(
            predictor.persons, eval_batches(), str(val_paths.gt_json), task.sigmas, nms=task.nms,
            results_path=str(workdir / "results" / "keypoints_val.json"),
        )  # fmt: skip
        return {k: float(v) for k, v in stats.items()}

    def render_fn(predictor, workdir: pathlib.Path) -> None:
        render_predictions(predictor, val_records, fmt, codec, workdir)

    return RunData(
        train_iter=iter(loader),
        steps_per_epoch=steps_per_epoch,
        eval_fn=eval_fn,
        render_fn=render_fn if config.eval.render else None,
    )


def render_predictions(predictor, records, fmt, codec, workdir: pathlib.Path) -> None:
    """Saves <workdir>/poses_<image_id>.png (first image, all its persons) and heatmaps_<id>.png."""
    first = int(records.image_ids[0])
    rows = [records[i] for i in range(len(records)) if int(records.image_ids[i]) == first]
    subset = sources.PersonRecords.from_records(rows, fmt.num_keypoints)
    example_fn = topdown.TopdownEvalExample(codec)
    batch = next(iter(loaders.make_eval_batches(subset, example_fn, batch_size=len(rows))))
    # The predictor is collective: every process runs it (on the same rows); process 0 draws.
    persons = predictor.persons(dict(batch, record_index=np.arange(len(rows))))
    crop = batch["image"][:1]
    heatmaps = predictor.outputs(crop)["heatmaps"][0]
    if jax.process_index() != 0:
        return
    image = cv2.cvtColor(cv2.imread(rows[0]["image_path"]), cv2.COLOR_BGR2RGB)
    out = workdir / f"poses_{first}.png"
    visualize.render_poses(image, persons.keypoints, persons.keypoint_scores, fmt, out)
    visualize.render_heatmaps(
        heatmaps, workdir / f"heatmaps_{first}.png", fmt.keypoint_names, image_rgb=crop[0]
    )
    log.info("pictures: %s, %s", out, workdir / f"heatmaps_{first}.png")


# --- bottom-up ---------------------------------------------------------------------------------


def bottomup_stride(config: ml_collections.ConfigDict) -> int:
    """The model stride of a bottom-up config: data.input_hw / data.heatmap_hw, one integer."""
    (in_h, in_w), (h, w) = config.data.input_hw, config.data.heatmap_hw
    if in_h % h or in_w % w or in_h // h != in_w // w:
        raise ValueError(
            f"data.input_hw {tuple(config.data.input_hw)} is not data.heatmap_hw "
            f"{tuple(config.data.heatmap_hw)} times one integer stride"
        )
    return in_h // h


def make_bottomup_data(config: ml_collections.ConfigDict, task: BottomupPaf) -> RunData:
    """The whole-image chains: training images with people (data_pipelines.bottomup), every image
    of the validation file for the evaluation, letterboxed into data.input_hw.

    data.sigma is in heatmap pixels, as for the top-down chain (OpenPose's 7 input pixels at
    stride 8: 0.875); the PAF width is part_fields' (one stride-8 cell each side of the limb).
    """
    d, fmt = config.data, metainfo.get_format(config.data.keypoint_format)
    if d.augment not in BOTTOMUP_AUGMENTS:
        known = ", ".join(BOTTOMUP_AUGMENTS)
        raise ValueError(f"unknown data.augment {d.augment!r} for bottom-up; known: {known}")
    stride, input_hw = bottomup_stride(config), tuple(d.input_hw)
    if not d.root:
        log.info("no data.root given: training and evaluating on the bundled COCO sample")
    train_paths, val_paths = _paths(config, "train"), _paths(config, "val")
    train_records = image_records.load_coco_images(
        train_paths.gt_json, train_paths.image_root, fmt=fmt, require_people=True
    )
    if d.repeat_sample > 1:
        train_records = dataclasses.replace(
            train_records, rows=train_records.rows * d.repeat_sample
        )
    n_proc = jax.process_count()
    example = bottomup.BottomupTrainExample(
        fmt, input_hw=input_hw, stride=stride, augment=BOTTOMUP_AUGMENTS[d.augment],
        sigma=d.sigma * stride,
    )  # fmt: skip
    loader = loaders.make_train_loader(
        train_records, example, batch_size=config.train.global_batch_size // n_proc,
        seed=config.seed, shard_index=jax.process_index(), shard_count=n_proc,
        shuffle=d.shuffle, num_workers=d.num_workers,
    )  # fmt: skip
    val_records = image_records.load_coco_images(val_paths.gt_json, val_paths.image_root, fmt=fmt)
    if config.eval.max_images > 0:
        val_records = dataclasses.replace(
            val_records, rows=val_records.rows[: config.eval.max_images]
        )
    eval_example = bottomup.BottomupEvalExample(input_hw=input_hw, stride=stride)

    def eval_batches():
        batches = loaders.make_eval_batches(
            val_records, eval_example, batch_size=max(1, config.eval.batch_size // n_proc),
            shard_index=jax.process_index(), shard_count=n_proc, num_workers=d.num_workers,
        )  # fmt: skip
        return iter(batches)

    def eval_fn(predictor, workdir: pathlib.Path) -> dict[str, float]:
        stats, _ = evaluator.run_evaluation(
            predictor.persons, eval_batches(), str(val_paths.gt_json), task.sigmas, nms=task.nms,
            results_path=str(workdir / "results" / "keypoints_val.json"),
        )  # fmt: skip
        return {k: float(v) for k, v in stats.items()}

    def render_fn(predictor, workdir: pathlib.Path) -> None:
        render_bottomup_predictions(predictor, val_records, fmt, eval_example, workdir)

    return RunData(
        train_iter=iter(loader),
        steps_per_epoch=max(1, loader.batches_per_epoch),
        eval_fn=eval_fn,
        render_fn=render_fn if config.eval.render else None,
    )


def render_bottomup_predictions(predictor, records, fmt, example_fn, workdir: pathlib.Path):
    """Saves <workdir>/poses_<image_id>.png (the first image, every person found) and
    heatmaps_<id>.png (the joint maps of the letterboxed input)."""
    first = dataclasses.replace(records, rows=records.rows[:1])
    batch = next(iter(loaders.make_eval_batches(first, example_fn, batch_size=1)))
    # The predictor is collective: every process runs it (on the same image); process 0 draws.
    persons = predictor.persons(batch)
    heatmaps = predictor.outputs(batch["image"])["heatmaps"][0]
    if jax.process_index() != 0:
        return
    record = first[0]
    image = cv2.cvtColor(cv2.imread(record["image_path"]), cv2.COLOR_BGR2RGB)
    out = workdir / f"poses_{record['image_id']}.png"
    visualize.render_poses(image, persons.keypoints, persons.keypoint_scores, fmt, out)
    maps = workdir / f"heatmaps_{record['image_id']}.png"
    visualize.render_heatmaps(heatmaps, maps, fmt.keypoint_names, image_rgb=batch["image"][0])
    log.info("pictures: %s, %s", out, maps)
