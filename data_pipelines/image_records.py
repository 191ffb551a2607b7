"""Image records for bottom-up pose: one record per image, with all its people and ignore regions.

A record is a plain dict (K = keypoints of the format, P = people with labelled keypoints):

    image_path  str               the image file
    image_id    int               the COCO image id
    image_hw    (2,) int64        (H, W) from the annotation file
    keypoints   (P, K, 3) float64 x, y in image pixels and the COCO visibility 0/1/2
    ignore      tuple             COCO segmentations (polygon lists or RLE dicts) of the regions
                                  whose pixels carry no loss: crowd annotations (iscrowd = 1) and
                                  people annotated without keypoints (num_keypoints = 0)

`ImageRecords` is a random-access source (len + getitem) for `loaders`, picklable to workers.
`ignore_mask` rasterises a record's ignore regions with pycocotools' mask API: this is why it lives
in data_pipelines and not in aggpose_jax.keypoints (numpy only).
"""

import collections
import dataclasses
import json
import pathlib

import numpy as np
from pycocotools import mask as mask_api

from aggpose_jax.keypoints import metainfo


@dataclasses.dataclass(frozen=True)
class ImageRecords:
    """N image records (the module's layout); `records[i]` is a fresh dict."""

    rows: tuple[dict, ...]
    num_keypoints: int

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for {len(self)} records")
        row = self.rows[i]
        return dict(row, keypoints=row["keypoints"].copy(), image_hw=row["image_hw"].copy())

    @property
    def image_ids(self) -> np.ndarray:
        """(N,) int64 image ids in record order."""
        return np.array([r["image_id"] for r in self.rows], np.int64)


def load_coco_images(
    gt_json: str | pathlib.Path,
    image_root: str | pathlib.Path,
    *,
    fmt: metainfo.KeypointFormat,
    require_people: bool = False,
) -> ImageRecords:
    """The images of a COCO-format keypoint file, each with its people and ignore regions.

    Shapes: -> N records of the module's layout (keypoints (P, K, 3) per image, K = fmt's).
    `require_people` keeps only images with at least one labelled person (training); evaluation
    keeps every image of the file (a picture without people still scores false positives).
    Raises ValueError when an annotation's keypoint count disagrees with the format.
    """
    path = pathlib.Path(gt_json)
    with open(path) as f:
        data = json.load(f)
    k = fmt.num_keypoints
    people = collections.defaultdict(list)
    ignore = collections.defaultdict(list)
    for ann in data.get("annotations", []):
        kps = np.asarray(ann.get("keypoints") or [0.0] * 3 * k, np.float64)
        if kps.size != 3 * k:
            raise ValueError(
                f"{path}: annotation {ann.get('id')} has {kps.size // 3} keypoints, the format "
                f"{fmt.name!r} has {k}"
            )
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", int((kps[2::3] > 0).sum())) == 0:
            if ann.get("segmentation"):
                ignore[ann["image_id"]].append(ann["segmentation"])
            continue
        people[ann["image_id"]].append(kps.reshape(k, 3))
    rows = []
    for image in data["images"]:
        image_id = image["id"]
        if require_people and not people[image_id]:
            continue
        rows.append({
            "image_path": str(pathlib.Path(image_root) / image["file_name"]),
            "image_id": int(image_id),
            "image_hw": np.array([image["height"], image["width"]], np.int64),
            "keypoints": np.stack(people[image_id]) if people[image_id] else np.zeros((0, k, 3)),
            "ignore": tuple(ignore[image_id]),
        })  # fmt: skip
    return ImageRecords(rows=tuple(rows), num_keypoints=k)


def ignore_mask(segmentations, *, image_hw: tuple[int, int]) -> np.ndarray:
    """The union of COCO segmentations as a mask. Shapes: -> (H, W) uint8, 1 inside a region.

    Takes polygon lists, uncompressed RLE (counts as a list, as COCO stores crowds) and compressed
    RLE, through pycocotools' `frPyObjects` / `merge` / `decode`.
    """
    h, w = (int(v) for v in image_hw)
    if not segmentations:
        return np.zeros((h, w), np.uint8)
    rles = []
    for seg in segmentations:
        if isinstance(seg, dict) and not isinstance(seg["counts"], list):
            rles.append(seg)  # compressed RLE already
            continue
        obj = mask_api.frPyObjects(seg, h, w)
        rles.extend(obj if isinstance(obj, list) else [obj])
    return mask_api.decode(mask_api.merge(rles))
