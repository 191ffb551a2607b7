"""Training speed through the real train step: the trainer's init, shardings, donated jitted step.

    python -m benchmarks.train_loop [--exp aggpose_l] [--batch 2] [--dtype float32] [--steps 5]
                                    [--data synthetic|sample] [--json]

Builds the run exactly as `trainer.train_and_evaluate` does, through the same `setup.make_train_setup`
(mesh, the task's model, schedule and AdamW with the config's betas/eps/clipping/accumulation,
eval_shape -> shardings -> jit(init, out_shardings), the donated jitted step; host batch -> global
array), then times `--steps` steps after one warm-up step. Reports the median step time
(`train_step_s`), images/s (total and per device), the data-wait fraction (time blocked on the host
iterator / wall time; with `--data sample` the real grain pipeline on the bundled COCO sample feeds the
step), XLA's FLOPs per image and MFU against the device's peak bf16 FLOP/s (null on CPU).
Baseline for the CPU figure: the official PyTorch step, 2.18 s at batch 2 on the same 2-core box.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from aggpose_jax import runtime
from aggpose_jax.models import summary
from aggpose_jax.training import logger as log_lib
from aggpose_jax.training.setup import make_train_setup
from experiments import data as data_lib
from experiments import run as run_lib

OFFICIAL_TORCH_CPU_STEP_S = (
    2.18  # AggPose-L, batch 2, 256x192, fp32, 2 threads (the release's code)
)


def _synthetic(batch: int, input_hw, k: int):
    rng = np.random.default_rng(0)
    hm = (input_hw[0] // 4, input_hw[1] // 4)
    fixed = {
        "image": rng.integers(0, 256, size=(batch, *input_hw, 3), dtype=np.uint8),
        "heatmaps": rng.uniform(size=(batch, *hm, k)).astype(np.float32),
        "target_weight": np.ones((batch, k), np.float32),
    }
    while True:
        yield fixed


def bench(exp: str, batch: int, dtype: str, n_steps: int, data: str, overrides=()) -> dict:
    """Times the real train step of experiment `exp` (its full-size model) at global batch `batch`."""
    config = run_lib.load_config(exp)
    for key, value in (
        ("train.global_batch_size", str(batch)),
        ("model.options.dtype", dtype),
        *overrides,
    ):
        run_lib.apply_override(config, key, value)
    task = data_lib.make_task(config)
    t0 = time.perf_counter()
    setup = make_train_setup(config, task, steps_per_epoch=100)
    state, mesh, model = setup.state, setup.mesh, setup.model
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    k = task.fmt.num_keypoints
    if data == "sample":
        with config.unlocked():
            config.data.augment = "official"
        host_iter = data_lib.make_data(config, task).train_iter
    else:
        host_iter = _synthetic(batch, tuple(config.data.input_hw), k)
    step_fn = setup.train_step

    def global_batch():
        b = next(host_iter)
        return runtime.make_global_batch({n: b[n] for n in task.batch_keys}, mesh)

    t0 = time.perf_counter()
    compiled = step_fn.lower(state, global_batch()).compile()
    compile_s = time.perf_counter() - t0
    # Model FLOPs (6 x forward MACs per image): XLA's cost analysis counts a scanned group's body once.
    flops = 6 * summary.forward_macs(model, tuple(config.data.input_hw))[0] * batch
    state, m = compiled(state, global_batch())  # warm-up
    jax.block_until_ready(m)
    times, waits = [], []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        b = global_batch()
        t1 = time.perf_counter()
        state, m = compiled(state, b)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
        waits.append(t1 - t0)
    step_s = statistics.median(times)
    n_dev = mesh.devices.size
    peak = log_lib.device_peak_flops()
    return {
        "exp": exp, "device": jax.devices()[0].device_kind, "devices": n_dev, "batch": batch,
        "dtype": dtype, "data": data, "train_step_s": step_s, "img_per_s": batch / step_s,
        "img_per_s_per_device": batch / step_s / n_dev,
        "data_wait_frac": sum(waits) / sum(times),
        "gflops_per_img": flops / batch / 1e9 if flops else None,
        "mfu": flops / step_s / (n_dev * peak) if flops and peak else None,
        "init_s": init_s, "compile_s": compile_s, "loss": float(m["loss"]),
        "official_torch_cpu_step_s": OFFICIAL_TORCH_CPU_STEP_S,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp", default="aggpose_l")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 elsewhere")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--data", choices=("synthetic", "sample"), default="synthetic")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    dtype = args.dtype or ("float32" if jax.devices()[0].platform == "cpu" else "bfloat16")
    res = bench(args.exp, args.batch, dtype, args.steps, args.data)
    for k, v in res.items():
        print(f"{k:28s} {v}")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
