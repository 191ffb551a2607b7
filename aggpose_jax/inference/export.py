"""Export: python -m aggpose_jax.inference.export (--workdir RUN | --params FILE --model NAME) --out DIR

Writes to DIR:
    model.jax_exported   `jax.export` StableHLO of the whole predict (uint8 crops (B, H, W, 3) in,
                         coords (B, K, 2) heatmap pixels and scores (B, K) out; normalisation, flip
                         test and decoding inside), with a symbolic batch B: one artifact, any batch
    model.onnx           the same function through jax2onnx, for onnxruntime. Its batch is fixed
                         (meta "onnx_batch"; the predictor pads): jax2onnx 0.12.5 cannot lower the
                         decode's integer remainder with a symbolic batch
    meta.json            model, keypoint format (names, skeleton, flip indices), input and heatmap
                         sizes, codec, platforms and versions

`load_exported(DIR)` runs either artifact without the model's code (`Predictor.from_exported`).
"""

import argparse
import importlib.metadata
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from aggpose_jax.inference import predictor as predictor_lib
from aggpose_jax.inference.predict_fn import ModelSpec, PredictFn, make_predict_fn
from aggpose_jax.keypoints import metainfo

STABLEHLO = "model.jax_exported"
ONNX = "model.onnx"
META = "meta.json"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def export_model(spec: ModelSpec, variables_source: str, out_dir: str | pathlib.Path, *,
                 onnx: bool = True, onnx_batch: int = 8) -> pathlib.Path:  # fmt: skip
    """Writes model.jax_exported, model.onnx (unless `onnx` is False) and meta.json; returns DIR.

    Shapes of both artifacts: crops (B, H, W, 3) uint8 -> coords (B, K, 2) float32 heatmap pixels,
    scores (B, K) float32; B symbolic for StableHLO, `onnx_batch` for ONNX.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, variables = predictor_lib.load_model(spec, variables_source)
    predict = make_predict_fn(model, spec)
    fn = jax.jit(lambda crops: predict(variables, crops))
    (b,) = jax.export.symbolic_shape("b")
    crops = jax.ShapeDtypeStruct((b, *spec.input_hw, 3), jnp.uint8)
    exported = jax.export.export(fn, platforms=(jax.default_backend(),))(crops)
    (out / STABLEHLO).write_bytes(exported.serialize())
    if onnx:
        from jax2onnx import to_onnx

        shape = jax.ShapeDtypeStruct((onnx_batch, *spec.input_hw, 3), jnp.uint8)
        proto = to_onnx(lambda x: predict(variables, x), [shape], model_name=spec.name,
                        input_names=["crops"], output_names=["coords", "scores"])  # fmt: skip
        (out / ONNX).write_bytes(proto.SerializeToString())
    meta = {
        "model": spec.name, "keypoint_format": spec.fmt.name,
        "keypoint_names": list(spec.fmt.keypoint_names), "skeleton": [list(p) for p in spec.fmt.skeleton],
        "flip_indices": [int(i) for i in spec.fmt.flip_indices], "input_hw": list(spec.input_hw),
        "heatmap_hw": list(spec.heatmap_hw), "codec": {"decode": spec.decode, "blur_kernel": 11},
        "flip_test": spec.flip_test, "flip_shift": spec.flip_shift, "input": "uint8 RGB (B, H, W, 3)",
        "outputs": {"coords": "(B, K, 2) heatmap pixels (x, y)", "scores": "(B, K)"},
        "platforms": list(exported.platforms), "onnx_batch": onnx_batch if onnx else None,
        "versions": {p: _version(p) for p in ("jax", "jaxlib", "flax", "jax2onnx", "onnx", "aggpose-jax")},
    }  # fmt: skip
    (out / META).write_text(json.dumps(meta, indent=1))
    return out


def read_meta(exported_dir: str | pathlib.Path) -> tuple[dict, ModelSpec]:
    """meta.json and the ModelSpec it describes (the format must be one this project knows)."""
    path = pathlib.Path(exported_dir) / META
    if not path.exists():
        raise FileNotFoundError(f"{exported_dir}: not an exported model (no {META})")
    meta = json.loads(path.read_text())
    spec = ModelSpec(
        name=meta["model"], fmt=metainfo.get_format(meta["keypoint_format"]),
        input_hw=tuple(meta["input_hw"]), heatmap_hw=tuple(meta["heatmap_hw"]),
        decode=meta["codec"]["decode"], flip_test=meta["flip_test"], flip_shift=meta["flip_shift"],
    )  # fmt: skip
    return meta, spec


def _onnx_fn(path: pathlib.Path, batch: int) -> PredictFn:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=ort.get_available_providers())

    def run(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coords, scores = [], []
        for start in range(0, len(crops), batch):
            part = np.asarray(crops[start : start + batch])
            pad = np.zeros((batch - len(part), *part.shape[1:]), np.uint8)
            c, s = session.run(None, {"crops": np.concatenate([part, pad])})
            coords.append(c[: len(part)])
            scores.append(s[: len(part)])
        return np.concatenate(coords), np.concatenate(scores)

    return run


def load_exported(
    exported_dir: str | pathlib.Path, runtime: str = "stablehlo"
) -> tuple[ModelSpec, PredictFn]:
    """(spec, crops -> (coords, scores)) of an exported folder, through jax ("stablehlo") or
    onnxruntime ("onnx"). Shapes as `export_model`."""
    meta, spec = read_meta(exported_dir)
    if runtime == "onnx":
        return spec, _onnx_fn(pathlib.Path(exported_dir) / ONNX, int(meta["onnx_batch"]))
    if runtime != "stablehlo":
        raise ValueError(f"unknown runtime {runtime!r}; known: stablehlo, onnx")
    exported = jax.export.deserialize(
        bytearray((pathlib.Path(exported_dir) / STABLEHLO).read_bytes())
    )
    return spec, jax.jit(exported.call)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (module docstring)."""
    p = argparse.ArgumentParser(prog="python -m aggpose_jax.inference.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a training run's folder")
    src.add_argument("--params", help="a weights file; needs --model")
    p.add_argument("--model", help="e.g. aggpose_l (with --params)")
    p.add_argument("--keypoint-format", default="coco")
    p.add_argument("--input-hw", default="256,192", help="crop height,width (with --params)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-onnx", action="store_true", help="StableHLO only")
    p.add_argument("--onnx-batch", type=int, default=8)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.params and not args.model:
        p.error("--params needs --model")
    try:
        if args.workdir:
            spec, source = predictor_lib.spec_from_workdir(args.workdir), args.workdir
        else:
            hw = tuple(int(v) for v in args.input_hw.split(","))
            spec = predictor_lib.spec_for_params(args.model, args.keypoint_format, hw)
            source = args.params
        out = export_model(
            spec, source, args.out, onnx=not args.no_onnx, onnx_batch=args.onnx_batch
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {spec.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
