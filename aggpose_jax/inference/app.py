"""The app's loop: inputs -> frames -> boxes -> persons -> results, overlays and pose sequences.

`run_app` goes through the inputs in order: each image gives its persons (boxes from a detection
file, else the whole image) to results.json and an overlay; each video streams its frames, one
person box per frame (the whole frame, or tracked from the last pose), and writes its sequence,
smoothed, beside its overlay video. What is written stays written when a later input fails:
results.json and images.json are written before any error leaves.
"""

import dataclasses
import logging
import pathlib
import time

import numpy as np
import tqdm

from aggpose_jax.evaluation import evaluator
from aggpose_jax.evaluation.persons import Persons
from aggpose_jax.inference import boxes as boxes_lib
from aggpose_jax.inference import frames as frames_lib
from aggpose_jax.inference import smoothing, writers
from aggpose_jax.inference.predictor import Predictor

log = logging.getLogger(__name__)
BOX_MODES = ("auto", "whole", "track")


@dataclasses.dataclass
class Summary:
    """What a run did: counts, and the inputs skipped or cut short."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    persons: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    truncated: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """One line for the terminal."""
        fps = self.frames / self.seconds if self.seconds else 0.0
        return (f"{self.images} images, {self.videos} videos ({self.frames} frames, {fps:.1f} "
                f"frames/s), {self.persons} persons; skipped {len(self.skipped)}"
                + (f" ({', '.join(self.skipped)})" if self.skipped else "")
                + (f"; truncated videos: {', '.join(self.truncated)}" if self.truncated else ""))  # fmt: skip


def _image_ids(paths: list[pathlib.Path]) -> dict[pathlib.Path, int]:
    """COCO ids for digit-named images, the next free ids for the rest (in input order)."""
    ids = {p: boxes_lib.coco_id(p) for p in paths if not frames_lib.is_video(p)}
    taken = {i for i in ids.values() if i is not None}
    next_id = max(taken, default=0) + 1
    for p, i in ids.items():
        if i is None:
            ids[p], next_id = next_id, next_id + 1
    return ids


def _sequence_array(persons: list[Persons], k: int) -> np.ndarray:
    """Per-frame persons -> (T, N, K, 3) (x, y, score), NaN where a frame has fewer persons."""
    n = max((len(p) for p in persons), default=0)
    out = np.full((len(persons), n, k, 3), np.nan)
    for t, p in enumerate(persons):
        out[t, : len(p), :, :2] = p.keypoints
        out[t, : len(p), :, 2] = p.keypoint_scores
    return out


def _run_video(
    predictor, path, out_dir, image_id, mode, smooth, summary, images, entries, progress
):
    """Predicts and writes one video; returns the next free image id."""
    fmt, status = predictor.spec.fmt, {"truncated": False}
    info = frames_lib.video_info(path)
    per_frame, index, stamps, overlay, hw, last = [], [], [], None, None, None
    bar = tqdm.tqdm(total=info.frames or None, unit="frame", desc=path.name, disable=not progress)
    try:
        for frame in frames_lib.stream_video(path, status):
            hw = frame.image.shape[:2]
            if mode == "track" and last is not None and len(last):
                boxes = boxes_lib.track_boxes(last.keypoints, last.keypoint_scores, hw)
            else:
                boxes = None
            persons = predictor(frame.image, boxes)
            last = persons
            with_id = dataclasses.replace(persons, image_ids=np.full(len(persons), image_id))
            entries += evaluator.select_persons(with_id, fmt.sigmas_array, nms=None)
            per_frame.append(persons)
            index.append(frame.frame_index)
            stamps.append(frame.timestamp)
            images.append(dict(id=image_id, file_name=str(path), frame_index=frame.frame_index,
                               timestamp=frame.timestamp, height=hw[0], width=hw[1]))  # fmt: skip
            if overlay is None:
                overlay = writers.VideoOverlay(out_dir / f"{path.stem}_overlay.mp4", info.fps, hw)
            overlay.write(
                writers.draw_poses(frame.image, persons.keypoints, persons.keypoint_scores, fmt)
            )
            image_id += 1
            bar.update()
    finally:
        bar.close()
        if overlay is not None:
            overlay.close()
    raw = _sequence_array(per_frame, fmt.num_keypoints)
    seq = dict(keypoints=raw, keypoints_smoothed=smoothing.smooth_sequence(raw, smooth),
               frame_index=np.asarray(index, np.int64), timestamp=np.asarray(stamps), fps=info.fps,
               image_hw=hw or (0, 0), smoothing=smooth, truncated=status["truncated"], video=str(path))  # fmt: skip
    writers.write_sequence(out_dir, path.stem, seq, fmt)
    summary.videos += 1
    summary.frames += len(per_frame)
    summary.persons += int(sum(len(p) for p in per_frame))
    if status["truncated"]:
        summary.truncated.append(str(path))
    return image_id, per_frame


def run_app(
    predictor: Predictor,
    inputs: list[str],
    out_dir: str | pathlib.Path,
    *,
    boxes_file: str | None = None,
    box_mode: str = "auto",
    smooth: str = "none",
    overlays: bool = True,
    progress: bool = True,
) -> Summary:
    """Runs the app on `inputs` (images, folders, videos) and writes DIR (module docstring).

    box_mode: "auto" (the boxes file for images when given, else the whole image; the whole frame
    for videos), "whole", or "track" (videos: each frame's box from the last pose). Raises
    frames.InputError for bad input (no input, an empty folder, a bad boxes file).
    """
    if box_mode not in BOX_MODES:
        raise ValueError(f"unknown box mode {box_mode!r}; known: {', '.join(BOX_MODES)}")
    if smooth not in smoothing.METHODS:
        raise ValueError(f"unknown smoothing {smooth!r}; known: {', '.join(smoothing.METHODS)}")
    t0 = time.perf_counter()
    paths = frames_lib.expand_inputs(inputs)
    ids = _image_ids(paths)
    detections = None
    if boxes_file:
        detections = boxes_lib.read_detections(boxes_file, {p.name: i for p, i in ids.items()})
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries, images, summary = [], [], Summary()
    next_id = max(ids.values(), default=0) + 1
    sigmas = predictor.spec.fmt.sigmas_array
    try:
        for path in paths:
            if frames_lib.is_video(path):
                mode = "track" if box_mode == "track" else "whole"
                next_id, _ = _run_video(
                    predictor, path, out, next_id, mode, smooth, summary, images, entries, progress
                )
                continue
            image = frames_lib.read_image(path)
            if image is None:
                summary.skipped.append(str(path))
                continue
            image_id = ids[path]
            boxes, scores = (None, None)
            if detections is not None and box_mode == "auto":
                boxes, scores = detections.get(image_id, (np.zeros((0, 4)), np.zeros(0)))
            if boxes is None:
                persons = predictor(image)
            else:
                persons = predictor.predict_boxes(image, boxes, scores)
            persons = dataclasses.replace(persons, image_ids=np.full(len(persons), image_id))
            entries += evaluator.select_persons(
                persons, sigmas, nms="oks" if len(persons) > 1 else None
            )
            images.append(dict(id=image_id, file_name=str(path), frame_index=0, timestamp=0.0,
                               height=image.shape[0], width=image.shape[1]))  # fmt: skip
            if overlays:
                writers.write_overlay(out / "overlays" / f"{path.stem}.png", image,
                                      persons.keypoints, persons.keypoint_scores, predictor.spec.fmt)  # fmt: skip
            summary.images += 1
            summary.persons += len(persons)
    finally:
        writers.write_results(out, entries, images)
        summary.seconds = time.perf_counter() - t0
    return summary
