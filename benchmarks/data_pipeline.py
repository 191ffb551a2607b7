"""Training-pipeline throughput per CPU core on the bundled real COCO sample.

    python -m benchmarks.data_pipeline [--json] [--seconds 5]

One process, one thread (OpenCV and BLAS pinned to 1): decode + augmentation + targets per
sample, giving the uint8 RGB crops the jitted step normalises on the device, in samples per CPU
second of the process (`time.process_time`). Measured in the same run, interleaved to share the
machine's noise:

* ours: the training chain with the flip folded into the crop, the colour jitter on the crop, and
  (without jitter) only the crop's source box decoded (libturbojpeg 3);
* whole: ours decoding whole images (`decode_region=False`), to show the region decode's share;
* reference: the same chain in the official order (flip and jitter the full image, then crop),
  normalised to float32 on the host as the official `ToTensor` + `Normalize` do;
* loader: ours through the grain loader (num_workers 0, batches of 32), the figure reported as
  `samples_per_s_per_core`;
* decode: cv2 JPEG decoding alone of the whole image (what the official pipeline pays per sample).

The official PyTorch pipeline does 94.6 samples/s per core on the same machine kind (62% of it in
the colour jitter on the full image).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from aggpose_jax.keypoints import codecs, metainfo  # noqa: E402
from aggpose_jax.models import preprocess  # noqa: E402
from data_pipelines import jpeg, loaders, sources, topdown  # noqa: E402

OFFICIAL_PER_CORE = 94.6
# CPU seconds of this process: on a shared machine, wall time also counts the time other processes
# held the core; samples per CPU second is the per-core rate.
_clock = time.process_time
CODEC = codecs.HeatmapCodec((256, 192), (64, 48), sigma=2.0)
OURS = topdown.TopdownTrainExample(metainfo.COCO, CODEC)
WHOLE = topdown.TopdownTrainExample(metainfo.COCO, CODEC, decode_region=False)
OFFICIAL_ORDER = topdown.TopdownTrainExample(metainfo.COCO, CODEC, jitter_on="image")


def _rate(fn, records, seconds: float, epoch0: int) -> float:
    """Samples per second of fn(record, rng) over whole passes of the records for ~seconds."""
    n, epoch, start = 0, epoch0, _clock()
    while _clock() - start < seconds:
        for i in range(len(records)):
            fn(records[i], np.random.default_rng([0, epoch, i]))
        n += len(records)
        epoch += 1
    return n / (_clock() - start)


def _decode(record, rng):
    del rng
    buf = np.fromfile(record["image_path"], np.uint8)
    cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


_MEAN = np.asarray(preprocess.MEAN_RGB, np.float32)
_STD = np.asarray(preprocess.STD_RGB, np.float32)


def _official_order(record, rng):
    """The chain in the official order, normalised on the host as ToTensor + Normalize do."""
    example = OFFICIAL_ORDER(record, rng)
    example["image"] = (example["image"] / np.float32(255.0) - _MEAN) / _STD
    return example


def _loader_rate(records, seconds: float) -> float:
    it = iter(loaders.make_train_loader(records, OURS, batch_size=32, seed=0))
    next(it)
    n, start = 0, _clock()
    while _clock() - start < seconds:
        n += len(next(it)["image"])
    return n / (_clock() - start)


def run(seconds: float = 5.0, rounds: int = 3) -> dict:
    """Best-of-`rounds` rates of each variant (interleaved), in samples per second on one core."""
    cv2.setNumThreads(1)
    paths = sources.sample_paths()
    records = sources.load_coco_records(paths.gt_json, paths.image_root)
    chains = {"ours": OURS, "whole": WHOLE, "reference": _official_order}
    best = dict.fromkeys([*chains, "loader", "decode"], 0.0)
    for k in range(rounds):
        for name, fn in chains.items():
            best[name] = max(best[name], _rate(fn, records, seconds, 1000 * k))
        best["loader"] = max(best["loader"], _loader_rate(records, seconds))
        best["decode"] = max(best["decode"], _rate(_decode, records, seconds / 2, 0))
    return {
        "samples_per_s_per_core": round(best["loader"], 1),
        "chain_samples_per_s": round(best["ours"], 1),
        "chain_whole_decode_samples_per_s": round(best["whole"], 1),
        "reference_samples_per_s": round(best["reference"], 1),
        "decode_only_per_s": round(best["decode"], 1),
        "region_decode": jpeg.available(),
        "loader_vs_reference": round(best["loader"] / best["reference"], 2),
        "speedup_vs_official_reported": round(best["loader"] / OFFICIAL_PER_CORE, 2),
        "official_reported_per_core": OFFICIAL_PER_CORE,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = run(args.seconds, args.rounds)
    for key, value in result.items():
        print(f"{key:32s} {value}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
