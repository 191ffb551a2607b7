"""The top-down chains: one person record -> its uint8 RGB crop and heatmap targets, in one pass.

Training (`TopdownTrainExample`), each step a small function of the results dict:

    header (crop.read_header) -> augmentation draws (transforms.draw_augmentation) -> box
    augmentation (half body, scale/rotation, flip: joints and center only) -> affine
    (`crop_affine`) -> region decode (crop.decode_region; the whole image when the jitter needs it)
    -> warp (crop.warp) -> jitter (transforms.colour_jitter_crop, crop.finish_crop) -> cutout
    (transforms.cutout, off unless `AugmentConfig.cutout` > 0) -> targets
    (`generate_targets`, the codec).

`jitter_on="image"` runs the official order instead: decode and flip the whole image, jitter it,
then crop. Evaluation (`TopdownEvalExample`): header -> affine with the record's (c, s) and r = 0
-> region decode -> warp [-> targets]. Both are frozen dataclasses, picklable into grain's worker
processes, with the call signatures `loaders` takes (`TrainExampleFn`, `EvalExampleFn`).
"""

import dataclasses

import numpy as np

from aggpose_jax.keypoints import codecs, geometry, metainfo
from data_pipelines import crop, transforms


def crop_affine(results: dict, input_hw: tuple[int, int]) -> dict:
    """The crop transform T(c, s, r, out=input size) and the joints through it.

    Reads: center (2,), scale (2,), rotation, flipped, pixels_flipped, image_hw, keypoints (K, 2)
    image pixels, visibility (K,). Adds: crop_matrix (2, 3) image -> input pixels, with the mirror
    folded in when the sample is flipped and its pixels are not (the joints already are: a reflection
    of the pixel grid, the same bilinear samples). Changes: keypoints -> input pixels (zeros for
    invisible joints).
    """
    center, scale = results["center"], results["scale"]
    t_in = geometry.affine_transform_matrix(
        center, scale, results.get("rotation", 0.0), output_hw=input_hw
    )
    matrix = t_in
    if results.get("flipped") and not results.get("pixels_flipped"):
        matrix = crop.fold_mirror(t_in, results["image_hw"][1])
    vis = results["visibility"][:, None] > 0
    results["keypoints"] = np.where(vis, geometry.apply_affine(results["keypoints"], t_in), 0.0)
    results["crop_matrix"] = matrix
    return results


def generate_targets(results: dict, codec: codecs.HeatmapCodec) -> dict:
    """Gaussian heatmap targets (`codec.encode`, spec 2.4).

    Reads: keypoints (K, 2) input pixels, visibility (K,). Adds: heatmaps (h, w, K) float32,
    target_weight (K,) float32.
    """
    results["heatmaps"], results["target_weight"] = codec.encode(
        results["keypoints"], results["visibility"]
    )
    return results


@dataclasses.dataclass(frozen=True)
class TopdownTrainExample:
    """(record, rng) -> one training example, the official augmentation (see the module docstring).

    Shapes: record as in `sources`; -> image (h, w, 3) uint8 RGB (normalised on the device:
    `aggpose_jax.models.preprocess`), heatmaps (h', w', K) float32, target_weight (K,),
    keypoints (K, 2) input pixels, visibility (K,), center (2,), scale (2,) float64, rotation,
    flipped, score, image_id. `jitter_on` "crop" (ours) or "image" (the official order). With
    "crop" and `decode_region`, a sample without colour jitter decodes only the crop's source box;
    the jitter's contrast mean needs the whole image, so a jittered sample decodes all of it.
    """

    fmt: metainfo.KeypointFormat
    codec: codecs.HeatmapCodec
    augment: transforms.AugmentConfig = transforms.AugmentConfig()
    jitter_on: str = "crop"
    decode_region: bool = True

    def __post_init__(self):
        if self.jitter_on not in ("crop", "image"):
            raise ValueError(f"jitter_on must be 'crop' or 'image', got {self.jitter_on!r}")

    def __call__(self, record: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        draws = transforms.draw_augmentation(rng, self.augment)
        run = self._official_order if self.jitter_on == "image" else self._one_pass
        results = run(dict(record), draws)
        return {
            "image": results["image"],
            "heatmaps": results["heatmaps"],
            "target_weight": results["target_weight"],
            "keypoints": results["keypoints"].astype(np.float32),
            "visibility": results["visibility"].astype(np.float32),
            "center": results["center"].astype(np.float64),
            "scale": results["scale"].astype(np.float64),
            "rotation": np.float32(results["rotation"]),
            "flipped": np.bool_(results["flipped"]),
            "score": np.float32(record["score"]),
            "image_id": np.int64(record["image_id"]),
        }

    def _augment_box(self, results: dict, draws: transforms.AugmentDraws, flip_pixels: bool):
        in_h, in_w = self.codec.input_hw
        transforms.half_body(results, draws, self.augment, self.fmt, in_w / in_h)
        transforms.scale_rotation(results, draws, self.augment)
        return transforms.flip(results, draws, self.augment, self.fmt, flip_pixels)

    def _one_pass(self, results: dict, draws: transforms.AugmentDraws) -> dict:
        input_hw = self.codec.input_hw
        jitter = transforms.jitter_applies(draws, self.augment)
        crop.read_header(results)
        self._augment_box(results, draws, flip_pixels=False)
        crop_affine(results, input_hw)
        if jitter or not self.decode_region:
            crop.decode_image(results)
        crop.decode_region(results, input_hw)
        if jitter:
            crop.jitter_border(results, input_hw)
        crop.warp(results, input_hw)
        transforms.colour_jitter_crop(results, draws, self.augment)
        crop.finish_crop(results)
        transforms.cutout(results, draws, self.augment)
        return generate_targets(results, self.codec)

    def _official_order(self, results: dict, draws: transforms.AugmentDraws) -> dict:
        input_hw = self.codec.input_hw
        crop.load_image(results, to_rgb=True)
        self._augment_box(results, draws, flip_pixels=True)
        transforms.colour_jitter_image(results, draws, self.augment)
        crop_affine(results, input_hw)
        crop.decode_region(results, input_hw)  # decoded already: only the sample map
        crop.warp(results, input_hw)
        transforms.cutout(results, draws, self.augment)
        return generate_targets(results, self.codec)


@dataclasses.dataclass(frozen=True)
class TopdownEvalExample:
    """record -> one evaluation example: the crop of the record's (c, s) with r = 0, no augmentation.

    Only the crop's source box is decoded (when TurboJPEG is there). Shapes: -> image (h, w, 3)
    uint8 RGB, center (2,), scale (2,) float64, rotation, score, image_id, area; with `with_targets`
    also heatmaps (h', w', K), target_weight (K,), keypoints (K, 2) in input pixels and
    visibility (K,) (for a validation loss on ground-truth boxes).
    """

    codec: codecs.HeatmapCodec
    with_targets: bool = False

    def __call__(self, record: dict) -> dict[str, np.ndarray]:
        input_hw = self.codec.input_hw
        results = crop.read_header(dict(record))
        results.update(rotation=0.0, flipped=False)
        crop_affine(results, input_hw)
        crop.decode_region(results, input_hw)
        crop.warp(results, input_hw)
        out = {
            "image": results["image"],
            "center": np.asarray(record["center"], np.float64),
            "scale": np.asarray(record["scale"], np.float64),
            "rotation": np.float32(0.0),
            "score": np.float32(record["score"]),
            "image_id": np.int64(record["image_id"]),
            "area": np.float32(record["area"]),
        }
        if self.with_targets:
            generate_targets(results, self.codec)
            out.update(
                heatmaps=results["heatmaps"],
                target_weight=results["target_weight"],
                keypoints=results["keypoints"].astype(np.float32),
                visibility=np.asarray(record["visibility"], np.float32),
            )
        return out

    def padding(self, records) -> dict[str, np.ndarray]:
        """The example of a padding slot: zeros, scale 1 (inverse transforms stay finite).

        Shapes as `__call__`'s, with K = records.num_keypoints.
        """
        blank = {
            "image": np.zeros((*self.codec.input_hw, 3), np.uint8),
            "center": np.zeros(2, np.float64),
            "scale": np.ones(2, np.float64),
            "rotation": np.float32(0),
            "score": np.float32(0),
            "image_id": np.int64(-1),
            "area": np.float32(0),
        }
        if self.with_targets:
            k = records.num_keypoints
            blank.update(
                heatmaps=np.zeros((*self.codec.heatmap_hw, k), np.float32),
                target_weight=np.zeros(k, np.float32),
                keypoints=np.zeros((k, 2), np.float32),
                visibility=np.zeros(k, np.float32),
            )
        return blank
