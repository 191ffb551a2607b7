"""JPEG decoding of a region through libjpeg-turbo's TurboJPEG 3 API.

The training crop needs only the source pixels under its warp, a box known before decoding. TurboJPEG
3 decodes such a box (`tj3SetCroppingRegion`: rows above it are entropy-decoded but not
reconstructed, rows below it are not read, columns outside it skip the inverse DCT and colour
conversion).

The library comes from the `turbojpeg` wheel on PyPI, which bundles libturbojpeg 3 (we call its C
API through ctypes, not the wheel's own bindings), or a system libturbojpeg with the 3.x API. When
neither is there, `available()` is False and callers decode whole images with OpenCV.

Pixels: a region decoded here equals the same pixels of a whole-image decode (OpenCV's
`cv2.imdecode`, also libjpeg-turbo with the accurate integer DCT and smooth chroma upsampling) away
from the region's edge; at the edge, chroma upsampling lacks its neighbours, so callers ask for a
margin of `REGION_MARGIN` pixels around what they use (tested).
"""

import ctypes
import ctypes.util
import functools
import importlib.util
import logging
import pathlib
import threading

import numpy as np

log = logging.getLogger(__name__)

# Pixels decoded around the region a caller uses: two chroma MCUs of 4:2:0 (16 px) hold the
# upsampling context of the used pixels.
REGION_MARGIN = 16

_TJINIT_DECOMPRESS = 1
_TJPF_RGB, _TJPF_BGR = 0, 1
_TJPARAM_SUBSAMP, _TJPARAM_JPEGWIDTH, _TJPARAM_JPEGHEIGHT = 4, 5, 6
# iMCU width per TJSAMP (444, 422, 420, GRAY, 440, 411, 441): a region's left edge is a multiple.
_MCU_WIDTH = (8, 16, 16, 8, 8, 32, 8)


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class JpegError(ValueError):
    """TurboJPEG could not read the buffer (callers fall back to OpenCV)."""


def _candidate_paths() -> list[str]:
    paths = []
    spec = importlib.util.find_spec("turbojpeg")
    if spec is not None and spec.origin:
        libs = pathlib.Path(spec.origin).parent / "turbojpeg.libs"
        paths += sorted(str(p) for p in libs.glob("libturbojpeg*.so*"))
    system = ctypes.util.find_library("turbojpeg")
    if system:
        paths.append(system)
    return paths


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
            lib.tj3SetCroppingRegion  # noqa: B018 -- the 3.x API, absent from libturbojpeg 2
        except (OSError, AttributeError):
            continue
        lib.tj3Init.restype = ctypes.c_void_p
        lib.tj3Init.argtypes = [ctypes.c_int]
        lib.tj3Destroy.argtypes = [ctypes.c_void_p]
        lib.tj3GetErrorStr.restype = ctypes.c_char_p
        lib.tj3GetErrorStr.argtypes = [ctypes.c_void_p]
        lib.tj3DecompressHeader.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.tj3Get.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.tj3SetCroppingRegion.argtypes = [ctypes.c_void_p, _Region]
        lib.tj3Decompress8.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_int,
        ]  # fmt: skip
        return lib
    log.info("libturbojpeg 3 not found (pip install turbojpeg): decoding whole JPEGs with OpenCV")
    return None


def available() -> bool:
    """Whether region decoding is available (libturbojpeg 3 was found)."""
    return _library() is not None


class _Handle(threading.local):
    """One decompressor per thread (TurboJPEG handles are not thread-safe); freed at exit."""

    def get(self, lib: ctypes.CDLL) -> int:
        if getattr(self, "ptr", None) is None:
            self.ptr = lib.tj3Init(_TJINIT_DECOMPRESS)
            if not self.ptr:
                raise JpegError("tj3Init failed")
        return self.ptr


_HANDLE = _Handle()


def is_jpeg(buf: np.ndarray) -> bool:
    """Whether a (N,) uint8 buffer starts with the JPEG SOI marker."""
    return buf.size > 3 and buf[0] == 0xFF and buf[1] == 0xD8


def _check(lib: ctypes.CDLL, handle: int, status: int, what: str) -> None:
    # Warnings (a truncated file, a corrupt segment) also return -1: they count as failures, as
    # OpenCV refuses such files too.
    if status != 0:
        raise JpegError(f"{what}: {lib.tj3GetErrorStr(handle).decode(errors='replace')}")


def header(buf: np.ndarray) -> tuple[int, int, int]:
    """(width, height, TJSAMP chroma subsampling) of a JPEG in a (N,) uint8 buffer.

    Raises JpegError when TurboJPEG cannot read it (or is unavailable).
    """
    lib = _library()
    if lib is None:
        raise JpegError("libturbojpeg 3 is not available")
    handle = _HANDLE.get(lib)
    _check(lib, handle, lib.tj3DecompressHeader(handle, buf.ctypes.data, buf.size), "header")
    return (
        lib.tj3Get(handle, _TJPARAM_JPEGWIDTH),
        lib.tj3Get(handle, _TJPARAM_JPEGHEIGHT),
        lib.tj3Get(handle, _TJPARAM_SUBSAMP),
    )


def decode(
    buf: np.ndarray,
    box: tuple[int, int, int, int] | None = None,
    rgb: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decodes a JPEG to uint8 BGR (RGB with `rgb`), whole or a box of it.

    Shapes: buf (N,) uint8; box (x0, y0, x1, y1) full-image pixels, ends exclusive, clipped to the
    image -> image (h, w, 3) uint8, origin (x, y): the full-image pixel of image[0, 0]. The
    box's left edge moves down to a multiple of the iMCU width (8-32 px), so the image can start left
    of x0. Raises JpegError when TurboJPEG cannot decode it; callers then use OpenCV.
    """
    lib = _library()
    width, height, subsamp = header(buf)
    handle = _HANDLE.get(lib)
    out_w, out_h = width, height
    x0 = y0 = 0
    if box is not None:
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(width, int(box[2])), min(height, int(box[3]))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty box {box} in a {width}x{height} image")
        if not 0 <= subsamp < len(_MCU_WIDTH):
            raise JpegError(f"unknown chroma subsampling {subsamp}")
        x0 -= x0 % _MCU_WIDTH[subsamp]
        out_w, out_h = x1 - x0, y1 - y0
    region = _Region(x0, y0, out_w, out_h) if box is not None else _Region(0, 0, 0, 0)
    _check(lib, handle, lib.tj3SetCroppingRegion(handle, region), "cropping region")
    image = np.empty((out_h, out_w, 3), np.uint8)
    status = lib.tj3Decompress8(
        handle,
        buf.ctypes.data,
        buf.size,
        image.ctypes.data,
        3 * out_w,
        _TJPF_RGB if rgb else _TJPF_BGR,
    )
    _check(lib, handle, status, "decode")
    return image, (x0, y0)
