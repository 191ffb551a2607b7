"""Training-step and forward speed of any model family (AggPose, HRNet, RAM + GPR, WGNet, ...).

    python -m benchmarks.train_step [--model aggpose_l] [--batch 2] [--dtype float32] [--json]
    python -m benchmarks.train_step --model hrnet_w32 --torch-baseline
    python -m benchmarks.train_step --model wgnet_base --batch 1     # the WGNet paper's latency

Times a jitted training step (forward + backward of the official target-weighted joints MSE, drop path
active, gradients returned) and a jitted eval forward, as the median of `--runs` runs after warm-up,
in wall-clock seconds and in process CPU seconds (`*_cpu_s`, all threads: less sensitive than wall
time to other jobs on a shared machine). On CPU the blocks are rematerialised by default: recomputing
a block's forward in its backward is faster there than stacking and reading back its activations.
On an accelerator it also reports images/s and MFU (model FLOPs = 3 x forward MACs x 2 per image,
against the peak dense bf16/fp32 FLOP/s of the device, from the table below).
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.models import build, summary
from aggpose_jax.tasks.topdown_heatmap import joints_mse_loss

# Peak dense FLOP/s per device (vendor figures, no sparsity), by dtype.
PEAK_FLOPS = {
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
}


def _median_times(fn, args, runs: int) -> tuple[float, float]:
    """Median wall-clock and process CPU seconds (all threads) of one call."""
    jax.block_until_ready(fn(*args))  # Warm-up (after compilation).
    walls, cpus = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))  # A no-op for torch (synchronous on the CPU).
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def run(
    model_name: str, batch: int, input_hw: tuple[int, int], dtype: str, scan: bool, remat: bool,
    runs: int,
) -> dict:  # fmt: skip
    """Times one configuration. Returns a dict of figures (seconds, img/s, MFU where known)."""
    family, variant = build.split_name(model_name)
    # Only the options the family has (HRNet has no block groups to scan).
    wanted = dict(dtype=dtype, scan_blocks=scan, remat=remat)
    options = {k: v for k, v in wanted.items() if k in build.family_module(family).OPTIONS}
    model = build.make_model(family, variant, out_channels={"heatmaps": 17}, **options)
    images = jax.random.normal(jax.random.key(0), (batch, *input_hw, 3))
    hm_hw = (input_hw[0] // 4, input_hw[1] // 4)
    targets = jax.random.uniform(jax.random.key(1), (batch, *hm_hw, 17))
    weights = jnp.ones((batch, 17))
    # Random params straight from the shapes: timing does not need the official init (and skips
    # compiling it). BatchNorm statistics start at mean 0, variance 1.
    shapes = jax.eval_shape(model.init, jax.random.key(0), images[:1])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape, np.float32)),
                          shapes["params"])  # fmt: skip
    stats = {k: v for k, v in shapes.items() if k != "params"}
    stats = jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.full(s.shape, 1.0 if "var" in str(path[-1]) else 0.0, s.dtype), stats
    )

    def loss_fn(p, x, y, w, key):
        out, _ = model.apply({"params": p, **stats}, x, train=True, rngs={"dropout": key},
                             mutable=list(stats))  # fmt: skip
        return joints_mse_loss(out["heatmaps"], y, w)

    train_step = jax.jit(jax.value_and_grad(loss_fn))
    forward = jax.jit(lambda p, x: model.apply({"params": p, **stats}, x)["heatmaps"])
    key = jax.random.key(2)
    start = time.perf_counter()
    jax.block_until_ready(train_step(params, images, targets, weights, key))
    compile_train = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(forward(params, images))
    compile_fwd = time.perf_counter() - start
    out = {
        "model": model_name,
        "batch": batch,
        "input_hw": list(input_hw),
        "dtype": dtype,
        "scan_blocks": options.get("scan_blocks", False),
        "remat": options.get("remat", False),
        "device": jax.devices()[0].device_kind,
        "first_train_call_s": compile_train,
        "first_forward_call_s": compile_fwd,
    }
    step_args = (params, images, targets, weights, key)
    out["train_step_s"], out["train_step_cpu_s"] = _median_times(train_step, step_args, runs)
    out["forward_s"], out["forward_cpu_s"] = _median_times(forward, (params, images), runs)
    out["train_img_per_s"] = batch / out["train_step_s"]
    gmacs = summary.summarize(model_name, 17, input_hw)["gmacs"]
    peak = next((v for k, v in PEAK_FLOPS.items() if k in out["device"]), None)
    if peak is not None:
        step_flops = 3 * 2 * gmacs * 1e9 * batch
        out["mfu"] = step_flops / out["train_step_s"] / peak[dtype]
    return out


def _torch_model(model_name: str):
    """The test suite's PyTorch oracle of a model (same ops and layout as the official code)."""
    if model_name == "aggpose_l":
        from tests.models.torch_aggpose import TorchAggPose

        return TorchAggPose((64, 128, 320, 512), (1, 2, 5, 8), (8, 4, 2, 1),
                            ((3, 3, 3, 3), (6, 3, 3), (40, 3), (3,)), 17)  # fmt: skip
    family, variant = build.split_name(model_name)
    if family == "hrnet":
        from aggpose_jax.models import hrnet
        from tests.models.torch_hrnet import TorchHRNet

        return TorchHRNet(**hrnet.VARIANTS[variant], num_keypoints=17)
    raise ValueError(f"no PyTorch baseline for {model_name!r} (aggpose_l, hrnet_<variant>)")


def run_torch_baseline(model_name: str, batch: int, input_hw: tuple[int, int], runs: int) -> dict:
    """The PyTorch model on the CPU, 2 threads: forward + backward of an MSE per step (train mode:
    BatchNorm on batch statistics; AggPose's blocks without drop path), and an eval forward."""
    import torch

    torch.set_num_threads(2)
    model = _torch_model(model_name)
    images = torch.randn(batch, 3, *input_hw)
    targets = torch.rand(batch, 17, input_hw[0] // 4, input_hw[1] // 4)

    def step():
        model.train()
        model.zero_grad()
        loss = 0.5 * ((model(images) - targets) ** 2).mean()
        loss.backward()

    def forward():
        model.eval()
        with torch.no_grad():
            model(images)

    out = {}
    out["torch_train_step_s"], out["torch_train_step_cpu_s"] = _median_times(step, (), runs)
    out["torch_forward_s"], out["torch_forward_cpu_s"] = _median_times(forward, (), runs)
    return out


def main() -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="aggpose_l")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--input-hw", type=int, nargs=2, default=(256, 192))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--no-scan", action="store_true", help="unrolled block groups")
    parser.add_argument("--remat", choices=["auto", "on", "off"], default="auto",
                        help="rematerialise each block in the backward; auto: on for CPU, where "
                             "it is the faster setting (docs/benchmarks.md), off elsewhere")  # fmt: skip
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch-baseline", action="store_true",
                        help="also time the PyTorch oracle of the tests (needs torch)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    remat = args.remat == "on" or (args.remat == "auto" and jax.default_backend() == "cpu")
    res = run(args.model, args.batch, tuple(args.input_hw), args.dtype, not args.no_scan, remat,
              args.runs)  # fmt: skip
    if args.torch_baseline:
        res.update(run_torch_baseline(args.model, args.batch, tuple(args.input_hw), args.runs))
        res["speedup_train"] = res["torch_train_step_s"] / res["train_step_s"]
        res["speedup_forward"] = res["torch_forward_s"] / res["forward_s"]
    for k, v in res.items():
        print(f"{k:>22}: {v:.4f}" if isinstance(v, float) else f"{k:>22}: {v}")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
