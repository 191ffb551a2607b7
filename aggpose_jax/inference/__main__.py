"""python -m aggpose_jax.inference INPUT... (--workdir RUN | --params FILE --model NAME | --exported DIR)
--out DIR [--boxes DETECTIONS.json | --whole-image | --track] [--smooth one_euro|savgol|gaussian|none]

INPUT is any mix of image files, folders and videos. Writes results.json + images.json, overlays/,
and per video <name>.npz, <name>.csv, <name>_qc.json and <name>_overlay.mp4 (docs/inference.md).
Bad input is answered in one line naming the file (exit 2); unreadable images are skipped.
"""

import argparse
import logging
import sys

from aggpose_jax.inference import app, frames, smoothing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(prog="python -m aggpose_jax.inference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("inputs", nargs="*", help="image files, folders, videos")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a training run's folder (config.json, best/)")
    src.add_argument(
        "--params", help="a weights file (.msgpack, or an official .pth); needs --model"
    )
    src.add_argument(
        "--exported", help="a folder written by python -m aggpose_jax.inference.export"
    )
    p.add_argument("--model", help="the model of --params, e.g. aggpose_l")
    p.add_argument("--keypoint-format", default="coco", help="coco | infant (with --params)")
    p.add_argument("--input-hw", default="256,192", help="crop height,width (with --params)")
    p.add_argument("--out", required=True, help="output folder")
    box = p.add_mutually_exclusive_group()
    box.add_argument("--boxes", help="COCO detection results for the images")
    box.add_argument("--whole-image", action="store_true", help="one person: the whole frame")
    box.add_argument("--track", action="store_true", help="videos: boxes from the last pose")
    p.add_argument("--smooth", default="none", choices=smoothing.METHODS)
    p.add_argument("--no-overlays", action="store_true")
    p.add_argument("--batch", type=int, default=32, help="the largest batch of crops")
    args = p.parse_args(argv)
    if args.params and not args.model:
        p.error("--params needs --model (e.g. --model aggpose_l)")
    return args


def make_predictor(args: argparse.Namespace):
    """The predictor the arguments name."""
    from aggpose_jax.inference.predictor import Predictor

    if args.workdir:
        return Predictor.from_workdir(args.workdir, max_batch=args.batch)
    if args.exported:
        return Predictor.from_exported(args.exported, max_batch=args.batch)
    hw = tuple(int(v) for v in args.input_hw.split(","))
    return Predictor.from_params(args.params, model=args.model, keypoint_format=args.keypoint_format,
                                 input_hw=hw, max_batch=args.batch)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        frames.expand_inputs(args.inputs)  # bad input fails before the model is built
        predictor = make_predictor(args)
        mode = "track" if args.track else "whole" if args.whole_image else "auto"
        summary = app.run_app(
            predictor, args.inputs, args.out, boxes_file=args.boxes, box_mode=mode,
            smooth=args.smooth, overlays=not args.no_overlays, progress=sys.stderr.isatty(),
        )  # fmt: skip
    except (frames.InputError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
