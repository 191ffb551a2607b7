"""Synthetic COCO-format keypoint data: articulated stick figures on textured backgrounds.

A stand-in for COCO or the infant set in tests, smoke runs and benchmarks: every part of the
format the pipeline reads is exercised (visibility 0/1/2, several overlapping persons, iscrowd
regions with RLE masks, detector boxes with false positives), and the pictures carry real signal
(each limb and the head have their own colour) so that a model can learn them.

Layout written (the COCO 2017 layout, so the folder also works as a TFDS manual dir):
    OUT_DIR/annotations/person_keypoints_<split>.json
    OUT_DIR/annotations/detections_<split>.json      (with `detections=True`)
    OUT_DIR/images/<split>/<12-digit image id>.jpg

Command line:
    python -m data_pipelines.synthetic OUT_DIR --num-images 1000 --format infant
"""

import argparse
import dataclasses
import json
import pathlib

import cv2
import numpy as np

from aggpose_jax.keypoints import metainfo

# Kinematic trees: (name, parent, rest offset from the parent in body heights, angle spread in
# degrees). Image axes: x right, y down; the figure faces the camera, so its left is on the right.
# Names starting with "_" are virtual joints (drawn, not annotated).
_COCO_TREE = (
    ("_pelvis", None, (0.0, 0.0), 0),
    ("left_hip", "_pelvis", (0.09, 0.0), 5), ("right_hip", "_pelvis", (-0.09, 0.0), 5),
    ("left_knee", "left_hip", (0.0, 0.24), 35), ("right_knee", "right_hip", (0.0, 0.24), 35),
    ("left_ankle", "left_knee", (0.0, 0.23), 40), ("right_ankle", "right_knee", (0.0, 0.23), 40),
    ("_neck", "_pelvis", (0.0, -0.30), 12),
    ("left_shoulder", "_neck", (0.12, 0.02), 5), ("right_shoulder", "_neck", (-0.12, 0.02), 5),
    ("left_elbow", "left_shoulder", (0.0, 0.17), 70),
    ("right_elbow", "right_shoulder", (0.0, 0.17), 70),
    ("left_wrist", "left_elbow", (0.0, 0.15), 60), ("right_wrist", "right_elbow", (0.0, 0.15), 60),
    ("nose", "_neck", (0.0, -0.12), 15),
    ("left_eye", "nose", (0.03, -0.03), 5), ("right_eye", "nose", (-0.03, -0.03), 5),
    ("left_ear", "left_eye", (0.035, 0.01), 5), ("right_ear", "right_eye", (-0.035, 0.01), 5),
)  # fmt: skip

_INFANT_TREE = (
    ("M3", None, (0.0, 0.0), 0),
    ("M2", "M3", (0.0, -0.2), 12), ("M1", "M2", (0.0, -0.11), 15),
    ("R1", "M1", (-0.04, -0.07), 5), ("L1", "M1", (0.04, -0.07), 5),
    ("R2", "M2", (-0.11, 0.0), 5), ("L2", "M2", (0.11, 0.0), 5),
    ("R3", "R2", (0.0, 0.12), 80), ("L3", "L2", (0.0, 0.12), 80),
    ("R4", "R3", (0.0, 0.11), 70), ("L4", "L3", (0.0, 0.11), 70),
    ("R5", "R4", (0.0, 0.05), 30), ("L5", "L4", (0.0, 0.05), 30),
    ("R6", "M3", (-0.07, 0.07), 5), ("L6", "M3", (0.07, 0.07), 5),
    ("R7", "R6", (0.0, 0.17), 50), ("L7", "L6", (0.0, 0.17), 50),
    ("R8", "R7", (0.0, 0.15), 50), ("L8", "L7", (0.0, 0.15), 50),
    ("R9", "R8", (-0.04, 0.03), 20), ("L9", "L8", (0.04, 0.03), 20),
)  # fmt: skip

_TREES = {"coco": (_COCO_TREE, ("nose", 0.075)), "infant": (_INFANT_TREE, ("M1", 0.08))}
_HEAD_COLOUR = (40, 200, 240)  # BGR; no limb colour comes near it.


@dataclasses.dataclass(frozen=True)
class SyntheticPaths:
    """Where `make_synthetic_coco` wrote its files."""

    root: pathlib.Path
    annotations: pathlib.Path
    image_dir: pathlib.Path
    detections: pathlib.Path | None


def _palette(k: int) -> np.ndarray:
    """(k, 3) uint8 BGR colours, evenly spaced in hue, fully saturated: one per keypoint."""
    hsv = np.stack([np.arange(k) * 170 // k, np.full(k, 255), np.full(k, 230)], -1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]


def _background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: smooth noise, stripes or a linear gradient, muted so figures stand out."""
    h, w = hw
    kind = rng.integers(3)
    if kind == 0:
        coarse = rng.uniform(0, 160, (rng.integers(3, 12), rng.integers(3, 12), 3))
        img = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 8, (h, w, 3))
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, np.pi)
        t = (xx * np.cos(theta) + yy * np.sin(theta)) / max(h, w)
        if kind == 1:
            t = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 12) * t)
        c0, c1 = rng.uniform(0, 160, 3), rng.uniform(0, 160, 3)
        img = c0 + (c1 - c0) * t[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _pose(rng, tree, height: float, origin: np.ndarray, spin_deg: float) -> np.ndarray:
    """(J, 2) joint positions in pixels for one random articulation of a kinematic tree."""
    index = {name: j for j, (name, *_rest) in enumerate(tree)}
    pos = np.zeros((len(tree), 2))
    angle = np.zeros(len(tree))
    for j, (_, parent, offset, spread) in enumerate(tree):
        if parent is None:
            pos[j], angle[j] = origin, np.deg2rad(spin_deg)
            continue
        p = index[parent]
        angle[j] = angle[p] + np.deg2rad(rng.normal(0.0, spread))
        c, s = np.cos(angle[j]), np.sin(angle[j])
        length = height * rng.uniform(0.85, 1.15)
        pos[j] = pos[p] + length * np.array(
            [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]]
        )
    return pos


def _draw_figure(canvas, owner, label, tree, pos, height, colours, head) -> np.ndarray:
    """Draw one figure onto `canvas` and write `label` into `owner` where it shows.

    Returns the figure's own (H, W) bool mask (before anything drawn later covers it).
    """
    mask = np.zeros(owner.shape, np.uint8)
    thick = max(2, int(round(0.035 * height)))
    index = {name: j for j, (name, *_rest) in enumerate(tree)}
    pts = np.round(pos).astype(np.int32)
    head_j, head_r = index[head[0]], max(3, int(round(head[1] * height)))
    head_xy = tuple(map(int, pts[head_j]))
    cv2.circle(canvas, head_xy, head_r, _HEAD_COLOUR, -1, cv2.LINE_AA)
    cv2.circle(mask, head_xy, head_r, 1, -1)
    cv2.circle(owner, head_xy, head_r, label, -1)
    for j, (_, parent, _o, _s) in enumerate(tree):
        if parent is None:
            continue
        a, b = tuple(map(int, pts[index[parent]])), tuple(map(int, pts[j]))
        colour = tuple(int(c) for c in colours[j])
        cv2.line(canvas, a, b, colour, thick, cv2.LINE_AA)
        cv2.line(mask, a, b, 1, thick)
        cv2.line(owner, a, b, label, thick)
    dot = max(1, thick // 2)
    for j, (name, *_rest) in enumerate(tree):
        if not name.startswith("_"):  # joints as dots in their own colour, over the limbs
            cv2.circle(canvas, tuple(map(int, pts[j])), dot, tuple(int(c) for c in colours[j]), -1)
            cv2.circle(owner, tuple(map(int, pts[j])), dot, label, -1)
    return mask.astype(bool)


def rle_from_mask(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a binary mask, as COCO stores iscrowd regions.

    Shapes: mask (H, W) bool -> {"counts": [run lengths, column-major, starting with zeros], "size": [H, W]}.
    """
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"counts": counts, "size": list(mask.shape)}


def _box_of(mask: np.ndarray, margin: float, hw) -> list[float] | None:
    """COCO (x, y, w, h) of a mask's extent grown by `margin` of its size, clipped to the image."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = max(0.0, x0 - mx), max(0.0, y0 - my)
    x1, y1 = min(float(hw[1]), x1 + mx), min(float(hw[0]), y1 + my)
    return [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]


def _make_image(rng, image_id: int, fmt: str, hw, ann_id: int, max_persons: int):
    """One picture and its annotations. Returns (BGR image, annotations, next annotation id)."""
    tree, head = _TREES[fmt]
    names = metainfo.get_format(fmt).keypoint_names
    tree_index = [next(j for j, t in enumerate(tree) if t[0] == n) for n in names]
    colours = _palette(len(tree))
    h, w = hw
    canvas = _background(rng, hw)
    owner = np.zeros(hw, np.uint8)
    anns = []
    if rng.uniform() < 0.3:  # a crowd region: a cluster of small figures, annotated as one RLE
        crowd_mask = np.zeros(hw, bool)
        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        for _ in range(rng.integers(4, 9)):
            size = rng.uniform(0.1, 0.18) * h
            pos = _pose(rng, tree, size, np.array([cx, cy]) + rng.normal(0, 0.08 * h, 2), 0.0)
            crowd_mask |= _draw_figure(canvas, owner, 254, tree, pos, size, colours, head)
        box = _box_of(crowd_mask, 0.0, hw)
        anns.append(dict(id=ann_id, image_id=image_id, category_id=1, iscrowd=1,
                         segmentation=rle_from_mask(crowd_mask), area=float(crowd_mask.sum()),
                         bbox=box, keypoints=[0] * 3 * len(names), num_keypoints=0))  # fmt: skip
        ann_id += 1
    placed, poses, masks = [], [], []
    for p in range(int(rng.integers(1, max_persons + 1))):
        height = rng.uniform(0.35, 0.9) * h
        if placed and rng.uniform() < 0.35:  # overlap a previous person on purpose
            origin = placed[rng.integers(len(placed))] + rng.normal(0, 0.15 * height, 2)
        else:
            origin = np.array([rng.uniform(-0.05 * w, 1.05 * w), rng.uniform(0.3 * h, 1.0 * h)])
        spin = rng.uniform(0, 360) if fmt == "infant" else rng.normal(0, 12)
        pos = _pose(rng, tree, height, origin, spin)
        masks.append(_draw_figure(canvas, owner, p + 1, tree, pos, height, colours, head))
        placed.append(origin)
        poses.append((pos[tree_index], height))
    for _ in range(int(rng.integers(0, 3))):  # occluding patches in a flat colour
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(0.1, 0.3) * w, y0 + rng.uniform(0.1, 0.3) * h
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), colour, -1)
        cv2.rectangle(owner, (int(x0), int(y0)), (int(x1), int(y1)), 255, -1)
    for p, ((kpts, _), mask) in enumerate(zip(poses, masks, strict=True)):
        inside = (
            (kpts[:, 0] >= 0) & (kpts[:, 0] <= w - 1) & (kpts[:, 1] >= 0) & (kpts[:, 1] <= h - 1)
        )
        xi = np.clip(np.round(kpts[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(kpts[:, 1]).astype(int), 0, h - 1)
        shown = owner[yi, xi] == p + 1
        vis = np.where(inside, np.where(shown, 2, 1), 0)
        kp = np.where(inside[:, None], np.round(kpts, 2), 0.0)
        box = _box_of(mask, 0.05, hw)
        if box is None or not inside.any():
            continue
        hull = cv2.convexHull(np.argwhere(mask)[:, ::-1].astype(np.int32)).reshape(-1).tolist()
        if len(hull) < 6:  # a sliver at the border: fall back to the box outline
            x, y, bw, bh = box
            hull = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
        triplets = np.concatenate([kp, vis[:, None]], axis=1).reshape(-1)
        anns.append(dict(id=ann_id, image_id=image_id, category_id=1, iscrowd=0,
                         segmentation=[[float(v) for v in hull]], area=float(mask.sum()), bbox=box,
                         keypoints=[float(v) if i % 3 != 2 else int(v) for i, v in enumerate(triplets)],
                         num_keypoints=int((vis > 0).sum())))  # fmt: skip
        ann_id += 1
    return canvas, anns, ann_id


def _detections(rng, image_id: int, anns: list[dict], hw) -> list[dict]:
    """Detector-style results for one image: jittered true boxes (some missed) and false positives."""
    h, w = hw
    dets = []
    for a in anns:
        if a["iscrowd"] or rng.uniform() < 0.1:
            continue
        x, y, bw, bh = a["bbox"]
        jitter = rng.normal(0, 0.05, 4) * [bw, bh, bw, bh]
        box = [x + jitter[0], y + jitter[1], max(1.0, bw + jitter[2]), max(1.0, bh + jitter[3])]
        dets.append(dict(image_id=image_id, category_id=1, bbox=box, score=rng.uniform(0.5, 1)))
    for _ in range(int(rng.integers(0, 3))):
        bw, bh = rng.uniform(0.05, 0.4) * w, rng.uniform(0.1, 0.6) * h
        box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
        dets.append(dict(image_id=image_id, category_id=1, bbox=box, score=rng.uniform(0.0, 0.5)))
    for d in dets:
        d["bbox"] = [round(float(v), 2) for v in d["bbox"]]
        d["score"] = round(float(d["score"]), 4)
    return dets


def make_synthetic_coco(
    out_dir: str | pathlib.Path,
    *,
    num_images: int,
    fmt: str = "coco",
    seed: int = 0,
    image_hw: tuple[int, int] = (192, 256),
    split: str = "train2017",
    max_persons: int = 4,
    detections: bool = True,
    first_image_id: int = 1,
) -> SyntheticPaths:
    """Write a synthetic COCO-format keypoint set (JPEGs + GT JSON + optional detector JSON).

    Shapes: images (H, W, 3) with image_hw = (H, W); K = 17 for fmt="coco", 21 for fmt="infant".
    The same seed gives byte-identical files: every image draws from its own generator seeded by
    (seed, image index), so the output does not depend on how many images are made.
    """
    kfmt = metainfo.get_format(fmt)
    root = pathlib.Path(out_dir)
    image_dir = root / "images" / split
    ann_dir = root / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    images, anns, dets, ann_id = [], [], [], 1
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        image_id = first_image_id + i
        canvas, image_anns, ann_id = _make_image(rng, image_id, fmt, image_hw, ann_id, max_persons)
        name = f"{image_id:012d}.jpg"
        cv2.imwrite(str(image_dir / name), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=image_id, file_name=name, height=image_hw[0], width=image_hw[1]))
        anns.extend(image_anns)
        if detections:
            dets.extend(_detections(rng, image_id, image_anns, image_hw))
    category = dict(id=1, name="person", supercategory="person",
                    keypoints=list(kfmt.keypoint_names),
                    skeleton=[[a + 1, b + 1] for a, b in kfmt.skeleton])  # fmt: skip
    gt = dict(info=dict(description=f"synthetic {fmt} keypoints, seed {seed}"), licenses=[],
              images=images, annotations=anns, categories=[category])  # fmt: skip
    ann_path = ann_dir / f"person_keypoints_{split}.json"
    ann_path.write_text(json.dumps(gt))
    det_path = None
    if detections:
        det_path = ann_dir / f"detections_{split}.json"
        det_path.write_text(json.dumps(dets))
    return SyntheticPaths(root=root, annotations=ann_path, image_dir=image_dir, detections=det_path)


def write_infant_video(
    path: str | pathlib.Path,
    *,
    frames: int = 96,
    fps: int = 24,
    image_hw: tuple[int, int] = (240, 320),
    seed: int = 0,
) -> pathlib.Path:
    """A synthetic infant video: one 21-keypoint figure moving its limbs over a textured background.

    The limbs swing smoothly between random articulations (a cosine blend of two poses every 2 s)
    while the body drifts and turns slowly: unlabeled frames for masked-image pretraining, and a
    video for the inference app. Writes an H.264 mp4 (MPEG-4 where libx264 is missing) with its
    index at the front, so that a truncated copy still decodes up to the cut. Returns `path`.
    """
    import av  # noqa: PLC0415 - video writing only; the image generator needs no PyAV

    rng = np.random.default_rng(seed)
    tree, head = _TREES["infant"]
    colours = _palette(len(tree))
    background = _background(rng, tuple(image_hw))
    h, w = image_hw
    period = 2 * fps
    keys = [_pose(np.random.default_rng([seed, k]), tree, 1.0, np.zeros(2), 0.0)
            for k in range(frames // period + 2)]  # fmt: skip
    path = pathlib.Path(path)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            k, phase = divmod(t, period)
            blend = 0.5 - 0.5 * np.cos(np.pi * phase / period)
            shape = (1 - blend) * keys[k] + blend * keys[k + 1]  # body heights, root at 0
            turn = np.deg2rad(15 * np.sin(t / 20))
            rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
            origin = np.array(
                [w * (0.5 + 0.08 * np.sin(t / 15)), h * (0.45 + 0.04 * np.cos(t / 11))]
            )
            pose = origin + 0.7 * h * shape @ rot.T
            canvas, owner = background.copy(), np.zeros(image_hw, np.uint8)
            _draw_figure(canvas, owner, 1, tree, pose, 0.7 * h, colours, head)
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m data_pipelines.synthetic OUT_DIR --num-images N --format infant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--format", choices=sorted(metainfo.FORMATS), default="coco")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-hw", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--split", default="train2017")
    parser.add_argument("--max-persons", type=int, default=4)
    parser.add_argument("--no-detections", action="store_true")
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.max_persons < 1 or min(args.image_hw) < 32:
        parser.error("--num-images and --max-persons must be >= 1 and --image-hw at least 32 32")
    paths = make_synthetic_coco(
        args.out_dir, num_images=args.num_images, fmt=args.format, seed=args.seed,
        image_hw=tuple(args.image_hw), split=args.split, max_persons=args.max_persons,
        detections=not args.no_detections,
    )  # fmt: skip
    print(f"annotations: {paths.annotations}\nimages: {paths.image_dir}")
    if paths.detections:
        print(f"detections: {paths.detections}")


if __name__ == "__main__":
    main()
