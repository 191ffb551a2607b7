"""grain pipelines: host-local numpy batches for training and evaluation, checkpointable iterators.

The loaders know records, positions, shards, workers and batches; what one record becomes is the
example function's business (`topdown.TopdownTrainExample`, or any picklable callable with the same
signature: a bottom-up or masked-image chain brings its own).

Training (`make_train_loader`): stream positions -> (epoch, slot) -> a global permutation of the
records drawn from (seed, epoch) -> this host's equal share (slots shard_index::shard_count) ->
example_fn(record, np.random.default_rng([seed, epoch, record_index])) -> worker processes -> drop
skipped records -> batch (drop_remainder). Evaluation (`make_eval_batches`): every record once, in
order, strided over hosts, padded to full batches with example_fn.padding and a `valid` mask.

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
from typing import Protocol

import cv2
import grain
import numpy as np
from absl import flags

from data_pipelines import crop

log = logging.getLogger(__name__)

# What an example function raises for a record it cannot load: the record is skipped, not fatal.
RECORD_ERRORS = (crop.ImageReadError, cv2.error)


class RecordSource(Protocol):
    """Any random-access source of record dicts: `sources.PersonRecords`, the TFDS person source
    (records carry the encoded image as image_bytes), video frames."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...


class TrainExampleFn(Protocol):
    """(record, generator seeded with [seed, epoch, record index]) -> dict of numpy arrays.

    Picklable (grain sends it to worker processes); raises one of RECORD_ERRORS for a bad record.
    """

    def __call__(self, record: dict, rng: np.random.Generator) -> dict[str, np.ndarray]: ...


class EvalExampleFn(Protocol):
    """record -> dict of numpy arrays, and `padding(records)`: the same keys for an empty slot."""

    def __call__(self, record: dict) -> dict[str, np.ndarray]: ...

    def padding(self, records: RecordSource) -> dict[str, np.ndarray]: ...


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

    def __init__(self, records, example_fn, seed, shuffle, shard_index, shard_count, per_host):
        self.records, self.example_fn, self.seed, self.shuffle = records, example_fn, seed, shuffle
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
            example = self.example_fn(record, rng)
        except RECORD_ERRORS as e:
            return Skipped(record_index, crop.record_name(record), str(e))
        return dict(example, record_index=np.int64(record_index))


class _EvalElement:
    """Slot k of this host's padded range -> evaluation example, blank padding, or Skipped."""

    def __init__(self, records, example_fn, shard_index, shard_count, blank):
        self.records, self.example_fn, self.blank = records, example_fn, blank
        self.shard_index, self.shard_count = shard_index, shard_count

    def __call__(self, slot: int):
        record_index = self.shard_index + int(slot) * self.shard_count
        if record_index >= len(self.records):
            return dict(self.blank, record_index=np.int64(-1))
        record = self.records[record_index]
        try:
            example = self.example_fn(record)
        except RECORD_ERRORS as e:
            return Skipped(record_index, crop.record_name(record), str(e))
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
    example_fn: TrainExampleFn,
    *,
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
) -> Loader:
    """Training batches for this host (process `shard_index` of `shard_count`).

    Shapes (B = batch_size, per host): every key of example_fn's dicts stacked to (B, ...), plus
    record_index (B,) int64. For `topdown.TopdownTrainExample`: image (B, h, w, 3) uint8 RGB,
    heatmaps (B, h', w', K) float32, target_weight (B, K), keypoints (B, K, 2), visibility (B, K),
    center (B, 2), scale (B, 2) float64, rotation (B,), flipped (B,), score (B,), image_id (B,).

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
    element = _TrainElement(records, example_fn, seed, shuffle, shard_index, shard_count, per_host)
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


def make_eval_batches(
    records: RecordSource,
    example_fn: EvalExampleFn,
    *,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    read_threads: int = 0,
    strict: bool = False,
) -> Loader:
    """Evaluation batches: every record once, host `shard_index` taking records shard_index::count.

    Shapes (B = batch_size): every key of example_fn's dicts stacked to (B, ...), plus
    record_index (B,) int64 (-1 for padding) and valid (B,) bool. For `topdown.TopdownEvalExample`:
    image (B, h, w, 3) uint8 RGB, center (B, 2), scale (B, 2) float64, rotation (B,), score (B,),
    image_id (B,) int64, area (B,) (and the targets with `with_targets`). Every host yields the same
    number of batches (ceil(ceil(N / count) / B)); padding slots (example_fn.padding) and skipped
    images have valid False.
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    per_host = -(-len(records) // shard_count)
    num_batches = -(-per_host // batch_size)
    blank = dict(example_fn.padding(records), valid=np.bool_(False))
    element = _EvalElement(records, example_fn, shard_index, shard_count, blank)
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
