"""TFDS builders for COCO-format keypoint sets, written as ArrayRecord and read without TensorFlow.

Two builders, registered with TFDS on import:

* `coco_keypoints`: COCO 2017 person keypoints (K = 17) from a local folder (the manual dir);
* `infant_keypoints`: any COCO-format 21-keypoint set (the AggPose infant layout) from a local folder.

Manual dir layout (the same for both):

    <manual_dir>/annotations/person_keypoints_<set>.json       one file per split
    <manual_dir>/images/<set>/...  or  <manual_dir>/<set>/...  the images (file_name is relative to it)

Sets map to TFDS splits as train2017 -> train, val2017 -> validation, test2017 -> test; any other
`<set>` keeps its name. One example per image (its original bytes, never re-encoded) with all of its
persons, so a picture is stored once however many people it shows. The persons are exactly the
records `sources.load_coco_records` makes from the JSON (same filters, box cleaning and order), and
the per-image person counts are stored in the dataset's metadata, so `TfdsPersonSource` indexes
persons without reading the images. Only numpy paths of TFDS are used: `download_and_prepare` with
`file_format="array_record"` and `as_data_source` work with no TensorFlow installed.

Command line:
    python -m data_pipelines.tfds_builders coco_keypoints --manual-dir ~/data/coco --data-dir ~/tfds
"""

import argparse
import functools
import json
import os
import pathlib
import sys

import numpy as np
import tensorflow_datasets as tfds

from aggpose_jax.keypoints import geometry, metainfo
from data_pipelines import sources

_SPLIT_NAMES = {"train2017": "train", "val2017": "validation", "test2017": "test"}
_PREFIX = "person_keypoints_"


def find_splits(manual_dir: str | os.PathLike) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
    """{TFDS split: (annotation JSON, image folder)} for every annotation file in a manual dir."""
    root = pathlib.Path(manual_dir)
    found = {}
    for ann in sorted((root / "annotations").glob(f"{_PREFIX}*.json")):
        image_set = ann.stem[len(_PREFIX) :]
        images = root / "images" / image_set
        images = images if images.is_dir() else root / image_set
        if not images.is_dir():
            raise FileNotFoundError(
                f"{ann}: no image folder {root / 'images' / image_set} or {images}"
            )
        found[_SPLIT_NAMES.get(image_set, image_set)] = (ann, images)
    if not found:
        raise FileNotFoundError(f"no {root / 'annotations' / (_PREFIX + '<set>.json')} found")
    return found


class _KeypointsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared builder: one example per image with the persons of `sources.load_coco_records`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One example per image; persons as in sources.load_coco_records."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place annotations/person_keypoints_<set>.json and the images under images/<set>/ (or "
        "<set>/) in the manual dir."
    )
    FORMAT: metainfo.KeypointFormat
    REQUIRE_AREA: bool

    def _info(self) -> tfds.core.DatasetInfo:
        k = self.FORMAT.num_keypoints
        # float64 as raw bytes: the tf.Example float list would round it to float32.
        tensor = functools.partial(tfds.features.Tensor, encoding=tfds.features.Encoding.BYTES)
        features = tfds.features.FeaturesDict(
            {
                # Stored as the file's bytes; any encoding OpenCV reads.
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format=None),
                "image_id": np.int64,
                "file_name": tfds.features.Text(),
                "height": np.int64,
                "width": np.int64,
                "bbox": tensor(shape=(None, 4), dtype=np.float64),  # cleaned (x, y, w, h)
                "keypoints": tensor(shape=(None, k, 2), dtype=np.float64),
                "visibility": tensor(
                    shape=(None, k), dtype=np.float32
                ),  # min(v, 1), as the records
                "center": tensor(shape=(None, 2), dtype=np.float64),  # for input w / h = 0.75
                "scale": tensor(shape=(None, 2), dtype=np.float64),
                "area": tensor(shape=(None,), dtype=np.float64),
                "score": tensor(shape=(None,), dtype=np.float32),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"COCO-format person keypoints ({self.FORMAT.name}, K = {k}).",
            features=features,
            disable_shuffling=True,  # examples stay in file order, matching the metadata counts
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        splits, meta = {}, {}
        for split, (ann_path, image_root) in find_splits(dl_manager.manual_dir).items():
            records = sources.load_coco_records(
                ann_path, image_root, fmt=self.FORMAT, require_area=self.REQUIRE_AREA
            )
            images = json.loads(pathlib.Path(ann_path).read_text())["images"]
            by_image = {int(im["id"]): [] for im in images}
            for i in range(len(records)):
                by_image[int(records.image_ids[i])].append(i)
            meta[split] = {
                "image_ids": [int(im["id"]) for im in images],
                "person_counts": [len(by_image[int(im["id"])]) for im in images],
            }
            splits[split] = self._generate_examples(images, image_root, records, by_image)
        self.info.metadata["splits"] = meta
        return splits

    def _generate_examples(self, images, image_root, records, by_image):
        k = self.FORMAT.num_keypoints
        for index, im in enumerate(images):
            rows = by_image[int(im["id"])]
            yield (
                index,
                {
                    "image": (pathlib.Path(image_root) / im["file_name"]).read_bytes(),
                    "image_id": int(im["id"]),
                    "file_name": str(im["file_name"]),
                    "height": int(im["height"]),
                    "width": int(im["width"]),
                    "bbox": records.bboxes[rows].reshape(-1, 4),
                    "keypoints": records.keypoints[rows].reshape(-1, k, 2),
                    "visibility": records.visibility[rows].reshape(-1, k),
                    "center": records.centers[rows].reshape(-1, 2),
                    "scale": records.scales[rows].reshape(-1, 2),
                    "area": records.areas[rows].astype(np.float64),
                    "score": records.scores[rows],
                },
            )


class CocoKeypoints(_KeypointsBuilder):
    """COCO 2017 person keypoints (K = 17) from a local copy; persons need area > 0 as in COCO."""

    FORMAT = metainfo.COCO
    REQUIRE_AREA = True


class InfantKeypoints(_KeypointsBuilder):
    """A COCO-format 21-keypoint infant set; the infant loader keeps zero-area persons."""

    FORMAT = metainfo.INFANT
    REQUIRE_AREA = False


def build(
    name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike
) -> tfds.core.DatasetBuilder:
    """Prepare `coco_keypoints` or `infant_keypoints` from a manual dir as ArrayRecord under data_dir.

    Shapes: none. Returns the prepared builder; an already prepared version is reused as is.
    """
    builder = tfds.builder(name, data_dir=os.fspath(data_dir), file_format="array_record")
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    builder.download_and_prepare(download_config=config, file_format="array_record")
    return builder


class TfdsPersonSource:
    """Person records from a prepared keypoint dataset: a grain random-access source.

    Shapes: `source[i]` is the record dict of `sources` (center (2,), scale (2,), keypoints (K, 2),
    visibility (K,), bbox (4,), ...) with "image_bytes" (the encoded image) and "file_name" in place
    of "image_path". center/scale are recomputed from the cleaned box for `input_hw` and `padding`,
    exactly as `sources.load_coco_records` does. `dataset` is a registered name (with `data_dir`)
    or the folder of one prepared version (`<data_dir>/<name>/<version>`).
    """

    def __init__(
        self,
        dataset: str | os.PathLike,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        input_hw: tuple[int, int] = (256, 192),
        padding: float = 1.25,
    ):
        path = pathlib.Path(dataset)
        if (path / "dataset_info.json").is_file():
            builder = tfds.builder_from_directory(path)
        else:
            builder = tfds.builder(str(dataset), data_dir=data_dir and os.fspath(data_dir))
        meta = builder.info.metadata["splits"][split]
        self._images = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
        self._image_ids = np.asarray(meta["image_ids"], np.int64)
        counts = np.asarray(meta["person_counts"], np.int64)
        if len(self._images) != len(counts):
            raise ValueError(
                f"{dataset}/{split}: {len(self._images)} examples, metadata has {len(counts)}"
            )
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._aspect = input_hw[1] / input_hw[0]
        self._padding = padding
        self._num_keypoints = int(builder.info.features["keypoints"].shape[1])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def num_keypoints(self) -> int:
        """K."""
        return self._num_keypoints

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for {len(self)} records")
        i %= len(self)
        j = int(np.searchsorted(self._offsets, i, side="right") - 1)
        p = i - int(self._offsets[j])
        ex = self._images[j]
        if int(ex["image_id"]) != self._image_ids[j]:
            raise ValueError(
                f"example {j} is image {ex['image_id']}, metadata: {self._image_ids[j]}"
            )
        bbox = np.asarray(ex["bbox"][p], np.float64)
        center, scale = geometry.box_to_center_scale(bbox, self._aspect, self._padding)
        name = ex["file_name"]
        return {
            "image_bytes": ex["image"],
            "file_name": name.decode() if isinstance(name, bytes) else str(name),
            "image_id": int(ex["image_id"]),
            "center": center,
            "scale": scale,
            "keypoints": np.asarray(ex["keypoints"][p], np.float64),
            "visibility": np.asarray(ex["visibility"][p], np.float32),
            "score": np.float32(ex["score"][p]),
            "area": np.float32(ex["area"][p]),
            "bbox": bbox,
        }


def main(argv: list[str] | None = None) -> int:
    """Command line: prepare a builder from a manual dir (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Prepare a keypoint TFDS dataset as ArrayRecord.")
    parser.add_argument("name", choices=["coco_keypoints", "infant_keypoints"])
    parser.add_argument("--manual-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.manual_dir):
        print(f"error: {args.manual_dir}: no such folder (the manual dir)", file=sys.stderr)
        return 2
    try:
        builder = build(args.name, args.manual_dir, args.data_dir)
    except (OSError, ValueError) as e:  # a missing manual dir, a malformed annotation file
        print(f"error: {args.manual_dir}: {e}", file=sys.stderr)
        return 2
    for split, info in builder.info.splits.items():
        persons = sum(builder.info.metadata["splits"][split]["person_counts"])
        print(f"{split}: {info.num_examples} images, {persons} persons -> {builder.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
