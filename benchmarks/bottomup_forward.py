"""Forward speed of the bottom-up networks (MLN, OpenPose) on this machine's default device.

    python -m benchmarks.bottomup_forward [--models mln_base openpose_cmu] [--input-hw 368 432]
        [--batch 1] [--repeats 5] [--dtype float32] [--json]

Images per second of the jitted eval forward (normalised uint8 input -> every stage's maps), on
random weights (drawn with numpy: a jitted init would compile every random draw), at the MLN paper's
timing input, 368 x 432, batch 1 by default. The paper: MLN 22.71 ms (42.2 FPS) and OpenPose 20.4 FPS on
one Tesla P40 (Table 2). Timing: the compiled call (compile excluded) with `block_until_ready`, the
median of `--repeats` calls after one warm-up call.
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.models import build, preprocess

PAPER_FPS = {"mln_base": 42.2, "openpose_cmu": 20.4}  # Tesla P40, 368 x 432 (MLN's Table 2)
OUT_CHANNELS = {"heatmaps": 19, "pafs": 38}  # OpenPose's COCO-18 + background, 19 limbs


def random_variables(model, image: jax.ShapeDtypeStruct) -> dict:
    """He-scaled random variables of `model` for `image`, from numpy (no compiled init)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), image)
    rng = np.random.default_rng(0)

    def draw(s):
        fan_in = int(np.prod(s.shape[:-1])) or 1
        return jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in), s.dtype)

    return jax.tree.map(draw, shapes)


def time_forward(
    name: str, input_hw: tuple[int, int], batch: int, repeats: int, dtype: str
) -> dict:
    """Images/s of `name`'s jitted forward. Shapes: (batch, H, W, 3) uint8 -> the model's outputs."""
    family, variant = build.split_name(name)
    model = build.make_model(family, variant, out_channels=OUT_CHANNELS, dtype=dtype)
    images = np.random.default_rng(1).integers(0, 255, (batch, *input_hw, 3), dtype=np.uint8)
    variables = random_variables(model, jax.ShapeDtypeStruct(images.shape, jnp.float32))
    forward = jax.jit(lambda v, x: model.apply(v, preprocess.normalize_images(x)))
    t0 = time.perf_counter()
    compiled = forward.lower(variables, images).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(variables, images))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(variables, images))
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    return {
        "model": name, "device": jax.devices()[0].device_kind, "input_hw": list(input_hw),
        "batch": batch, "dtype": dtype, "ms_per_batch": 1e3 * seconds,
        "img_per_s": batch / seconds, "compile_s": compile_s,
        "paper_fps_p40": PAPER_FPS.get(name),
    }  # fmt: skip


def main() -> None:
    """Times each model and prints a Markdown table (or JSON lines)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mln_base", "openpose_cmu"])
    parser.add_argument("--input-hw", type=int, nargs=2, default=(368, 432))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", action="store_true", help="one JSON object per model")
    args = parser.parse_args()
    rows = [
        time_forward(m, tuple(args.input_hw), args.batch, args.repeats, args.dtype)
        for m in args.models
    ]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return
    print("| model | device | input | batch | ms / batch | img/s | paper FPS (P40) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['device']} | {r['input_hw'][0]}x{r['input_hw'][1]} | "
            f"{r['batch']} | {r['ms_per_batch']:.1f} | {r['img_per_s']:.2f} | {r['paper_fps_p40']} |"
        )


if __name__ == "__main__":
    main()
