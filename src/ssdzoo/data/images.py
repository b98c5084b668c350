"""Image files: checked once when a dataset is indexed, decoded fast (reduced scale) when read.

Every image is used as a viewer shows it: the EXIF orientation tag (phone photos stored sideways
or upside down with a tag saying so) is applied here, where pixels are decoded, so ``prepare``,
the raw-folder reader, ``predict`` and ``show`` all see upright images whose sizes and boxes
refer to that view, as labelling tools do. ``prepare`` keeps an RGB file's own bytes (its tag
included: ``decode`` turns it); an image it re-encodes is turned first.

Two checks, one set of faults (missing, empty, not an image, truncated, undecodable):
- ``read_image_file`` (used by ``prepare``) reads and decodes the whole file, and re-encodes
  grayscale, CMYK, palette and alpha images as RGB JPEG, so the packed data holds RGB only.
- ``probe_image_file`` (used when a raw COCO folder is read in place) reads the header and the
  end of the file only: a truncated JPEG or PNG lacks its end marker. On a COCO-sized JPEG it
  costs 0.14 ms against 3.6 ms for the full check (measured on the development machine).

``decode`` is the loader's decode: libjpeg-turbo's DCT scaling (PIL draft mode) decodes at 1/2,
1/4 or 1/8 scale whenever the region to keep is still at least the output size there, and the
pixels reach torch with a single copy (PIL's).
"""

from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# Formats PIL decodes in-process. EPS and similar plug-ins run external programs; never used.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")
EXIF_ORIENTATION = 0x0112  # the EXIF tag; values 1 (upright) to 8
# orientation -> the PIL transpose that shows the stored pixels as a viewer does (ImageOps.exif_transpose's)
VIEW_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# A JPEG ends with the EOI marker FF D9; an 0xFF byte inside entropy-coded data is always
# followed by 0x00, so FF D9 near the end means the scan is complete. Some encoders pad after it.
_JPEG_END, _PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
_TAIL_BYTES = 1024
RGB_REENCODE_QUALITY = 95  # for the rare grayscale/CMYK image that prepare converts


class ImageFileError(Exception):
    """A file that cannot be used as an image; ``reason`` says why, for the summary."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ImageFile(NamedTuple):
    """What prepare stores for one image."""

    data: Optional[bytes]  # the file's own bytes, or an upright RGB JPEG re-encoding; None after a probe
    height: int  # as a viewer shows the image (EXIF orientation applied)
    width: int
    converted_from: Optional[str]  # the PIL mode that was converted to RGB, if any
    orientation: int = 1  # the file's EXIF orientation (1: upright, or no tag)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8) still to apply to an opened image; 1 without a tag, with a bad
    one, or where Pillow applies it itself (its TIFF reader, in recent releases)."""
    if image.format == "TIFF" and _pillow_orients_tiff():
        return 1
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: the pixels are still usable as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


@lru_cache(maxsize=None)
def _pillow_orients_tiff() -> bool:
    """Whether this Pillow turns a TIFF upright by its orientation tag itself (Pillow 13 does:
    the opened image already has the shown size, yet getexif() still reports the tag; applying
    it again would turn the image twice). Found out once on a 2x1 TIFF tagged orientation 6."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.new("L", (2, 1)).save(buffer, format="TIFF", exif=exif.tobytes())
    with Image.open(buffer) as image:
        return image.size == (1, 2)


def viewed_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(width, height) as shown: orientations 5-8 turn the image a quarter."""
    return (size[1], size[0]) if orientation >= 5 else tuple(size)


def upright(image: Image.Image, orientation: Optional[int] = None) -> Image.Image:
    """``image`` as a viewer shows it (the same image if it is upright)."""
    orientation = exif_orientation(image) if orientation is None else orientation
    return image.transpose(VIEW_TRANSPOSE[orientation]) if orientation != 1 else image


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as a viewer shows it: (H, W, 3) uint8 RGB. Raises ImageFileError."""
    data = read_file_bytes(path)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            orientation = exif_orientation(image)
            return np.array(upright(image.convert("RGB"), orientation))
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        raise ImageFileError(_decode_reason(err)) from None


def read_image_file(path: str | os.PathLike) -> ImageFile:
    """Read and fully decode ``path``; raise ImageFileError naming the fault."""
    data = read_file_bytes(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                orientation = exif_orientation(image)
                width, height = viewed_size(image.size, orientation)
                mode = image.mode
                image.load()  # raises on truncated or corrupt data
                if mode == "RGB":
                    return ImageFile(data, height, width, None, orientation)
                buffer = io.BytesIO()  # the re-encoding has no EXIF: turn it upright first
                upright(image.convert("RGB"), orientation).save(
                    buffer, format="JPEG", quality=RGB_REENCODE_QUALITY, subsampling=0)
                return ImageFile(buffer.getvalue(), height, width, mode, orientation)
        except ImageFileError:
            raise
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
            raise ImageFileError(_decode_reason(err)) from None


def probe_image_file(path: str | os.PathLike) -> ImageFile:
    """Header and end-marker check of ``path`` without decoding; raise ImageFileError."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageFileError("missing file") from None
    except OSError as err:
        raise ImageFileError(f"unreadable file: {err.strerror}") from None
    if size == 0:
        raise ImageFileError("empty file")
    try:
        with open(path, "rb") as f:
            with Image.open(f, formats=ALLOWED_FORMATS) as image:
                orientation = exif_orientation(image)
                width, height = viewed_size(image.size, orientation)
                image_format, mode = image.format, image.mode
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except Exception as err:
        raise ImageFileError(_decode_reason(err)) from None
    end_marker = {"JPEG": _JPEG_END, "PNG": _PNG_END}.get(image_format)
    if end_marker is not None and end_marker not in tail:
        raise ImageFileError("truncated file (no end marker)")
    return ImageFile(None, height, width, None if mode == "RGB" else mode, orientation)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageFileError("missing file") from None
    except IsADirectoryError:
        raise ImageFileError("not a file") from None
    except OSError as err:
        raise ImageFileError(f"unreadable file: {err.strerror}") from None
    if not data:
        raise ImageFileError("empty file")
    return data


def _decode_reason(err: Exception) -> str:
    if isinstance(err, Image.UnidentifiedImageError):
        return "not an image (unknown format)"
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "image too large (decompression bomb limit)"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text:
        return f"truncated file ({text})"
    return f"not decodable ({text})"


class CropRect(NamedTuple):
    """A region of an image in whole pixels: columns x0..x1, rows y0..y1 (ends exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int


class Decoded(NamedTuple):
    """A decoded region of an image file."""

    image: Tensor  # (3, h, w) uint8 RGB; shares the decoder's read-only buffer: never write to it
    crop: CropRect  # the region of the full image it shows, in full-image pixels
    scale: int  # decoded at 1/scale: (h, w) = the crop's size / scale (rounded up at the edge)


def reduced_scale(crop_hw: tuple[int, int], size_hw: tuple[int, int]) -> int:
    """The largest JPEG DCT scale s in (8, 4, 2, 1) at which a crop still covers ``size_hw``.

    >>> reduced_scale((480, 640), (300, 300)), reduced_scale((480, 640), (128, 128))
    (1, 2)
    """
    factor = min(crop_hw[0] // size_hw[0], crop_hw[1] // size_hw[1])
    return next((s for s in (8, 4, 2) if factor >= s), 1)


def decode(data: bytes, *, crop: Optional[CropRect] = None, size_hw: Optional[tuple[int, int]] = None,
           scale: Optional[int] = None) -> Decoded:
    """Decode ``crop`` of ``data`` (the whole image if None), as a viewer shows the image.

    With ``size_hw`` (what the crop will be resized to), a JPEG is decoded at the largest DCT
    scale 1/s at which the crop is still at least ``size_hw`` (libjpeg-turbo's scaled IDCT, PIL
    draft mode): no detail the output can show is lost. The crop is then widened to multiples
    of s so that it falls on whole decoded pixels; ``Decoded.crop`` is the widened crop. The
    crop and the result are in the upright image's pixels (EXIF orientation applied). ``scale``
    (with ``size_hw``) names the scale instead, as ``scaled_crop`` chose it for a crop it
    already widened: the augmentation draws its crop before any byte is decoded. Data that
    does not decode raises ImageFileError.
    """
    try:
        return _decode(data, crop, size_hw, scale)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        raise ImageFileError(_decode_reason(err)) from None


def scaled_crop(crop: CropRect, full_hw: tuple[int, int], size_hw: tuple[int, int]) -> tuple[CropRect, int]:
    """(``crop`` widened to multiples of the DCT scale ``reduced_scale`` picks for it, clipped
    to the image; that scale): the region a reduced-scale ``decode`` returns.

    >>> scaled_crop(CropRect(41, 17, 361, 283), (300, 400), (64, 64))
    (CropRect(x0=40, y0=16, x1=364, y1=284), 4)
    """
    scale = reduced_scale((crop.y1 - crop.y0, crop.x1 - crop.x0), size_hw)
    full_h, full_w = full_hw
    widened = CropRect(crop.x0 // scale * scale, crop.y0 // scale * scale,
                       min(full_w, -(-crop.x1 // scale) * scale), min(full_h, -(-crop.y1 // scale) * scale))
    return widened, scale


def _decode(data: bytes, crop: Optional[CropRect], size_hw: Optional[tuple[int, int]],
            wanted_scale: Optional[int]) -> Decoded:
    image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    orientation = exif_orientation(image)
    stored_w, stored_h = image.size
    full_w, full_h = viewed_size(image.size, orientation)
    crop = crop or CropRect(0, 0, full_w, full_h)
    scale = 1
    if size_hw is not None and image.format == "JPEG":
        widened, scale = scaled_crop(crop, (full_h, full_w), size_hw)
        scale = scale if wanted_scale is None else wanted_scale
        if not _flips_keep_the_grid(orientation, stored_w, stored_h, scale):
            scale = 1
    if scale > 1:
        drafted = image.draft("RGB", (stored_w // scale, stored_h // scale))
        if drafted is None or round(stored_w / drafted[1][2]) != scale:  # not a plain JPEG
            scale = 1
        elif wanted_scale is None:
            crop = widened
        # else: the caller's crop is already on the scale's grid (scaled_crop)
    if image.mode != "RGB":
        image = image.convert("RGB")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: the array is read-only; we only read
        pixels = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)  # (3, h, w) view of PIL bytes
    pixels = orient(pixels, orientation)
    region = pixels[:, crop.y0 // scale:-(-crop.y1 // scale), crop.x0 // scale:-(-crop.x1 // scale)]
    return Decoded(region, crop, scale)


def _flips_keep_the_grid(orientation: int, stored_w: int, stored_h: int, scale: int) -> bool:
    """Whether a decode at 1/scale stays on the upright image's grid of scale-pixel blocks.

    Decoded pixel j covers stored pixels j*s..(j+1)*s, the last one fewer where the size is not a
    multiple of s. An orientation that mirrors a stored axis moves that short block to the
    start of the upright axis and shifts every block after it, so such an image decodes at
    full scale unless that axis is a multiple of s.
    """
    mirrors_x = orientation in (2, 3, 7, 8)  # stored columns run backwards when viewed
    mirrors_y = orientation in (3, 4, 6, 7)  # stored rows run backwards when viewed
    return not (mirrors_x and stored_w % scale) and not (mirrors_y and stored_h % scale)


def orient(pixels: Tensor, orientation: int) -> Tensor:
    """(3, h, w) stored pixels -> as a viewer shows them (VIEW_TRANSPOSE's turns, in torch)."""
    if orientation == 2:
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-2, -1)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:
        return pixels.transpose(1, 2)
    if orientation == 6:
        return torch.rot90(pixels, -1, (1, 2))  # a quarter turn clockwise
    if orientation == 7:
        return pixels.transpose(1, 2).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(pixels, 1, (1, 2))  # a quarter turn anticlockwise
    return pixels
