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
from aggpose_jax.tasks.topdown_heatmap import TopdownHeatmap
from data_pipelines import loaders, sources, topdown, transforms

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


def make_task(config: ml_collections.ConfigDict) -> TopdownHeatmap:
    """The task of config.task, for config.data's keypoint format."""
    if config.task.name != "topdown_heatmap":
        raise ValueError(f"unknown task.name {config.task.name!r}; known: topdown_heatmap")
    if config.task.nms not in NMS:
        raise ValueError(f"unknown task.nms {config.task.nms!r}; known: {', '.join(NMS)}")
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


def make_data(config: ml_collections.ConfigDict, task: TopdownHeatmap) -> RunData:
    """This host's share of the training stream (shard = jax.process_index()), eval and pictures."""
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
