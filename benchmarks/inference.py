"""End-to-end inference speed on a synthetic video, against the official PyTorch AggPose-L forward.

    python -m benchmarks.inference [--json] [--frames 8] [--models aggpose_tiny,aggpose_l]
    python -m benchmarks.inference --gpu-batch 256      # on an accelerator: img/s of AggPose-L bf16

Per model (random weights; speed does not depend on them): the app's whole loop on one video
(decode in a thread, whole-frame crop, jitted predict with flip test and DARK decoding, mapping
back, the npz/csv/qc/overlay writers) in frames/s, after one warm-up call has compiled the predict;
then the predict alone on the same crops. The PyTorch baseline is the test suite's oracle of the
official AggPose-L (tests/models/torch_aggpose.py) on the same crops, with the flip test (two
forwards), batch 1 as the app runs a single-subject video, 2 threads.
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from aggpose_jax.inference.predict_fn import ModelSpec, make_predict_fn
from aggpose_jax.keypoints import metainfo
from aggpose_jax.models import build

INPUT_HW = (256, 192)


def _spec(name: str) -> ModelSpec:
    family, _ = build.split_name(name)
    options = dict(build.family_module(family).OPTIONS)
    options.update(scan_blocks=True, drop_path_rate=0.0)
    if jax.default_backend() != "cpu":
        options["dtype"] = "bfloat16"
    return ModelSpec(name=name, fmt=metainfo.get_format("coco"), input_hw=INPUT_HW,
                     heatmap_hw=(INPUT_HW[0] // 4, INPUT_HW[1] // 4), options=options)  # fmt: skip


def _model(spec: ModelSpec):
    family, variant = build.split_name(spec.name)
    model = build.make_model(family, variant, out_channels={"heatmaps": 17}, **spec.options)
    x = jnp.zeros((1, *spec.input_hw, 3), jnp.float32)
    return model, jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()


def time_app(name: str, video: pathlib.Path, workdir: pathlib.Path) -> dict:
    """frames/s of the app's loop on `video`, and of the predict alone on its crops."""
    from aggpose_jax.inference import app, frames
    from aggpose_jax.inference.predictor import Predictor, crop_persons, spec_for_params

    spec = _spec(name)
    model, variables = _model(spec)
    params = workdir / f"{name}.msgpack"
    params.write_bytes(serialization.to_bytes(variables))
    predictor = Predictor.from_params(params, model=name, input_hw=INPUT_HW)
    assert predictor.spec.name == spec_for_params(name).name
    first = next(iter(frames.stream_video(video)))
    t0 = time.perf_counter()
    predictor(first.image)  # compiles
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = app.run_app(predictor, [str(video)], workdir / name, progress=False)
    app_s = time.perf_counter() - t0
    images = [f.image for f in frames.stream_video(video)]
    box = np.array([[0.0, 0.0, images[0].shape[1], images[0].shape[0]]])
    from aggpose_jax.keypoints import geometry

    c, s = geometry.box_to_center_scale(box, INPUT_HW[1] / INPUT_HW[0])
    crops = np.stack([crop_persons(im, c, s, INPUT_HW)[0] for im in images])
    t0 = time.perf_counter()
    for crop in crops:
        jax.block_until_ready(predictor.predict_crops(crop[None]))
    predict_s = time.perf_counter() - t0
    return {f"{name}_app_fps": summary.frames / app_s, f"{name}_predict_fps": len(crops) / predict_s,
            f"{name}_compile_s": compile_s, "frames": summary.frames, "_crops": crops}  # fmt: skip


def time_torch(crops: np.ndarray) -> dict:
    """frames/s of the official AggPose-L forward (PyTorch oracle) with flip test, batch 1."""
    import torch

    from aggpose_jax.models import preprocess
    from benchmarks.train_step import _torch_model

    torch.set_num_threads(2)
    model = _torch_model("aggpose_l").eval()
    x = torch.from_numpy(np.asarray(preprocess.normalize_images(crops))).permute(0, 3, 1, 2)
    with torch.no_grad():
        model(x[:1])
        t0 = time.perf_counter()
        for i in range(len(x)):
            model(x[i : i + 1])
            model(torch.flip(x[i : i + 1], dims=[3]))
    return {"torch_aggpose_l_fps": len(x) / (time.perf_counter() - t0)}


def time_gpu_batch(batch: int, runs: int = 10) -> dict:
    """img/s of AggPose-L's jitted predict (bf16, flip test, DARK decode) at `batch` crops."""
    spec = _spec("aggpose_l")
    model, variables = _model(spec)
    fn = jax.jit(make_predict_fn(model, spec))
    crops = jnp.asarray(np.random.default_rng(0).integers(0, 255, (batch, *INPUT_HW, 3), np.uint8))
    jax.block_until_ready(fn(variables, crops))
    t0 = time.perf_counter()
    for _ in range(runs):
        out = fn(variables, crops)
    jax.block_until_ready(out)
    rate = batch * runs / (time.perf_counter() - t0)
    return {"aggpose_l_bf16_img_per_s": rate, "batch": batch, "goal_img_per_s": 4000,
            "device": str(jax.devices()[0].device_kind)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--models", default="aggpose_tiny,aggpose_l")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--gpu-batch", type=int, default=0, help="only the batched predict, on a GPU")
    args = p.parse_args()
    if args.gpu_batch:
        res = time_gpu_batch(args.gpu_batch)
    else:
        from data_pipelines import synthetic

        res = {"backend": jax.default_backend()}
        with tempfile.TemporaryDirectory() as tmp:
            work = pathlib.Path(tmp)
            video = synthetic.write_infant_video(
                work / "baby.mp4", frames=args.frames, image_hw=(480, 640)
            )
            crops = None
            for name in args.models.split(","):
                out = time_app(name, video, work)
                crops = out.pop("_crops")
                res.update(out)
                print(json.dumps(out), file=sys.stderr, flush=True)  # partial results as they come
            if not args.no_torch:
                res.update(time_torch(crops))
    print(json.dumps(res) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
