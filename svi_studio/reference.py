"""Opening a reference (or per-shot anchor) image: the one way every path reads one.

    image, notices = load_reference("cat.png")        # a path, bytes, a file object,
    image, notices = load_reference(upload_bytes)     # a PIL image or an (H, W, 3) array

The UI, the CLI, project specs and the Director all call `load_reference`, so an image
is accepted, converted or refused the same way everywhere. It returns a fully decoded
RGB image (detached from any file) and a list of notices saying what was done to it;
anything it cannot use raises `ReferenceError` (a ProjectError) whose message says what
is wrong and what to do. It never hands back a half-decoded image.

What it does:
- refuses a missing or empty file, something that is not an image, a format outside
  ALLOWED_FORMATS (EPS and friends can run external programs), and a damaged or
  truncated file (even if Pillow could decode part of it);
- refuses pictures over MAX_REFERENCE_PIXELS *before decoding them*, judged by the size
  their header declares, so a decompression bomb costs nothing (Pillow's own
  DecompressionBombWarning/Error are turned into the same message);
- refuses pictures smaller than MIN_REFERENCE_SIDE pixels on a side (a 1×1 image anchors
  nothing); accepts ones smaller than SMALL_REFERENCE_SIDE with a notice that they are
  upscaled;
- applies the EXIF orientation; uses the first frame of an animated GIF/WebP/APNG (and
  says so); composites transparency onto a neutral grey (and says so); converts CMYK,
  16-bit, palette, greyscale and YCbCr images to 8-bit RGB (16-bit is scaled, not
  clipped: Pillow's plain convert() would turn most of a 16-bit picture white);
- says when the aspect ratio is beyond what a clip can have (clips are at most 4:1,
  so the middle of the picture is used).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import struct
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .project.model import ProjectError

MAX_REFERENCE_PIXELS = 40_000_000  # 40 megapixels; far more than any clip needs
MAX_REFERENCE_BYTES = 256 * 1024**2  # a 40 MP uncompressed TIFF is about 120 MB
MIN_REFERENCE_SIDE = 16  # smaller images are refused: they carry no identity to anchor
SMALL_REFERENCE_SIDE = 256  # smaller than this on a side: accepted, upscaled, with a notice
MAX_CLIP_ASPECT = 4.0  # settings.fit_resolution clamps clips to 4:1 / 1:4
NEUTRAL_BACKGROUND = (128, 128, 128)  # transparent areas are composited onto this grey
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
FORMAT_HINT = "Use a PNG, JPEG or WebP picture"
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # greyscale with more than 8 bits per pixel
ORIENTATION_TAG = 0x0112  # EXIF Orientation; 1 is upright
# Pictures over LARGE_REFERENCE_PIXELS are decoded at most LARGE_DECODES_AT_ONCE at a time: a 40 MP float TIFF
# needs about 320 MB while it is converted, so 8 concurrent uploads would otherwise need 2.5 GB at once.
LARGE_REFERENCE_PIXELS = 12_000_000
LARGE_DECODES_AT_ONCE = 2
_LARGE_DECODES = threading.BoundedSemaphore(LARGE_DECODES_AT_ONCE)
try:
    _LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    _LIBC.malloc_trim  # noqa: B018 - glibc only (not musl)
except (OSError, AttributeError):
    _LIBC = None
STRIP_PIXELS = 1 << 20  # pixels per strip when reducing them to 8 bits (4 MB of float32)

# Everything Pillow raises for a file it cannot decode (SyntaxError: broken PNG chunks;
# struct/zlib errors and EOFError: cut-off files; MemoryError: absurd headers).
# What Pillow's decoders raise on damaged files. struct.error: a truncated GIF frame header
# (found by the hypothesis test of cut files).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, MemoryError,
                  RuntimeError, struct.error, Image.DecompressionBombError, Image.DecompressionBombWarning)


class ReferenceError(ProjectError):
    """A reference image that cannot be used; the message says why and what to do."""


Source = Any  # str | os.PathLike | bytes | BinaryIO | Image.Image | np.ndarray


def load_reference(source: Source, name: str | None = None) -> tuple[Image.Image, list[str]]:
    """Open `source` as an RGB reference image. Returns (image, notices); raises ReferenceError.

    source: a file path, the file's bytes, a binary file object, a PIL image or a uint8
    (H, W, 3|4) / (H, W) array. name: what messages call it (default: the file name, or
    "the image").
    """
    if source is None or (isinstance(source, (str, bytes, bytearray)) and len(source) == 0):
        raise ReferenceError("no reference image was given. Upload a picture of your character or scene "
                             f"({FORMAT_HINT.lower()}).")
    if isinstance(source, Image.Image):
        return _in_turn(source, name or "the image", owned=False)
    if isinstance(source, np.ndarray):
        return _in_turn(_from_array(source, name or "the image"), name or "the image", owned=True)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or path.name or str(path)
        if not path.exists():
            raise ReferenceError(f"{label}: file not found ({path}). Check the path and try again.")
        if path.is_dir():
            raise ReferenceError(f"{label} is a folder, not an image. {FORMAT_HINT}.")
        size = path.stat().st_size
        if size == 0:
            raise ReferenceError(f"{label} is empty (0 bytes). {FORMAT_HINT}.")
        if size > MAX_REFERENCE_BYTES:
            raise ReferenceError(f"{label} is {size // 1024**2} MB; the largest reference file accepted is "
                                 f"{MAX_REFERENCE_BYTES // 1024**2} MB. Save it smaller (2048 px on the long side is plenty).")
        with open(path, "rb") as handle:
            return _open(handle, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_REFERENCE_BYTES:
            raise ReferenceError(f"{name or 'the image'} is {len(data) // 1024**2} MB; the largest reference file "
                                 f"accepted is {MAX_REFERENCE_BYTES // 1024**2} MB.")
        return _open(io.BytesIO(data), name or "the image")
    if hasattr(source, "read"):
        return _open(source, name or Path(str(getattr(source, "name", "") or "the image")).name)
    raise ReferenceError(f"a reference must be an image file, its bytes or a picture, not {type(source).__name__}.")


def _open(handle: BinaryIO, label: str) -> tuple[Image.Image, list[str]]:
    """Identify, size-check, then decode the picture in `handle`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (89 MP) or raises (179 MP) on huge declared sizes; either way it is ours to refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle, formats=_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ReferenceError(_too_large(label, None)) from None
    except UnidentifiedImageError:
        raise ReferenceError(f"{label} is not an image SVI Studio can read. {FORMAT_HINT} "
                             "(GIF, BMP and TIFF work too).") from None
    except _DECODE_ERRORS as error:
        raise ReferenceError(_damaged(label, error)) from None
    with image:
        return _in_turn(image, label, owned=True)


def _formats() -> list[str]:
    """ALLOWED_FORMATS this Pillow build can open (Image.open raises KeyError on an unknown name)."""
    Image.init()
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def _too_large(label: str, size: tuple[int, int] | None) -> str:
    declared = f" is {size[0]}×{size[1]} ({size[0] * size[1] / 1e6:.0f} megapixels)" if size else " declares a huge size"
    return (f"{label}{declared}; the largest reference accepted is {MAX_REFERENCE_PIXELS // 1_000_000} megapixels. "
            "Scale it down (2048 pixels on the long side is plenty) and upload it again.")


def _damaged(label: str, error: BaseException) -> str:
    detail = str(error).splitlines()[0][:160] if str(error) else error.__class__.__name__
    return (f"{label} is damaged or incomplete ({detail}). Open it in an image editor and save it again, "
            "or upload another copy.")


def _from_array(array: np.ndarray, label: str) -> Image.Image:
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ReferenceError(f"{label}: an array reference must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4), "
                             f"got {array.dtype} {array.shape}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _normalise(image: Image.Image, label: str, notices: list[str]) -> tuple[Image.Image, list[str]]:
    """Checks and conversions shared by every kind of source; returns a new, decoded RGB image."""
    width, height = image.size
    if width * height > MAX_REFERENCE_PIXELS:
        raise ReferenceError(_too_large(label, (width, height)))
    if min(width, height) < MIN_REFERENCE_SIDE:
        raise ReferenceError(f"{label} is only {width}×{height} pixels; a reference needs at least "
                             f"{MIN_REFERENCE_SIDE} pixels on each side (a few hundred is better). Use a larger picture.")
    rgb = _decode(image, label, notices)
    width, height = rgb.size
    if max(width, height) / min(width, height) > MAX_CLIP_ASPECT:
        ratio = f"1:{height / width:.0f}" if height > width else f"{width / height:.0f}:1"
        notices.append(f"{label} is {width}×{height} ({ratio}); clips are at most 4:1 (or 1:4), "
                       "so the middle of the picture is used.")
    if min(width, height) < SMALL_REFERENCE_SIDE:
        notices.append(f"{label} is small ({width}×{height}); it is upscaled to the clip size, so expect soft detail. "
                       "A picture of 512 pixels or more on each side works better.")
    return rgb, notices


def _to_8_bit(image: Image.Image) -> np.ndarray:
    """A 16-bit, 32-bit integer or float greyscale image as uint8 (H, W), converted in row strips.

    Scale: float images whose maximum is at most 1 are 0..1 (×255); 32-bit integers holding
    only 8-bit values are kept; anything else is the 16-bit range 0..65535 (÷257). NaN becomes 0.
    Only one strip of float32 is alive at a time (STRIP_PIXELS), never a float64 copy of the
    whole picture: a 40 MP float TIFF costs its own 160 MB plus the 40 MB result."""
    width, height = image.size
    rows = max(1, STRIP_PIXELS // max(width, 1))
    strips = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def strip(top: int, bottom: int) -> np.ndarray:
        return np.array(image.crop((0, top, width, bottom)), dtype=np.float32)  # a writable copy of one strip

    # 1. The scale, from the picture's largest value (NaN ignored).
    largest = max((float(np.nanmax(values)) if not np.isnan(values).all() else 0.0
                   for values in (strip(top, bottom) for top, bottom in strips)), default=0.0)
    if image.mode == "F" and largest <= 1.0:
        scale = 255.0
    elif image.mode == "I" and largest <= 255:
        scale = 1.0  # 32-bit integers holding 8-bit values
    else:
        scale = 1 / 257.0  # 16-bit range 0..65535 → 0..255
    # 2. Each strip scaled, rounded and clipped in place, into the uint8 result.
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom in strips:
        values = strip(top, bottom)
        np.multiply(values, scale, out=values)
        np.nan_to_num(values, copy=False, nan=0.0)
        np.clip(values, 0, 255, out=values)
        np.rint(values, out=values)
        out[top:bottom] = values
    return out


def _in_turn(image: Image.Image, label: str, owned: bool) -> tuple[Image.Image, list[str]]:
    """`_normalise`, with pictures over LARGE_REFERENCE_PIXELS taking turns: at most
    LARGE_DECODES_AT_ONCE at a time (others wait), so the server's memory is bounded whatever
    the number of concurrent uploads. owned: the image was made here and is closed (its pixels
    freed) before the next large picture starts; the memory it held is handed back to the OS."""
    large = LARGE_REFERENCE_PIXELS < image.width * image.height <= MAX_REFERENCE_PIXELS  # larger: refused at once
    with _LARGE_DECODES if large else contextlib.nullcontext():
        try:
            return _normalise(image, label, [])
        finally:
            if owned:
                image.close()
            if large:
                _return_freed_memory()


def _return_freed_memory() -> None:
    """Ask glibc to hand freed memory back to the OS. It keeps freed blocks of up to 32 MB (Pillow
    allocates images in 16 MB blocks) in its per-thread arenas, so without this the server would
    keep the peak of a burst of large uploads for good. Does nothing on other C libraries."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _decode(image: Image.Image, label: str, notices: list[str]) -> Image.Image:
    """Decode `image` (first frame), apply its EXIF orientation and convert it to 8-bit RGB."""
    try:
        frames = getattr(image, "n_frames", 1) or 1  # counting frames reads the whole file: inside the try
        if frames > 1:
            image.seek(0)
            notices.append(f"{label} is animated or holds several pictures ({frames} frames); "
                           "only its first frame is used as the reference.")
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed Pillow globally; a reference must still be whole
            _check_complete(image, label)
        image.load()
    except ReferenceError:
        raise
    except _DECODE_ERRORS as error:
        raise ReferenceError(_damaged(label, error)) from None
    try:
        if image.getexif().get(ORIENTATION_TAG, 1) != 1:  # exif_transpose copies even an upright picture
            image = ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block: keep the pixels as stored
        pass
    try:
        return _to_rgb(image, label, notices)
    except ReferenceError:
        raise
    except (ValueError, OSError) as error:
        raise ReferenceError(f"{label} uses the colour mode {image.mode!r}, which cannot be converted "
                             f"({error}). Save it as an RGB PNG or JPEG.") from None


def _check_complete(image: Image.Image, label: str) -> None:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.copy().load()
    except _DECODE_ERRORS as error:
        raise ReferenceError(_damaged(label, error)) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _to_rgb(image: Image.Image, label: str, notices: list[str]) -> Image.Image:
    mode = image.mode
    if mode in HIGH_BIT_MODES:
        notices.append(f"{label} has more than 8 bits per channel; it was reduced to 8 bits.")
        return Image.fromarray(_to_8_bit(image)).convert("RGB")  # uint8 (H, W): mode L
    if mode == "CMYK":
        notices.append(f"{label} is a CMYK (print) image; it was converted to RGB, so colours may shift slightly.")
        return image.convert("RGB")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        low, _ = rgba.getchannel("A").getextrema()
        if low < 255:
            notices.append(f"{label} has transparent areas; they were filled with neutral grey.")
            background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return rgba.convert("RGB")
    if mode == "RGB":
        return image.copy()
    return image.convert("RGB")  # 1, L, YCbCr, HSV, … (LAB raises ValueError: reported above)
