"""Person records from COCO-format keypoint annotations: one record per person box to crop.

A record is a plain dict of numpy values (K = keypoints of the format):

    image_path  str             the image file
    image_id    int             the COCO image id
    center      (2,) float64    box center (cx, cy) in image pixels
    scale       (2,) float64    aspect-fixed, 1.25-padded box size (w, h) / 200
    keypoints   (K, 2) float64  annotated (x, y) in image pixels (zeros for detector boxes)
    visibility  (K,) float32    min(v, 1): 1 for labelled joints, 0 otherwise
    score       float32         detector score (1 for ground-truth boxes)
    area        float32         the annotation's area (ground truth) or box w * h (detections)
    bbox        (4,) float64    the (cleaned, for ground truth) box (x, y, w, h)

`PersonRecords` holds them as stacked arrays and is a random-access source (len + getitem), so
grain's `MapDataset.source` and `DataLoader` take it directly, and it pickles cheaply to workers.
Sources hand out paths (here) or encoded bytes (`image_bytes`: TFDS, video frames), never decoded
pixels: the example function decodes, and for a crop only the region it reads (`crop`).
"""

import dataclasses
import json
import os
import pathlib

import numpy as np

from aggpose_jax.keypoints import geometry, metainfo

SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "sample_data" / "coco_sample"


class AnnotationError(ValueError):
    """A malformed annotation or detection file; the message names the file, the entry and the field."""


@dataclasses.dataclass(frozen=True)
class SamplePaths:
    """Paths of a COCO-layout keypoint set: GT JSON, detector JSON (or None) and image folder."""

    gt_json: pathlib.Path
    det_json: pathlib.Path | None
    image_root: pathlib.Path


def sample_paths() -> SamplePaths:
    """The bundled real COCO val2017 sample (4 images, 14 annotations, 118 detector boxes)."""
    return SamplePaths(
        gt_json=SAMPLE_DIR / "test_coco.json",
        det_json=SAMPLE_DIR / "test_coco_det_AP_H_56.json",
        image_root=SAMPLE_DIR,
    )


def coco_paths(root: str | os.PathLike, split: str, det_json: str | None = None) -> SamplePaths:
    """The standard COCO-2017 layout under `root`; `split` is "train" or "val".

    `<root>/annotations/person_keypoints_<split>2017.json` and `<root>/images/<split>2017/`.
    """
    root = pathlib.Path(root)
    return SamplePaths(
        gt_json=root / "annotations" / f"person_keypoints_{split}2017.json",
        det_json=pathlib.Path(det_json) if det_json else None,
        image_root=root / "images" / f"{split}2017",
    )


@dataclasses.dataclass(frozen=True)
class PersonRecords:
    """N person records as stacked arrays; `records[i]` is the record dict described in the module.

    Shapes: image_paths (N,) str, image_ids (N,) int64, centers (N, 2), scales (N, 2),
    keypoints (N, K, 2), visibility (N, K), scores (N,), areas (N,), bboxes (N, 4).
    """

    image_paths: tuple[str, ...]
    image_ids: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    keypoints: np.ndarray
    visibility: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
    bboxes: np.ndarray

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for {len(self)} records")
        return {
            "image_path": self.image_paths[i],
            "image_id": int(self.image_ids[i]),
            "center": self.centers[i].copy(),
            "scale": self.scales[i].copy(),
            "keypoints": self.keypoints[i].copy(),
            "visibility": self.visibility[i].copy(),
            "score": np.float32(self.scores[i]),
            "area": np.float32(self.areas[i]),
            "bbox": self.bboxes[i].copy(),
        }

    @property
    def num_keypoints(self) -> int:
        """K."""
        return self.keypoints.shape[1]

    @classmethod
    def from_records(cls, records: list[dict], num_keypoints: int) -> "PersonRecords":
        """Stack record dicts (the module's layout) into arrays; an empty list gives N = 0."""
        k = num_keypoints

        def stack(key, shape, dtype):
            if not records:
                return np.zeros((0, *shape), dtype)
            return np.stack([np.asarray(r[key], dtype).reshape(shape) for r in records])

        return cls(
            image_paths=tuple(str(r["image_path"]) for r in records),
            image_ids=stack("image_id", (), np.int64),
            centers=stack("center", (2,), np.float64),
            scales=stack("scale", (2,), np.float64),
            keypoints=stack("keypoints", (k, 2), np.float64),
            visibility=stack("visibility", (k,), np.float32),
            scores=stack("score", (), np.float32),
            areas=stack("area", (), np.float32),
            bboxes=stack("bbox", (4,), np.float64),
        )


def _read_json(path: pathlib.Path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from None


def _field(entry, key: str, where: str, path: pathlib.Path):
    if not isinstance(entry, dict) or key not in entry:
        raise AnnotationError(f"{path}: {where} has no field {key!r}")
    return entry[key]


def _numbers(entry, key: str, length: int, where: str, path: pathlib.Path, why: str = ""):
    value = _field(entry, key, where, path)
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: {where} field {key!r} is not a list of numbers") from None
    if arr.size != length or not np.all(np.isfinite(arr)):
        raise AnnotationError(
            f"{path}: {where} field {key!r} has {arr.size} values"
            f"{' (not all finite)' if arr.size == length else ''}, expected {length}{why}"
        )
    return arr


def _images_table(data, path: pathlib.Path, image_root: pathlib.Path) -> dict:
    images = _field(data, "images", "the top level", path)
    table = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        image_id = int(_field(im, "id", where, path))
        image_hw = (int(_field(im, "height", where, path)), int(_field(im, "width", where, path)))
        name = _field(im, "file_name", where, path)
        table[image_id] = (str(image_root / name), image_hw)
    return table


def load_coco_records(
    gt_json: str | os.PathLike,
    image_root: str | os.PathLike,
    *,
    fmt: metainfo.KeypointFormat = metainfo.COCO,
    input_hw: tuple[int, int] = (256, 192),
    det_json: str | os.PathLike | None = None,
    det_score_threshold: float = 0.0,
    require_area: bool = True,
    category_id: int = 1,
    padding: float = 1.25,
) -> PersonRecords:
    """Person records from a COCO-format keypoint file, from its boxes or from a detector's.

    Shapes: -> PersonRecords of N persons with K = fmt.num_keypoints.

    Ground truth: non-crowd annotations of `category_id`, box cleaned as the official loaders do
    (`require_area`: also need the annotation's area > 0, as the COCO loader does; the infant loader
    does not), all-zero keypoint arrays dropped, v = min(v, 1), score 1. With `det_json`: its boxes of
    `category_id` with score >= `det_score_threshold` (no cleaning, as the official), zero keypoints,
    the detector score. Both: center/scale with pixel_std 200, `padding`, aspect = input w / h.
    Images and annotations keep their file order. Raises AnnotationError naming the file, the entry
    and the field for a malformed file, including a keypoint count that disagrees with `fmt`.
    """
    gt_json, image_root = pathlib.Path(gt_json), pathlib.Path(image_root)
    k = fmt.num_keypoints
    aspect = input_hw[1] / input_hw[0]
    data = _read_json(gt_json)
    images = _images_table(data, gt_json, image_root)
    records = []
    if det_json is not None:
        det_json = pathlib.Path(det_json)
        dets = _read_json(det_json)
        if not isinstance(dets, list):
            raise AnnotationError(f"{det_json}: expected a list of detections")
        for i, det in enumerate(dets):
            where = f"detection [{i}]"
            if int(_field(det, "category_id", where, det_json)) != category_id:
                continue
            score = float(_field(det, "score", where, det_json))
            if score < det_score_threshold:
                continue
            image_id = int(_field(det, "image_id", where, det_json))
            if image_id not in images:
                raise AnnotationError(
                    f"{det_json}: {where} field 'image_id' = {image_id} is not an image of {gt_json}"
                )
            box = _numbers(det, "bbox", 4, where, det_json)
            center, scale = geometry.box_to_center_scale(box, aspect, padding)
            records.append(
                {
                    "image_path": images[image_id][0], "image_id": image_id, "center": center,
                    "scale": scale, "keypoints": np.zeros((k, 2)), "visibility": np.zeros(k),
                    "score": score, "area": box[2] * box[3], "bbox": box,
                }
            )  # fmt: skip
        return PersonRecords.from_records(records, k)

    by_image = {image_id: [] for image_id in images}
    for i, ann in enumerate(_field(data, "annotations", "the top level", gt_json)):
        where = f"annotation id {ann.get('id', '?') if isinstance(ann, dict) else '?'} (index {i})"
        if int(_field(ann, "category_id", where, gt_json)) != category_id:
            continue
        if ann.get("iscrowd", 0):
            continue
        image_id = int(_field(ann, "image_id", where, gt_json))
        if image_id not in by_image:
            raise AnnotationError(f"{gt_json}: {where} field 'image_id' = {image_id} has no image")
        by_image[image_id].append((where, ann))

    for image_id, anns in by_image.items():
        image_path, image_hw = images[image_id]
        for where, ann in anns:
            kps = _numbers(
                ann, "keypoints", 3 * k, where, gt_json,
                why=f" ({k} keypoints x 3 for the {fmt.name!r} format)",
            )  # fmt: skip
            box = _numbers(ann, "bbox", 4, where, gt_json)
            if require_area and float(_field(ann, "area", where, gt_json)) <= 0:
                continue
            # The official COCO loader tests the annotation's `area` field, not the clean box area.
            clean = geometry.clean_box(box, image_hw=image_hw)
            if clean is None or not np.any(kps):
                continue
            kps = kps.reshape(k, 3)
            center, scale = geometry.box_to_center_scale(clean, aspect, padding)
            records.append(
                {
                    "image_path": image_path, "image_id": image_id, "center": center,
                    "scale": scale, "keypoints": kps[:, :2], "visibility": np.minimum(kps[:, 2], 1),
                    "score": 1.0, "area": float(ann.get("area", clean[2] * clean[3])), "bbox": clean,
                }
            )  # fmt: skip
    return PersonRecords.from_records(records, k)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageFolderSource:
    """Every image file under a folder (recursive, sorted by path): unlabeled images for pretraining.

    `source[i]` = {"image_path": str}; the chains read the file (crop.load_image), so an unreadable
    file is a skipped record that names it. Raises FileNotFoundError for a folder without images.
    """

    def __init__(self, folder: str | os.PathLike):
        root = pathlib.Path(folder)
        self.paths = sorted(
            str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"image_path": self.paths[int(index)]}


@dataclasses.dataclass(frozen=True)
class Subset:
    """The records of `source` at `indices`, in that order (a train / held-out split)."""

    source: object
    indices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.source[self.indices[int(index)]]
