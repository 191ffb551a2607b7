"""The runtime below training and inference: device mesh, sharding rules, global batches, host calls.

The mesh has two axes: `data` (pure data parallelism) and `fsdp` (data parallelism whose devices also
split the params and optimizer state, ZeRO-3 style). Batches are split over both axes. A param is
sharded over `fsdp` on its largest dimension divisible by the axis size when its size reaches
`min_size` and the first matching rule says "fsdp"; everything else is replicated.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp) mesh over all devices (or `devices`); one of the sizes may be -1 (fill)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if data == -1 and fsdp == -1:
        raise ValueError("at most one of mesh.data, mesh.fsdp may be -1")
    if data == -1:
        data = n // fsdp
    if fsdp == -1:
        fsdp = n // data
    if data * fsdp != n:
        raise ValueError(f"mesh data={data} x fsdp={fsdp} does not match the {n} devices")
    # Host-major order: consecutive devices (one host's) land in the same data rows.
    grid = np.asarray(devices, dtype=object).reshape(data, fsdp)
    return Mesh(grid, BATCH_AXES)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def fsdp_spec(shape: Sequence[int], fsdp_size: int, min_size: int) -> P:
    """PartitionSpec sharding the largest dimension divisible by fsdp_size, or replicated."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def infer_shardings(
    abstract_tree: Any,
    mesh: Mesh,
    *,
    rules: Sequence[tuple[str, str]] = (("", "fsdp"),),
    min_size: int = 2**18,
) -> Any:
    """NamedSharding for every leaf of a pytree of ShapeDtypeStructs (params, opt state, full state).

    rules: (regex searched in the leaf's "a/b/c" path, "fsdp" | "replicate"); the first match wins,
    no match means replicate. Scalars are always replicated.
    """
    fsdp_size = mesh.shape["fsdp"]
    compiled = [(re.compile(pattern), how) for pattern, how in rules]
    for _, how in rules:
        if how not in ("fsdp", "replicate"):
            raise ValueError(f"unknown sharding rule {how!r}; known: fsdp, replicate")

    def leaf_sharding(path, leaf):
        name = _path_str(path)
        how = next((h for rx, h in compiled if rx.search(name)), "replicate")
        shape = getattr(leaf, "shape", ())
        spec = fsdp_spec(shape, fsdp_size, min_size) if how == "fsdp" and shape else P()
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over data x fsdp, other dims whole."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def make_global_batch(host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local numpy batch (B_local, ...) -> global jax.Arrays (B_local * processes, ...).

    Each process passes its own shard; jax.make_array_from_process_local_data stitches them along the
    batch axis of the mesh. Non-array entries are dropped.
    """
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in host_batch.items()
        if isinstance(v, np.ndarray) and v.dtype != object
    }


def make_host_fn(
    fn: Callable[[Any, jax.Array], Any], mesh: Mesh
) -> Callable[[Any, np.ndarray], Any]:
    """jit(fn) made callable from host numpy rows: call(args, rows) -> fn's pytree of numpy rows.

    Shapes: rows (b, ...) are this process's (every process calls together with the same b: it
    runs one global batch); each output leaf (B, ...) comes back as this process's (b, ...) rows.
    `args` (e.g. the model variables) is passed through as is. Rows are padded to a multiple of the
    process's device count, so any b splits over the mesh.
    """
    jitted = jax.jit(fn)
    local_devices = len(mesh.local_devices)
    batch_spec = batch_sharding(mesh).spec

    def call(args: Any, rows: np.ndarray) -> Any:
        rows = np.asarray(rows)
        b = rows.shape[0]
        pad = -b % local_devices
        if pad:
            rows = np.concatenate([rows, np.zeros((pad, *rows.shape[1:]), rows.dtype)])
        x = make_global_batch({"x": rows}, mesh)["x"]
        out = jitted(args, x)
        local = multihost_utils.global_array_to_host_local_array(out, mesh, batch_spec)
        return jax.tree.map(lambda a: np.asarray(a)[:b], local)

    return call
