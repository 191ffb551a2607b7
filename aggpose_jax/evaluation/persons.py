"""Persons: what every pose task hands to the evaluation, in image pixels.

A top-down task makes one person per crop, a bottom-up task one per grouped skeleton; NMS, the results
JSON, scoring and pictures take this one type and assume nothing about how it was made.
"""

import dataclasses

import jax
import numpy as np
from jax.experimental import multihost_utils


@dataclasses.dataclass(frozen=True)
class Persons:
    """N persons of K keypoints.

    Attributes: image_ids (N,) int64; keypoints (N, K, 2) float64 image pixels (x, y);
    keypoint_scores (N, K) joint confidences; box_scores (N,) (1 for ground-truth boxes or no box);
    areas (N,) the person's area in pixels^2 (OKS-NMS scale); centers (N, 2) and scales (N, 2) the
    box in the official center/scale form (written to the results JSON); record_indices (N,) int64
    (each person's place in the evaluation records: it orders the rows across hosts).
    """

    image_ids: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    box_scores: np.ndarray
    areas: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    record_indices: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)

    def take(self, index: np.ndarray) -> "Persons":
        """The persons at `index` (an integer or boolean array), every field alike."""
        return Persons(**{f: getattr(self, f)[index] for f in field_names()})


def field_names() -> list[str]:
    """The names of the Persons fields, in order."""
    return [f.name for f in dataclasses.fields(Persons)]


def empty(num_keypoints: int) -> Persons:
    """No persons (every field with N = 0)."""
    k = num_keypoints
    return Persons(
        image_ids=np.zeros(0, np.int64), keypoints=np.zeros((0, k, 2)),
        keypoint_scores=np.zeros((0, k)), box_scores=np.zeros(0), areas=np.zeros(0),
        centers=np.zeros((0, 2)), scales=np.zeros((0, 2)), record_indices=np.zeros(0, np.int64),
    )  # fmt: skip


def concat(parts: list[Persons], num_keypoints: int) -> Persons:
    """Stacks persons of several batches (empty list -> `empty(num_keypoints)`)."""
    if not parts:
        return empty(num_keypoints)
    return Persons(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in field_names()})


def gather(persons: Persons) -> Persons:
    """Every process's persons, on every process, sorted by record index.

    Shapes: this process's N_p persons -> N = sum over processes of N_p. A collective: every process
    calls it. With one process it only sorts. Records sharded `shard_index::shard_count` over the
    processes come back in the order one process would have predicted them.
    """
    if jax.process_count() > 1:
        counts = np.asarray(multihost_utils.process_allgather(np.int64(len(persons))))
        most = int(counts.max())

        def gather_field(x: np.ndarray) -> np.ndarray:
            # As bytes: JAX without x64 would round float64 (and int64) rows to 32 bits.
            width = int(np.prod(x.shape[1:], dtype=np.int64))
            rows = np.ascontiguousarray(x).reshape(len(x), width).view(np.uint8)
            padded = np.zeros((most, rows.shape[1]), np.uint8)
            padded[: len(x)] = rows
            stacked = np.asarray(multihost_utils.process_allgather(padded))  # (P, most, bytes)
            joined = np.concatenate([part[:n] for part, n in zip(stacked, counts, strict=True)])
            return joined.view(x.dtype).reshape(-1, *x.shape[1:])

        persons = Persons(**{f: gather_field(getattr(persons, f)) for f in field_names()})
    return persons.take(np.argsort(persons.record_indices, kind="stable"))
