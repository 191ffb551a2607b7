"""Inputs as frames: image files, folders of images and videos, in the order given.

An image is one frame; a folder gives its images in name order; a video streams its frames from a
background thread (PyAV) through a bounded queue, so a long video never sits in memory. An image
that cannot be read is skipped with a one-line warning naming it; a video damaged part-way yields its
frames up to the damage, then a warning. An empty folder, a missing path or no input is an error.
"""

import dataclasses
import logging
import pathlib
import queue
import threading
from collections.abc import Iterator, Sequence

import av
import numpy as np

from data_pipelines import crop

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
QUEUE_FRAMES = 16  # decoded frames waiting for the predictor (1080p: 6 MB each)


class InputError(ValueError):
    """Bad input the command line answers in one line (an empty folder, no input, ...)."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One picture to predict on. image: (H, W, 3) uint8 RGB; video: the video's path or None;
    frame_index: the decoded frame's index in its video (0 for an image); timestamp in seconds."""

    image: np.ndarray
    path: pathlib.Path
    video: pathlib.Path | None = None
    frame_index: int = 0
    timestamp: float = 0.0


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video stream says of itself before decoding: fps and frame count (0 if unknown)."""

    fps: float
    frames: int


def expand_inputs(inputs: Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
    """Image and video files of the inputs, folders expanded (name order). Raises InputError."""
    if not inputs:
        raise InputError("no input: give image files, folders or videos")
    paths = []
    for item in map(pathlib.Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{item}: an empty folder (no images or videos)")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    return paths


def is_video(path: pathlib.Path) -> bool:
    """Whether a path is read as a video (by its suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_image(path: pathlib.Path) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, decoded as the evaluator decodes, or None (warned) when unreadable."""
    try:
        return crop.load_image({"image_path": str(path)}, to_rgb=True)["image"]
    except (crop.ImageReadError, OSError) as e:
        log.warning("skipped %s: %s", path, e)
        return None


def video_info(path: pathlib.Path) -> VideoInfo:
    """fps and frame count of a video's first stream. Raises InputError naming it if unreadable."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return VideoInfo(float(stream.average_rate or stream.guessed_rate or 0), stream.frames)
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise InputError(f"{path}: not a readable video ({e})") from None


def _decode_into(path: pathlib.Path, out: queue.Queue, stop: threading.Event) -> None:
    """Decodes into `out`: Frame items, then an Exception (damage) or None (the end)."""
    end: Exception | None = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or stream.guessed_rate or 1)
            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / rate
                item = Frame(frame.to_ndarray(format="rgb24"), path, path, index, t)
                while not stop.is_set():
                    try:
                        out.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
    except (av.error.FFmpegError, OSError) as e:
        end = e
    out.put(end)


def stream_video(
    path: pathlib.Path, status: dict | None = None, max_queued: int = QUEUE_FRAMES
) -> Iterator[Frame]:
    """The frames of a video, decoded ahead in a thread (at most `max_queued` waiting).

    A decoding error after the first frames ends the stream with a warning naming the file and the
    frames read (and sets status["truncated"]); one before any frame raises InputError. A stream
    that ends quietly before the frame count its container declares (a file cut short) is damaged too.
    """
    expected = video_info(path).frames
    frames: queue.Queue = queue.Queue(maxsize=max_queued)
    stop = threading.Event()
    worker = threading.Thread(target=_decode_into, args=(path, frames, stop), daemon=True)
    worker.start()
    count = 0
    try:
        while True:
            item = frames.get()
            if item is None and (not expected or count >= expected):
                return
            if item is None or isinstance(item, Exception):
                if count == 0:
                    raise InputError(f"{path}: not a readable video ({item or 'no frames'})")
                why = item or f"the container declares {expected} frames"
                log.warning("%s: damaged after %d frames, kept those (%s)", path, count, why)
                if status is not None:
                    status["truncated"] = True
                return
            count += 1
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def iter_image_frames(path: pathlib.Path) -> Iterator[Frame]:
    """One frame for a readable image, none (warned) for an unreadable one."""
    image = read_image(path)
    if image is not None:
        yield Frame(image, path)
