"""The data of a masked-image pretraining run: unlabeled frames, held-out frames, a reconstruction picture.

Sources (config.data.frames): folders of frame shards written by `python -m data_pipelines.video`
(with their manifest) or folders of images (COCO images without their labels, any photos). Empty:
the synthetic infant video (`data_pipelines.synthetic.write_infant_video`), written and extracted at
start-up into data.frames_cache (default: under the system temp dir). Consecutive frames are near duplicates: the extraction keeps every
data.frame_stride-th frame. The last data.heldout_fraction of the frames (in source order, so whole
stretches of video) are held out for the evaluation.
"""

import logging
import pathlib
import tempfile

import jax
import matplotlib
import ml_collections
import numpy as np

from aggpose_jax.models import preprocess
from aggpose_jax.tasks.masked_image import MaskedImage
from data_pipelines import loaders, masked, sources, synthetic, video
from experiments.data import RunData

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)


def frame_source(config: ml_collections.ConfigDict):
    """The unlabeled records of config.data.frames (or the synthetic video's frames), one source."""
    d = config.data
    folders = [pathlib.Path(f) for f in d.frames]
    if not folders:
        cache = (
            pathlib.Path(
                d.frames_cache
                or pathlib.Path(tempfile.gettempdir()) / "aggpose_jax_synthetic_infant_video"
            )
            / f"seed{config.seed}_stride{d.frame_stride}"
        )
        if not (cache / "frames" / "manifest.jsonl").exists():
            cache.mkdir(parents=True, exist_ok=True)
            clip = synthetic.write_infant_video(cache / "synthetic_infant.mp4", seed=config.seed)
            video.extract_frames(clip, cache / "frames", every_n=d.frame_stride)
        log.info("no data.frames given: pretraining on the synthetic infant video's frames")
        folders = [cache / "frames"]
    parts = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"data.frames: {folder} is not a folder")
        if (folder / video.shard_name(0)).exists():
            parts.append(video.VideoFrameSource(folder))
        else:
            parts.append(sources.ImageFolderSource(folder))
    if len(parts) == 1:
        return parts[0]
    index = [(p, i) for p, part in enumerate(parts) for i in range(len(part))]
    return _Concat(tuple(parts), tuple(index))


class _Concat:
    """Several sources as one (records in source order)."""

    def __init__(self, parts: tuple, index: tuple[tuple[int, int], ...]):
        self.parts, self.index = parts, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        p, j = self.index[int(i)]
        return self.parts[p][j]


def split(source, fraction: float) -> tuple[sources.Subset, sources.Subset]:
    """(train, held out): the last `fraction` of the records are held out (at least one)."""
    n = len(source)
    held = max(1, int(round(n * fraction)))
    if held >= n:
        raise ValueError(f"{n} frames are too few to hold out {fraction:.0%} and train on the rest")
    return sources.Subset(source, tuple(range(n - held))), sources.Subset(
        source, tuple(range(n - held, n))
    )


def make_masked_data(config: ml_collections.ConfigDict, task: MaskedImage) -> RunData:
    """This host's share of the unlabeled stream, the held-out evaluation and its picture."""
    d, n_proc = config.data, jax.process_count()
    train, held = split(frame_source(config), d.heldout_fraction)
    input_hw = tuple(d.input_hw)
    example = masked.MaskedTrainExample(
        input_hw, mask_unit=task.mask_unit, mask_ratio=task.mask_ratio,
        flip_prob=0.5 if d.augment != "none" else 0.0,
    )  # fmt: skip
    loader = loaders.make_train_loader(
        train, example, batch_size=config.train.global_batch_size // n_proc, seed=config.seed,
        shard_index=jax.process_index(), shard_count=n_proc, shuffle=d.shuffle,
        num_workers=d.num_workers,
    )  # fmt: skip
    if config.eval.max_images > 0:
        held = sources.Subset(held.source, held.indices[: config.eval.max_images])
    eval_example = masked.MaskedEvalExample(input_hw)

    def eval_batches():
        return iter(
            loaders.make_eval_batches(
                held,
                eval_example,
                batch_size=max(1, config.eval.batch_size // n_proc),
                shard_index=jax.process_index(),
                shard_count=n_proc,
                num_workers=d.num_workers,
            )  # fmt: skip
        )

    def eval_fn(predictor, workdir: pathlib.Path) -> dict[str, float]:
        rows = [(predictor.outputs(b["image"]), b["valid"]) for b in eval_batches()]
        predicted = {k: np.concatenate([r[0][k] for r in rows]) for k in rows[0][0]}
        return task.score(predicted, np.concatenate([r[1] for r in rows]).astype(bool))

    def render_fn(predictor, workdir: pathlib.Path) -> None:
        batch = next(eval_batches())
        out = predictor.outputs(batch["image"])
        if jax.process_index() == 0:
            path = workdir / "reconstruction.png"
            render_reconstructions(out, task.mask_unit, path)
            log.info("picture: %s", path)

    return RunData(
        train_iter=iter(loader),
        steps_per_epoch=max(1, loader.batches_per_epoch),
        eval_fn=eval_fn,
        render_fn=render_fn if config.eval.render else None,
    )


def _to_rgb(normalised: np.ndarray) -> np.ndarray:
    """(H, W, 3) normalised -> (H, W, 3) float in [0, 1] (the inverse of preprocess.normalize_images)."""
    rgb = normalised * np.asarray(preprocess.STD_RGB) + np.asarray(preprocess.MEAN_RGB)
    return np.clip(rgb, 0.0, 1.0)


def render_reconstructions(out: dict[str, np.ndarray], unit: int, path: pathlib.Path, rows=4):
    """Saves a grid: per held-out frame, the masked input, the prediction (visible pixels pasted
    back) and the target. out: the task's predict rows {"pixels", "target", "mask"}."""
    n = min(rows, len(out["pixels"]))
    fig, axes = plt.subplots(n, 3, figsize=(6, 2.6 * n), squeeze=False)
    for r in range(n):
        m = np.repeat(np.repeat(out["mask"][r], unit, 0), unit, 1)[..., None].astype(bool)
        target = _to_rgb(out["target"][r])
        pred = np.where(m, _to_rgb(out["pixels"][r]), target)
        masked_in = np.where(m, 0.5, target)
        for c, (img, title) in enumerate(
            [(masked_in, "masked input"), (pred, "prediction"), (target, "target")]
        ):
            axes[r, c].imshow(img)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
