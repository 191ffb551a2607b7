"""grain pipelines: host-local numpy batches for training and evaluation, checkpointable iterators.

Training (`make_train_loader`): stream positions -> (epoch, slot) -> a global permutation of the
records drawn from (seed, epoch) -> this host's equal share (slots shard_index::shard_count) -> the
training chain, whose random numbers come from np.random.default_rng([seed, epoch, record_index])
-> worker processes -> drop skipped records -> batch (drop_remainder). Evaluation (`make_eval_batches`): every record once, in
order, strided over hosts, padded to full batches with a `valid` mask.

Determinism: workers only run the per-record chain; skipping and batching happen in the main process,
after grain's round-robin over workers has restored the element order. So a batch depends on the
seed and the position only, not on `num_workers` (0, 1, 2, ...) nor on restarts, and a record's
augmentation depends on (seed, epoch, record index) only, not on sharding.

Bad images: a missing or undecodable image becomes a `Skipped` marker in the worker; the main process
logs a warning naming the file, counts it in the loader's `SkipLog` (`loader.skips.count`,
`.paths`), and drops it (training) or marks its slot `valid = False` (evaluation). With
`strict=True` it raises instead. A run never dies mid-epoch on one bad image.
"""

import dataclasses
import logging

import cv2
import grain
import numpy as np
from absl import flags

from aggpose_jax.keypoints import metainfo
from data_pipelines import transforms
from data_pipelines.sources import PersonRecords

# Any random-access source of person records (len, getitem, num_keypoints): PersonRecords, or the
# TFDS person source, whose records carry the encoded image as image_bytes.
RecordSource = PersonRecords

log = logging.getLogger(__name__)


class BadRecordError(RuntimeError):
    """A record that could not be loaded, raised in strict mode; the message names the image."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """The marker a worker returns for a record it could not load."""

    record_index: int
    image_path: str
    reason: str


@dataclasses.dataclass
class SkipLog:
    """Skipped records seen by this host's main process since the loader was made.

    `count` is the total; `paths` keeps the first `max_paths` image paths. Not part of the iterator
    state: after a restore it counts from zero again.
    """

    strict: bool = False
    count: int = 0
    paths: list[str] = dataclasses.field(default_factory=list)
    max_paths: int = 100

    def record(self, skipped: Skipped) -> None:
        """Counts and logs one skipped record; raises BadRecordError in strict mode."""
        if self.strict:
            raise BadRecordError(f"record {skipped.record_index}: {skipped.reason}")
        self.count += 1
        if len(self.paths) < self.max_paths:
            self.paths.append(skipped.image_path)
        log.warning("skipping record %d: %s", skipped.record_index, skipped.reason)


def _worker_init(worker_index: int, worker_count: int) -> None:
    del worker_index, worker_count
    # One OpenCV thread per worker process: the workers are the parallelism.
    cv2.setNumThreads(1)


# Keeps the shuffle's random stream apart from the augmentation's [seed, epoch, record index].
_SHUFFLE_STREAM = 0x5F1E


class _TrainElement:
    """Position j in this host's stream -> training example (or Skipped).

    Epoch e = j // per_host; the epoch's order is a permutation of all N records drawn from
    (seed, e), of which this host takes slots shard_index, shard_index + shard_count, ...
    (One numpy permutation per epoch and worker; grain's index_shuffle costs ~4 ms per index on a
    12-record set, which would dominate small runs.)
    """

    def __init__(self, records, seed, shuffle, shard_index, shard_count, per_host, kwargs):
        self.records, self.seed, self.shuffle, self.kwargs = records, seed, shuffle, kwargs
        self.shard_index, self.shard_count, self.per_host = shard_index, shard_count, per_host
        self._order = (-1, None)

    def record_index(self, position: int) -> tuple[int, int]:
        """(epoch, record index) of a stream position."""
        epoch, offset = divmod(int(position), self.per_host)
        slot = offset * self.shard_count + self.shard_index
        if not self.shuffle:
            return epoch, slot
        if self._order[0] != epoch:
            rng = np.random.default_rng([_SHUFFLE_STREAM, self.seed, epoch])
            self._order = (epoch, rng.permutation(len(self.records)))
        return epoch, int(self._order[1][slot])

    def __call__(self, position: int, _):
        epoch, record_index = self.record_index(position)
        rng = np.random.default_rng([self.seed, epoch, record_index])
        record = self.records[record_index]
        try:
            example = transforms.train_example(record, rng, **self.kwargs)
        except (transforms.ImageReadError, cv2.error) as e:
            return Skipped(record_index, transforms.record_name(record), str(e))
        example["record_index"] = np.int64(record_index)
        return example


class _EvalElement:
    """Slot k of this host's padded range -> evaluation example, blank padding, or Skipped."""

    def __init__(self, records, shard_index, shard_count, blank, kwargs):
        self.records, self.blank, self.kwargs = records, blank, kwargs
        self.shard_index, self.shard_count = shard_index, shard_count

    def __call__(self, slot: int):
        record_index = self.shard_index + int(slot) * self.shard_count
        if record_index >= len(self.records):
            return dict(self.blank, record_index=np.int64(-1))
        record = self.records[record_index]
        try:
            example = transforms.eval_example(record, **self.kwargs)
        except (transforms.ImageReadError, cv2.error) as e:
            return Skipped(record_index, transforms.record_name(record), str(e))
        return dict(example, record_index=np.int64(record_index), valid=np.bool_(True))


@dataclasses.dataclass
class Loader:
    """A re-iterable batch pipeline. `iter(loader)` gives a grain DatasetIterator.

    The iterator has `get_state()` / `set_state(state)` (a JSON-able dict) and works with orbax via
    `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)` (restore with the same
    num_workers, shard and batch settings). `batches_per_epoch` counts full batches before skips.
    """

    dataset: grain.IterDataset
    skips: SkipLog
    batches_per_epoch: int

    def __iter__(self) -> grain.DatasetIterator:
        return iter(self.dataset)


def _finish(ds, num_workers, worker_buffer_size, read_threads, batch_size):
    read = grain.ReadOptions(
        num_threads=read_threads, prefetch_buffer_size=2 * batch_size if read_threads else 0
    )
    ds = ds.to_iter_dataset(read)
    if num_workers > 0:
        # grain 0.2.18 reads an absl flag when it starts workers and fails in programs that never
        # parse absl flags (google/grain#1355, fixed upstream later); their defaults are what we want.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        # Per-element prefetch: grain round-robins over workers, restoring the element order.
        options = grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=worker_buffer_size * batch_size
        )
        ds = ds.mp_prefetch(options, worker_init_fn=_worker_init)
    return ds


def make_train_loader(
    records: RecordSource,
    *,
    fmt: metainfo.KeypointFormat,
    input_hw: tuple[int, int],
    heatmap_hw: tuple[int, int],
    sigma: float,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    shuffle: bool = True,
    num_workers: int = 0,
    worker_buffer_size: int = 2,
    read_threads: int = 0,
    strict: bool = False,
    augment_cfg: transforms.AugmentConfig | None = None,
    jitter_on: str = "crop",
) -> Loader:
    """Training batches for this host (process `shard_index` of `shard_count`).

    Shapes (B = batch_size, per host): image (B, h, w, 3) uint8 RGB crops, which the jitted step
    normalises (`aggpose_jax.models.preprocess`), heatmaps (B, h', w', K) float32,
    target_weight (B, K), keypoints (B, K, 2), visibility (B, K), center (B, 2) float64,
    scale (B, 2) float64, rotation (B,), flipped (B,) bool, score (B,), image_id (B,) int64,
    record_index (B,) int64.

    Each epoch is a fresh global shuffle of all N records (seeded by seed + epoch) of which every host
    takes an equal N // shard_count share; `num_epochs` None repeats forever. The last partial batch
    of the stream is dropped. Workers are processes; `read_threads` reader threads per process.
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    per_host = len(records) // shard_count
    if per_host < 1:
        raise ValueError(f"{len(records)} records cannot feed {shard_count} hosts")
    kwargs = dict(
        fmt=fmt, input_hw=tuple(input_hw), heatmap_hw=tuple(heatmap_hw), sigma=sigma,
        cfg=augment_cfg or transforms.AugmentConfig(), jitter_on=jitter_on,
    )  # fmt: skip
    element = _TrainElement(records, seed, shuffle, shard_index, shard_count, per_host, kwargs)
    ds = grain.MapDataset.range(per_host).repeat(num_epochs).map_with_index(element)
    ds = _finish(ds, num_workers, worker_buffer_size, read_threads, batch_size)
    skips = SkipLog(strict=strict)

    def keep(element) -> bool:
        if isinstance(element, Skipped):
            skips.record(element)
            return False
        return True

    ds = ds.filter(keep).batch(batch_size, drop_remainder=True)
    return Loader(dataset=ds, skips=skips, batches_per_epoch=per_host // batch_size)


def _blank_eval_example(input_hw, heatmap_hw, num_keypoints, with_targets) -> dict:
    """The padding example: zeros, scale 1 (so that inverse transforms stay finite), valid False."""
    blank = {
        "image": np.zeros((*input_hw, 3), np.uint8),
        "center": np.zeros(2, np.float64),
        "scale": np.ones(2, np.float64),
        "rotation": np.float32(0),
        "score": np.float32(0),
        "image_id": np.int64(-1),
        "area": np.float32(0),
        "valid": np.bool_(False),
    }
    if with_targets:
        blank.update(
            heatmaps=np.zeros((*heatmap_hw, num_keypoints), np.float32),
            target_weight=np.zeros(num_keypoints, np.float32),
            keypoints=np.zeros((num_keypoints, 2), np.float32),
            visibility=np.zeros(num_keypoints, np.float32),
        )
    return blank


def make_eval_batches(
    records: RecordSource,
    *,
    batch_size: int,
    input_hw: tuple[int, int],
    heatmap_hw: tuple[int, int] | None = None,
    sigma: float | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    read_threads: int = 0,
    strict: bool = False,
) -> Loader:
    """Evaluation batches: every record once, host `shard_index` taking records shard_index::count.

    Shapes (B = batch_size): image (B, h, w, 3) uint8 RGB (as in `make_train_loader`),
    center (B, 2) float64, scale (B, 2) float64,
    rotation (B,), score (B,), image_id (B,) int64, area (B,), record_index (B,) int64 (-1 for
    padding), valid (B,) bool; with `heatmap_hw` and `sigma` also heatmaps, target_weight,
    keypoints, visibility. Every host yields the same number of batches (ceil(ceil(N / count) / B));
    padding slots and skipped images have valid False.
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    per_host = -(-len(records) // shard_count)
    num_batches = -(-per_host // batch_size)
    with_targets = heatmap_hw is not None and sigma is not None
    blank = _blank_eval_example(input_hw, heatmap_hw, records.num_keypoints, with_targets)
    kwargs = dict(input_hw=tuple(input_hw), heatmap_hw=heatmap_hw, sigma=sigma)
    element = _EvalElement(records, shard_index, shard_count, blank, kwargs)
    ds = grain.MapDataset.range(num_batches * batch_size).map(element)
    ds = _finish(ds, num_workers, 2, read_threads, batch_size)
    skips = SkipLog(strict=strict)

    def unskip(element):
        if isinstance(element, Skipped):
            skips.record(element)
            return dict(blank, record_index=np.int64(element.record_index))
        return element

    ds = ds.map(unskip).batch(batch_size, drop_remainder=False)
    return Loader(dataset=ds, skips=skips, batches_per_epoch=num_batches)
