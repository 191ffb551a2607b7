"""What the app writes: COCO results with an image table, overlays, and per-video pose sequences.

results.json            COCO keypoint results (the scorer reads it with a ground-truth file)
images.json             [{"id", "file_name", "frame_index", "timestamp", "height", "width"}]
overlays/<name>.png     each input image with its poses, drawn with the format's skeleton
<video>_overlay.mp4     the video with its (smoothed) poses
<video>.npz             keypoints (T, N, K, 3) raw and keypoints_smoothed, frame_index (T,),
                        timestamp (T,), fps, keypoint_names (K,), skeleton (L, 2), image_hw
<video>.csv             DeepLabCut-style table of the first person: three header rows
                        (scorer / bodyparts / coords), a frame index column, time, x, y, likelihood
<video>_qc.json         frames decoded, frames with every keypoint above the score threshold, gaps
"""

import csv
import json
import pathlib

import av
import cv2
import numpy as np

from aggpose_jax.evaluation import results as results_lib
from aggpose_jax.evaluation.visualize import limb_colors
from aggpose_jax.keypoints.metainfo import KeypointFormat

QC_SCORE = 0.3  # a frame is good when every keypoint of its first person scores above this


def draw_poses(image_rgb: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
               fmt: KeypointFormat, score_thr: float = 0.3) -> np.ndarray:  # fmt: skip
    """The image with poses drawn (limbs in their colours, joints white); cv2, fast enough for video.

    Shapes: image_rgb (H, W, 3) uint8, keypoints (N, K, 2), scores (N, K) -> (H, W, 3) uint8.
    """
    out = np.ascontiguousarray(image_rgb).copy()
    thick = max(1, round(max(out.shape[:2]) / 300))
    colors = (limb_colors(max(len(fmt.skeleton), 1))[:, :3] * 255).astype(int)
    for kp, sc in zip(keypoints, scores, strict=True):
        if not np.all(np.isfinite(kp)):
            continue
        pts = np.round(kp).astype(int)
        for color, (a, b) in zip(colors, fmt.skeleton, strict=False):
            if sc[a] > score_thr and sc[b] > score_thr:
                cv2.line(
                    out, tuple(pts[a]), tuple(pts[b]), tuple(map(int, color)), thick, cv2.LINE_AA
                )
        for p, s in zip(pts, sc, strict=True):
            if s > score_thr:
                cv2.circle(out, tuple(p), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def write_overlay(path: pathlib.Path, image_rgb, keypoints, scores, fmt) -> None:
    """overlays/<name>.png of one image (shapes as `draw_poses`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(path), cv2.cvtColor(draw_poses(image_rgb, keypoints, scores, fmt), cv2.COLOR_RGB2BGR)
    )


def write_results(out_dir: pathlib.Path, entries: list[dict], images: list[dict]) -> None:
    """results.json (COCO keypoint results, checked) and images.json (the image table)."""
    results_lib.write_results(entries, out_dir / "results.json")
    (out_dir / "images.json").write_text(json.dumps(images, indent=1))


class VideoOverlay:
    """Writes <video>_overlay.mp4 frame by frame (H.264 when PyAV has it, else MPEG-4)."""

    def __init__(self, path: pathlib.Path, fps: float, image_hw: tuple[int, int]):
        self.container = av.open(str(path), "w")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        rate = max(1, round(fps or 25))
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = image_hw[1] // 2 * 2, image_hw[0] // 2 * 2
        self.stream.pix_fmt = "yuv420p"

    def write(self, image_rgb: np.ndarray) -> None:
        """One (H, W, 3) uint8 RGB frame."""
        h, w = self.stream.height, self.stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_rgb[:h, :w]), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        """Flushes the encoder and closes the file."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def qc_report(keypoints: np.ndarray, score_thr: float = QC_SCORE) -> dict:
    """Frames with every keypoint of the first person above `score_thr`, and the gaps between.

    Shapes: keypoints (T, N, K, 3). Gaps are [first, last] index pairs of runs of frames that are
    not good (indices into the T decoded frames).
    """
    t = len(keypoints)
    good = np.zeros(t, bool) if keypoints.shape[1] == 0 else np.all(
        np.nan_to_num(keypoints[:, 0, :, 2], nan=0.0) > score_thr, axis=-1)  # fmt: skip
    edges = np.flatnonzero(np.diff(np.concatenate([[1], good.astype(np.int8), [1]])))
    gaps = [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], good.astype(np.int8), [0]]))))[::2]
    return {
        "frames_decoded": t, "score_threshold": score_thr, "frames_all_keypoints_above": int(good.sum()),
        "fraction_good": float(good.mean()) if t else 0.0,
        "longest_good_run": int(runs.max()) if len(runs) else 0, "gaps": gaps,
    }  # fmt: skip


def write_sequence(out_dir: pathlib.Path, name: str, seq: dict, fmt: KeypointFormat) -> None:
    """<name>.npz, <name>.csv and <name>_qc.json of a video's pose sequence.

    seq: keypoints (T, N, K, 3), keypoints_smoothed (T, N, K, 3), frame_index (T,), timestamp (T,),
    fps, image_hw, smoothing, truncated.
    """
    np.savez(
        out_dir / f"{name}.npz", keypoints=seq["keypoints"], keypoints_smoothed=seq["keypoints_smoothed"],
        frame_index=seq["frame_index"], timestamp=seq["timestamp"], fps=np.float64(seq["fps"]),
        keypoint_names=np.asarray(fmt.keypoint_names), skeleton=np.asarray(fmt.skeleton, np.int64).reshape(-1, 2),
        image_hw=np.asarray(seq["image_hw"]), smoothing=np.asarray(seq["smoothing"]),
    )  # fmt: skip
    smoothed = seq["keypoints_smoothed"]
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scorer", "aggpose-jax", *(["aggpose-jax"] * 3 * fmt.num_keypoints)])
        w.writerow(["bodyparts", "time", *[n for n in fmt.keypoint_names for _ in range(3)]])
        w.writerow(["coords", "seconds", *(["x", "y", "likelihood"] * fmt.num_keypoints)])
        for i in range(len(smoothed)):
            row = (
                smoothed[i, 0].reshape(-1)
                if smoothed.shape[1]
                else np.full(3 * fmt.num_keypoints, np.nan)
            )
            w.writerow([int(seq["frame_index"][i]), f"{seq['timestamp'][i]:.6f}",
                        *("" if not np.isfinite(v) else f"{v:.3f}" for v in row)])  # fmt: skip
    qc = {"video": seq["video"], "truncated": bool(seq["truncated"]), **qc_report(seq["keypoints"])}
    (out_dir / f"{name}_qc.json").write_text(json.dumps(qc, indent=1))
