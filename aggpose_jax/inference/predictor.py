"""The predictor: a model, its weights and its format, called on an image and person boxes.

    predictor = Predictor.from_workdir("workdirs/quickstart")            # a run's config and best/
    predictor = Predictor.from_params("aggpose_l_coco.msgpack", model="aggpose_l",
                                      keypoint_format="coco")            # a converted checkpoint
    predictor = Predictor.from_exported("exported/")                     # no model code (export.py)
    persons = predictor(image_rgb, boxes=None)                           # -> evaluation.Persons

Each box becomes a top-down crop (the evaluator's center/scale and warp), the crops go through one
jitted predict in padded power-of-two batches (`predict_fn`), and the keypoints come back in image
pixels. On accelerators the model runs in bfloat16 (its `dtype` option).
"""

import dataclasses
import pathlib

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aggpose_jax.evaluation.persons import Persons
from aggpose_jax.inference import checkpoint
from aggpose_jax.inference.predict_fn import ModelSpec, PredictFn, make_predict_fn, run_batched
from aggpose_jax.keypoints import geometry, metainfo
from aggpose_jax.models import build, convert


def whole_image_box(image_hw: tuple[int, int]) -> np.ndarray:
    """The box of the whole frame. Shapes: -> (1, 4) COCO (x, y, w, h)."""
    return np.array([[0.0, 0.0, float(image_hw[1]), float(image_hw[0])]])


def crop_persons(
    image_rgb: np.ndarray, centers: np.ndarray, scales: np.ndarray, input_hw: tuple[int, int]
) -> np.ndarray:
    """The evaluator's top-down crops (data_pipelines.topdown with r = 0, cv2's inverse-map warp).

    Shapes: image_rgb (H, W, 3) uint8, centers (N, 2), scales (N, 2) -> (N, h, w, 3) uint8.
    """
    out = np.zeros((len(centers), *input_hw, 3), np.uint8)
    for i, (c, s) in enumerate(zip(centers, scales, strict=True)):
        matrix = geometry.affine_transform_matrix(c, s, 0.0, output_hw=input_hw)
        out[i] = cv2.warpAffine(
            image_rgb, cv2.invertAffineTransform(matrix), input_hw[::-1],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
        )  # fmt: skip
    return out


def fit_variables(fresh, loaded, source: str, spec: ModelSpec):
    """`loaded` in the layout of `fresh` (the model's abstract variables), every leaf checked.

    Raises ValueError naming the file and the model (with its keypoint count) when a leaf is missing
    or of another shape: a params file of another model or keypoint format.
    """
    loaded = convert.unstack_block_groups(loaded)
    if convert.has_scanned_groups(fresh):
        loaded = convert.stack_block_groups(loaded)
    flat_loaded = traverse_util.flatten_dict(loaded, sep="/")
    problems, out = [], {}
    for name, leaf in traverse_util.flatten_dict(fresh, sep="/").items():
        got = flat_loaded.get(name)
        if got is None or tuple(np.shape(got)) != tuple(leaf.shape):
            problems.append(f"{name}: file {None if got is None else tuple(np.shape(got))}, "
                            f"model {tuple(leaf.shape)}")  # fmt: skip
        else:
            out[name] = np.asarray(got, leaf.dtype)
    if problems:
        raise ValueError(
            f"{source} does not fit model {spec.name} with {spec.fmt.num_keypoints} "
            f"{spec.fmt.name} keypoints ({len(problems)} tensors differ, e.g. {problems[0]})"
        )
    return traverse_util.unflatten_dict(out, sep="/")


def load_model(spec: ModelSpec, variables_source: str) -> tuple[nn.Module, dict]:
    """The model of `spec` and its variables from a run folder or weights file, on the device.

    On accelerators the model computes in bfloat16 (its family's `dtype` option).
    """
    family, variant = build.split_name(spec.name)
    options = dict(spec.options)
    if jax.default_backend() != "cpu" and "dtype" in build.family_module(family).OPTIONS:
        options["dtype"] = "bfloat16"
    out_channels = {"heatmaps": spec.fmt.num_keypoints}
    model = build.make_model(family, variant, out_channels=out_channels, **options)
    image = jnp.zeros((1, *spec.input_hw, 3), jnp.float32)
    fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False))
    loaded = checkpoint.read_variables(variables_source)
    return model, jax.device_put(fit_variables(fresh, loaded, str(variables_source), spec))


def spec_from_workdir(run_dir: str | pathlib.Path) -> ModelSpec:
    """A training run's model, format, crop and heatmap sizes, decode and flip test."""
    c = checkpoint.read_run_config(run_dir)
    return ModelSpec(
        name=f"{c['model']['family']}_{c['model']['variant']}",
        fmt=metainfo.get_format(c["data"]["keypoint_format"]),
        input_hw=tuple(c["data"]["input_hw"]), heatmap_hw=tuple(c["data"]["heatmap_hw"]),
        decode=c["task"]["decode"], flip_test=bool(c["eval"]["flip_test"]),
        flip_shift=bool(c["task"]["flip_shift"]), options=dict(c["model"]["options"]),
    )  # fmt: skip


def spec_for_params(model: str, keypoint_format: str = "coco", input_hw=(256, 192),
                    flip_test: bool = True) -> ModelSpec:  # fmt: skip
    """The spec of a weights file for `model` ("aggpose_l"): the family's default options
    (unrolled blocks), heatmaps a quarter of the crop, DARK decoding."""
    family, _ = build.split_name(model)
    options = dict(build.family_module(family).OPTIONS)
    if "scan_blocks" in options:
        options["scan_blocks"] = False
    hw = (int(input_hw[0]), int(input_hw[1]))
    return ModelSpec(
        name=model, fmt=metainfo.get_format(keypoint_format), input_hw=hw,
        heatmap_hw=(hw[0] // 4, hw[1] // 4), flip_test=flip_test, options=options,
    )  # fmt: skip


@dataclasses.dataclass
class Predictor:
    """Top-down keypoints of the persons in an image (see the module docstring).

    predict_crops: crops (B, H, W, 3) uint8 -> (coords (B, K, 2) heatmap pixels, scores (B, K));
    max_batch: the largest batch one call of predict_crops gets.
    """

    spec: ModelSpec
    predict_crops: PredictFn
    max_batch: int = 32

    @classmethod
    def from_model(cls, spec: ModelSpec, variables_source: str, max_batch: int = 32) -> "Predictor":
        """The model of `spec` with the weights at `variables_source` (a run folder or a file)."""
        model, variables = load_model(spec, variables_source)
        jitted = jax.jit(make_predict_fn(model, spec))
        return cls(spec, lambda crops: jitted(variables, crops), max_batch)

    @classmethod
    def from_workdir(cls, run_dir: str | pathlib.Path, max_batch: int = 32) -> "Predictor":
        """A training run's model, format, crop size, decode and flip test, and its best weights."""
        spec = spec_from_workdir(run_dir)
        return cls.from_model(spec, str(run_dir), max_batch)

    @classmethod
    def from_params(
        cls,
        path: str | pathlib.Path,
        *,
        model: str,
        keypoint_format: str = "coco",
        input_hw: tuple[int, int] = (256, 192),
        flip_test: bool = True,
        max_batch: int = 32,
    ) -> "Predictor":
        """A weights file (converted official checkpoint, msgpack) for `model` ("aggpose_l")."""
        if not pathlib.Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such params file")
        spec = spec_for_params(model, keypoint_format, input_hw, flip_test)
        return cls.from_model(spec, str(path), max_batch)

    @classmethod
    def from_exported(
        cls, exported_dir: str | pathlib.Path, *, runtime: str = "stablehlo", max_batch: int = 32
    ) -> "Predictor":
        """An exported model (`inference.export`), without the model's code: its StableHLO
        (runtime "stablehlo", through jax) or its ONNX model ("onnx", through onnxruntime)."""
        from aggpose_jax.inference import export

        spec, fn = export.load_exported(exported_dir, runtime)
        return cls(spec, fn, max_batch)

    def predict_boxes(
        self, image_rgb: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray | None = None
    ) -> Persons:
        """Persons of the boxes. Shapes: image_rgb (H, W, 3) uint8, boxes (N, 4) COCO (x, y, w, h),
        box_scores (N,) or None (ones) -> Persons with N rows, image_ids 0 (the caller sets them)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        aspect = self.spec.input_hw[1] / self.spec.input_hw[0]
        centers, scales = geometry.box_to_center_scale(boxes, aspect)
        return self.predict_centers(image_rgb, centers, scales, box_scores)

    def predict_centers(self, image_rgb, centers, scales, box_scores=None) -> Persons:
        """Persons of crops in the official center/scale form. Shapes: centers, scales (N, 2)."""
        n, k = len(centers), self.spec.fmt.num_keypoints
        box_scores = np.ones(n) if box_scores is None else np.asarray(box_scores, np.float64)
        if n == 0:
            coords, scores = np.zeros((0, k, 2)), np.zeros((0, k))
        else:
            crops = crop_persons(image_rgb, centers, scales, self.spec.input_hw)
            coords, scores = run_batched(self.predict_crops, crops, self.max_batch)
        keypoints = geometry.output_to_image_coords(
            coords, centers, scales, output_hw=self.spec.heatmap_hw
        )
        return Persons(
            image_ids=np.zeros(n, np.int64), keypoints=keypoints,
            keypoint_scores=np.asarray(scores, np.float64), box_scores=box_scores,
            areas=np.prod(np.asarray(scales) * geometry.PIXEL_STD, axis=-1),
            centers=np.asarray(centers, np.float64), scales=np.asarray(scales, np.float64),
            record_indices=np.arange(n, dtype=np.int64),
        )  # fmt: skip

    def __call__(self, image_rgb: np.ndarray, boxes: np.ndarray | None = None) -> Persons:
        """Persons in one image. Shapes: image_rgb (H, W, 3) uint8 RGB, boxes (N, 4) COCO (x, y,
        w, h) or None (the whole image, one person) -> Persons (N or 1 rows)."""
        if boxes is None:
            boxes = whole_image_box(image_rgb.shape[:2])
        return self.predict_boxes(image_rgb, boxes)
