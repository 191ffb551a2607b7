"""Video frames into ArrayRecord shards, for unlabeled pretraining and for inference on videos.

`extract_frames` decodes a video with PyAV, keeps every n-th frame or samples a target frame rate,
and writes each kept frame as an encoded image (JPEG or lossless PNG), one record per frame, in
shards of `frames_per_shard` records. Written to OUT_DIR:

    extraction.json           the settings (checked on resume) and, when done, "complete": true
    frames-00000.array_record one shard; its records are the encoded frames, in frame order
    frames-00000.jsonl        its manifest: one line per record {video, frame_index, timestamp,
                              shard, record}
    manifest.jsonl            all shards' lines, written once the whole video is done

Resuming: a shard and its manifest are written under temporary names and renamed into place when
complete (the shard last, so an existing shard always has its manifest). A re-run keeps the
complete shards, drops leftovers of an interrupted one, decodes the video again from the start
(frame selection depends on every earlier timestamp, and decoding is exact where seeking is not)
and encodes only the frames after the last complete shard. The result equals an uninterrupted run.

Command line:
    python -m data_pipelines.video VIDEO OUT_DIR [--every-n 2 | --fps 5] [--frames-per-shard 256]
"""

import argparse
import collections.abc
import dataclasses
import json
import math
import os
import pathlib
import sys

import av
import cv2
import grain
import numpy as np
import tqdm
from array_record.python import array_record_module

_SETTINGS = "extraction.json"
_MANIFEST = "manifest.jsonl"
_EPS = 1e-9  # timestamps are exact fractions turned into floats; forgive the rounding


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction keeps and how it stores it; a resume must use the same settings."""

    video: str
    every_n: int = 1
    fps: float | None = None
    frames_per_shard: int = 256
    image_format: str = "jpeg"
    jpeg_quality: int = 95


def shard_name(index: int) -> str:
    """The file name of shard `index` ("frames-00003.array_record")."""
    return f"frames-{index:05d}.array_record"


def select_frames(
    container: av.container.InputContainer, every_n: int = 1, fps: float | None = None
) -> collections.abc.Iterator[tuple[int, float, av.VideoFrame | None]]:
    """Decode the first video stream and yield the kept frames, in order.

    Shapes: yields (frame_index, timestamp seconds, frame) for every decoded frame, with frame None
    for the ones not kept (so a caller can count progress). frame_index counts decoded frames from
    0. With `fps`, a frame is kept when it is the first at or after the next point of a grid
    t0 + k / fps (t0 = the first timestamp); otherwise every `every_n`-th frame is kept.
    """
    stream = container.streams.video[0]
    rate = float(stream.average_rate or stream.guessed_rate or 1)
    t0, k = None, 0
    for index, frame in enumerate(container.decode(stream)):
        t = float(frame.time) if frame.time is not None else index / rate
        if fps is None:
            keep = index % every_n == 0
        else:
            t0 = t if t0 is None else t0
            keep = t >= t0 + k / fps - _EPS
            if keep:  # the next grid point after this frame
                k = math.floor((t - t0) * fps + _EPS) + 1
        yield index, t, frame if keep else None


def _encode(rgb: np.ndarray, settings: ExtractionSettings) -> bytes:
    if settings.image_format == "png":
        ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    else:
        ok, buf = cv2.imencode(
            ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
        )
    if not ok:
        raise ValueError(f"cannot encode a frame as {settings.image_format}")
    return buf.tobytes()


def _complete_shards(out_dir: pathlib.Path) -> list[list[dict]]:
    """The manifests of the complete shards 0, 1, ... (a contiguous prefix); removes leftovers."""
    for tmp in out_dir.glob("frames-*.tmp"):
        tmp.unlink()
    shards = []
    while (out_dir / shard_name(len(shards))).exists():
        lines = (out_dir / shard_name(len(shards))).with_suffix(".jsonl").read_text().splitlines()
        shards.append([json.loads(line) for line in lines])
    for stale in out_dir.glob("frames-*"):  # beyond the prefix: from an older, different run
        if int(stale.name[7:12]) >= len(shards):
            stale.unlink()
    return shards


def _write_shard(out_dir: pathlib.Path, index: int, images: list[bytes], lines: list[dict]) -> None:
    final = out_dir / shard_name(index)
    manifest = final.with_suffix(".jsonl")
    tmp = final.with_name(final.name + ".tmp")
    writer = array_record_module.ArrayRecordWriter(str(tmp), "group_size:1")
    for image in images:
        writer.write(image)
    writer.close()
    tmp_manifest = manifest.with_name(manifest.name + ".tmp")
    with open(tmp_manifest, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_manifest, manifest)
    os.replace(tmp, final)  # last: an existing shard file means the shard is complete


def extract_frames(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    every_n: int = 1,
    fps: float | None = None,
    frames_per_shard: int = 256,
    image_format: str = "jpeg",
    jpeg_quality: int = 95,
    progress: bool = False,
    on_shard_written: collections.abc.Callable[[int], None] | None = None,
) -> pathlib.Path:
    """Extract frames of `video` into ArrayRecord shards under `out_dir`; resumes a partial run.

    Shapes: frames (H, W, 3) RGB are stored encoded. Returns the path of manifest.jsonl.
    `every_n` keeps frames 0, n, 2n, ...; `fps` (instead) samples a target rate. `on_shard_written`
    is called with each shard index once it is complete (a hook for progress or tests). Raises
    ValueError when `out_dir` holds an extraction made with other settings.
    """
    if fps is not None and every_n != 1:
        raise ValueError("give either every_n or fps, not both")
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', not {image_format!r}")
    settings = ExtractionSettings(
        str(video), every_n, None if fps is None else float(fps), frames_per_shard, image_format,
        jpeg_quality,
    )  # fmt: skip
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / _SETTINGS
    if settings_path.exists():
        saved = json.loads(settings_path.read_text())
        if saved["settings"] != dataclasses.asdict(settings):
            raise ValueError(f"{out} holds an extraction with other settings: {saved['settings']}")
        if saved.get("complete"):
            return out / _MANIFEST
    else:
        settings_path.write_text(json.dumps({"settings": dataclasses.asdict(settings)}, indent=1))
    shards = _complete_shards(out)
    last_done = shards[-1][-1]["frame_index"] if shards else -1
    images, lines = [], []
    with av.open(str(video)) as container:
        total = container.streams.video[0].frames or None
        bar = tqdm.tqdm(
            total=total, unit="frame", disable=not progress, desc=pathlib.Path(video).name
        )
        for index, t, frame in select_frames(container, every_n, fps):
            bar.update()
            if frame is None or index <= last_done:
                continue
            images.append(_encode(frame.to_ndarray(format="rgb24"), settings))
            name = shard_name(len(shards))
            lines.append(dict(video=str(video), frame_index=index, timestamp=t, shard=name,
                              record=len(lines)))  # fmt: skip
            if len(images) == frames_per_shard:
                _write_shard(out, len(shards), images, lines)
                shards.append(lines)
                images, lines = [], []
                if on_shard_written is not None:
                    on_shard_written(len(shards) - 1)
        bar.close()
    if images:
        _write_shard(out, len(shards), images, lines)
        shards.append(lines)
        if on_shard_written is not None:
            on_shard_written(len(shards) - 1)
    manifest = out / _MANIFEST
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for lines in shards for line in lines))
    os.replace(tmp, manifest)
    done = {"settings": dataclasses.asdict(settings), "complete": True, "num_shards": len(shards),
            "num_frames": sum(map(len, shards))}  # fmt: skip
    settings_path.write_text(json.dumps(done, indent=1))
    return manifest


class VideoFrameSource:
    """Frames of one or more extractions: a grain random-access source.

    Shapes: `source[i]` = {"image_bytes": bytes (the encoded frame, JPEG or PNG), "video": str,
    "frame_index": int, "timestamp": float}. Like every source it hands out the encoded image, never
    pixels: `crop.load_image(dict(source[i]), to_rgb=True)["image"]` decodes it, (H, W, 3) uint8
    RGB. Reads the complete shards of each folder (so a partial extraction can be read too), in
    folder order, then shard order.
    """

    def __init__(self, out_dirs: str | os.PathLike | collections.abc.Sequence[str | os.PathLike]):
        dirs = [out_dirs] if isinstance(out_dirs, str | os.PathLike) else list(out_dirs)
        paths, self._lines = [], []
        for d in map(pathlib.Path, dirs):
            i = 0
            while (d / shard_name(i)).exists():
                paths.append(str(d / shard_name(i)))
                text = (d / shard_name(i)).with_suffix(".jsonl").read_text()
                self._lines.extend(json.loads(line) for line in text.splitlines())
                i += 1
        if not paths:
            raise FileNotFoundError(f"no frame shards in {[str(d) for d in dirs]}")
        self._records = grain.sources.ArrayRecordDataSource(paths)
        if len(self._records) != len(self._lines):
            raise ValueError(f"{len(self._records)} records but {len(self._lines)} manifest lines")

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> dict:
        line = self._lines[index]
        return {
            "image_bytes": self._records[int(index) % len(self)],
            "video": line["video"],
            "frame_index": int(line["frame_index"]),
            "timestamp": float(line["timestamp"]),
        }


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Extract video frames into ArrayRecord shards.")
    parser.add_argument("video")
    parser.add_argument("out_dir")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--every-n", type=int, default=1, help="keep every n-th frame")
    pick.add_argument("--fps", type=float, default=None, help="sample this many frames a second")
    parser.add_argument("--frames-per-shard", type=int, default=256)
    parser.add_argument("--format", choices=["jpeg", "png"], default="jpeg")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    args = parser.parse_args(argv)
    if args.every_n < 1 or (args.fps is not None and args.fps <= 0) or args.frames_per_shard < 1:
        parser.error("--every-n, --fps and --frames-per-shard must be positive")
    try:
        manifest = extract_frames(
            args.video, args.out_dir, every_n=args.every_n, fps=args.fps,
            frames_per_shard=args.frames_per_shard, image_format=args.format,
            jpeg_quality=args.jpeg_quality, progress=True,
        )  # fmt: skip
    except (OSError, ValueError, av.error.FFmpegError) as e:  # unreadable or missing video
        print(f"error: {args.video}: {e}", file=sys.stderr)
        return 2
    with open(manifest) as f:
        print(f"{sum(1 for _ in f)} frames -> {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
