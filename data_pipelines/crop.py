"""The pixel steps of the top-down chains: read the file, decode what the warp reads, warp, finish.

Steps on the results dict of `topdown` (each docstring lists the keys it reads, changes, adds), in
chain order: `read_header` reads the file and its size (a JPEG header, nothing decoded);
`decode_region` decodes just the bounding box of the warp's source quadrilateral (`jpeg.decode`
with a box, libjpeg-turbo's region decoding) unless a step before it decoded the whole image
(`decode_image`); `jitter_border` keeps what a colour jitter on the crop needs from the whole
image; `warp` crops; `finish_crop` applies the pixel work still pending. Without libturbojpeg 3, or
for a non-JPEG file, the whole image is decoded with OpenCV: same pixels, slower. Sizes are
(height, width).
"""

import functools

import cv2
import numpy as np

from aggpose_jax.keypoints import geometry
from data_pipelines import jpeg

# The contrast mean on the full image is estimated from every 4th row and column (1/16 of the pixels).
MEAN_SUBSAMPLE_STRIDE = 4


class ImageReadError(OSError):
    """An image that is missing or cannot be decoded; the message names the file."""


def record_name(record: dict) -> str:
    """The image a record points at, for messages: its path, else its file name."""
    return str(record.get("image_path") or record.get("file_name") or "<unnamed image>")


def _cv2_decode(results: dict, to_rgb: bool) -> dict:
    buf = results["image_buffer"]
    image = (
        cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    )
    if image is None:
        raise ImageReadError(f"cannot decode image {record_name(results)} ({buf.size} bytes)")
    if to_rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    results.update(image=image, image_hw=image.shape[:2], image_is_bgr=not to_rgb)
    return results


def read_header(results: dict) -> dict:
    """Reads the encoded file and the image size, decoding nothing when it is a JPEG.

    Reads: image_bytes (the encoded file, when the source holds it) or image_path.
    Adds: image_buffer (N,) uint8, image_hw (H, W); for a file TurboJPEG cannot read, also the
    decoded image (see `decode_image`). Raises ImageReadError naming the file when it is missing.
    """
    if results.get("image_bytes") is not None:
        buf = np.frombuffer(results["image_bytes"], dtype=np.uint8)
    else:
        try:
            buf = np.fromfile(results["image_path"], dtype=np.uint8)
        except OSError as e:
            why = e.strerror or e
            raise ImageReadError(f"cannot read image {record_name(results)}: {why}") from None
    results["image_buffer"] = buf
    if jpeg.available() and jpeg.is_jpeg(buf):
        try:
            width, height, _ = jpeg.header(buf)
            results["image_hw"] = (height, width)
            return results
        except jpeg.JpegError:
            pass
    return _cv2_decode(results, to_rgb=False)


def decode_image(results: dict, to_rgb: bool = False) -> dict:
    """Decodes the whole image (BGR; RGB with `to_rgb`) unless it already is.

    Reads: image_buffer. Adds: image (H, W, 3) uint8, image_hw (H, W), image_is_bgr.
    Raises ImageReadError naming the file when it cannot be decoded.
    """
    if "image" in results:
        if to_rgb and results["image_is_bgr"]:
            results["image"] = cv2.cvtColor(results["image"], cv2.COLOR_BGR2RGB)
            results["image_is_bgr"] = False
        return results
    buf = results["image_buffer"]
    if jpeg.available() and jpeg.is_jpeg(buf):
        try:
            image, _ = jpeg.decode(buf, rgb=True)
            results.update(image=image, image_is_bgr=False)
            return results
        except jpeg.JpegError:
            pass
    return _cv2_decode(results, to_rgb)


def load_image(results: dict, to_rgb: bool = False) -> dict:
    """`read_header` then `decode_image`: the whole image, BGR (RGB with `to_rgb`) or already RGB.

    Reads: image_bytes or image_path. Adds: image_buffer, image (H, W, 3) uint8, image_hw (H, W),
    image_is_bgr (the channel order is swapped later, on the crop, when it is BGR).
    """
    return decode_image(read_header(results), to_rgb)


def fold_mirror(matrix: np.ndarray, image_w: int) -> np.ndarray:
    """T composed with the mirror x -> W - 1 - x: (2, 3) -> (2, 3)."""
    t = matrix.copy()
    t[:, 2] += t[:, 0] * (image_w - 1)
    t[:, 0] = -t[:, 0]
    return t


def _source_corners(matrix: np.ndarray, output_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) source points of the output rectangle's corner pixels."""
    h, w = output_hw
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
    return geometry.apply_affine(corners, geometry.invert_affine(matrix))


def source_box(
    matrix: np.ndarray, output_hw: tuple[int, int], margin: int = jpeg.REGION_MARGIN
) -> tuple[int, int, int, int]:
    """The source pixels a bilinear warp reads: (x0, y0, x1, y1), ends exclusive, not clipped.

    Shapes: matrix (2, 3) source -> output. Every output pixel samples inside the bounding box of the
    output corners' source points; bilinear reads floor(p) and floor(p) + 1; `margin` more pixels
    on each side keep chroma upsampling at the box's edge away from them.
    """
    src = _source_corners(matrix, output_hw)
    lo = np.floor(src.min(axis=0)).astype(int) - margin
    hi = np.floor(src.max(axis=0)).astype(int) + 2 + margin
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


def _crop_inside(matrix: np.ndarray, output_hw: tuple[int, int], image_hw: tuple[int, int]) -> bool:
    """Whether every output pixel samples inside the image (its four neighbours, with a margin)."""
    src = _source_corners(matrix, output_hw)
    return bool(
        np.all(src >= 1.0)
        and np.all(src[:, 0] <= image_hw[1] - 2)
        and np.all(src[:, 1] <= image_hw[0] - 2)
    )


def decode_region(results: dict, output_hw: tuple[int, int]) -> dict:
    """Decodes the pixels the warp reads, unless the whole image is there already.

    Reads: crop_matrix (2, 3) image -> output pixels, image_buffer, image_hw, image (if decoded).
    Adds: image (when absent: the source box, RGB, or the whole image when TurboJPEG cannot read
    it), image_is_bgr, sample_matrix (2, 3) output -> pixels of `image` (cv2's WARP_INVERSE_MAP).
    """
    inverse = cv2.invertAffineTransform(results["crop_matrix"])
    results["sample_matrix"] = inverse
    if "image" in results:
        return results
    x0, y0, x1, y1 = source_box(results["crop_matrix"], output_hw)
    height, width = results["image_hw"]
    inside = x1 > 0 and y1 > 0 and x0 < width and y0 < height
    if inside and jpeg.available() and jpeg.is_jpeg(results["image_buffer"]):
        try:
            image, (ox, oy) = jpeg.decode(results["image_buffer"], (x0, y0, x1, y1), rgb=True)
        except jpeg.JpegError:
            pass
        else:
            results.update(image=image, image_is_bgr=False)
            # Shifting the inverse map's translation by the box's origin (an integer) moves every
            # sample position by exactly that, so cv2's 1/32-pixel rounding sees the same fractions.
            inverse[:, 2] -= (ox, oy)
            return results
    return decode_image(results)


@functools.lru_cache(maxsize=8)
def _full_mask(height: int, width: int) -> np.ndarray:
    mask = np.full((height, width), 255, np.uint8)
    mask.flags.writeable = False
    return mask


def jitter_border(results: dict, output_hw: tuple[int, int]) -> dict:
    """What a per-pixel colour op after the warp needs from the whole image (decoded already).

    Reads: image (H, W, 3) uint8, image_is_bgr, image_hw, crop_matrix. Adds: full_subsample
    (h', w', 3) uint8 RGB, every 4th pixel of the full image (the contrast mean); when the crop
    leaves the image, border_alpha (h, w) uint8, the weight of the image in each output pixel under
    a constant-0 border: `warp` then replicates edges and `finish_crop` re-borders the crop as a
    warp of the jittered image would be.
    """
    matrix, image_hw = results["crop_matrix"], results["image_hw"]
    if not _crop_inside(matrix, output_hw, image_hw):
        results["border_alpha"] = cv2.warpAffine(
            _full_mask(*image_hw), matrix, output_hw[::-1], flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )  # fmt: skip
    s = MEAN_SUBSAMPLE_STRIDE
    sub = np.ascontiguousarray(results["image"][::s, ::s])
    results["full_subsample"] = (
        cv2.cvtColor(sub, cv2.COLOR_BGR2RGB) if results["image_is_bgr"] else sub
    )
    return results


def warp(results: dict, output_hw: tuple[int, int]) -> dict:
    """The crop: cv2.warpAffine, bilinear, constant-0 border (replicated under border_alpha); RGB out.

    Reads: image, image_is_bgr, sample_matrix, border_alpha (if any).
    Changes: image -> (h, w, 3) uint8 RGB crop, image_is_bgr -> False.
    """
    border = cv2.BORDER_REPLICATE if "border_alpha" in results else cv2.BORDER_CONSTANT
    crop = cv2.warpAffine(
        results["image"], results["sample_matrix"], output_hw[::-1],
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border,
    )  # fmt: skip
    if results["image_is_bgr"]:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    results.update(image=crop, image_is_bgr=False)
    return results


def finish_crop(results: dict) -> dict:
    """Applies what the crop still owes its pixels; the result is the uint8 RGB the device normalises.

    Reads: image (h, w, 3) uint8 RGB, pending_lut, border_alpha. Changes: image (h, w, 3) uint8 RGB.
    The pending jitter table is applied (one cv2.LUT); with border_alpha a (0..255), a pixel first
    becomes round(v * a / 255): the image's share of it under a constant-0 border. Normalisation,
    (v / 255 - mean) / std, is the jitted step's (`aggpose_jax.models.preprocess`).
    """
    image = results["image"]
    table = results.pop("pending_lut", None)
    alpha = results.pop("border_alpha", None)
    if alpha is not None:
        if table is not None:
            image, table = cv2.LUT(image, table), None
        image = cv2.multiply(image, cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB), scale=1.0 / 255.0)
    results["image"] = image if table is None else cv2.LUT(image, table)
    return results
