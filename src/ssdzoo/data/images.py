"""Image files: checked once when a dataset is indexed, decoded fast (reduced scale) when read.

Two checks, one set of faults (missing, empty, not an image, truncated, undecodable):
- ``read_image_file`` (used by ``prepare``) reads and decodes the whole file, and re-encodes
  grayscale, CMYK, palette and alpha images as RGB JPEG, so the packed data holds RGB only.
- ``probe_image_file`` (used when a raw COCO folder is read in place) reads the header and the
  end of the file only: a truncated JPEG or PNG lacks its end marker. It costs a fraction of a
  decode, so a 118k-image folder is indexed in seconds rather than minutes.

``decode_resized`` is the loader's decode: libjpeg-turbo's DCT scaling (PIL draft mode) decodes
at 1/2, 1/4 or 1/8 scale whenever the region to keep is still at least the output size there.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

from PIL import Image

# Formats PIL decodes in-process. EPS and similar plug-ins run external programs; never used.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
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

    data: Optional[bytes]  # the file's own bytes, or an RGB JPEG re-encoding; None after a probe
    height: int
    width: int
    converted_from: Optional[str]  # the PIL mode that was converted to RGB, if any


def read_image_file(path: str | os.PathLike) -> ImageFile:
    """Read and fully decode ``path``; raise ImageFileError naming the fault."""
    data = _read_bytes(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                width, height = image.size
                mode = image.mode
                image.load()  # raises on truncated or corrupt data
                if mode == "RGB":
                    return ImageFile(data, height, width, None)
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="JPEG", quality=RGB_REENCODE_QUALITY,
                                          subsampling=0)
                return ImageFile(buffer.getvalue(), height, width, mode)
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
                width, height = image.size
                image_format, mode = image.format, image.mode
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except Exception as err:
        raise ImageFileError(_decode_reason(err)) from None
    end_marker = {"JPEG": _JPEG_END, "PNG": _PNG_END}.get(image_format)
    if end_marker is not None and end_marker not in tail:
        raise ImageFileError("truncated file (no end marker)")
    return ImageFile(None, height, width, None if mode == "RGB" else mode)


def _read_bytes(path: str | os.PathLike) -> bytes:
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


def decode_resized(
    data: bytes, *, size_hw: tuple[int, int], crop_xyxy: Optional[tuple[int, int, int, int]] = None,
) -> Image.Image:
    """Decode ``data``, keep ``crop_xyxy`` (pixels of the full image; all of it if None), resize
    to ``size_hw`` (bilinear, aspect not kept, as the seed does), return an RGB image.

    JPEGs are decoded at the largest DCT scale 1/s (s in 8, 4, 2, 1) at which the kept region
    is still at least ``size_hw``: no detail the output can show is lost.
    """
    out_h, out_w = size_hw
    image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    full_w, full_h = image.size
    x0, y0, x1, y1 = crop_xyxy if crop_xyxy is not None else (0, 0, full_w, full_h)
    factor = min((x1 - x0) // out_w, (y1 - y0) // out_h)
    scale = 1.0
    if factor >= 2 and image.format == "JPEG":
        s = next(s for s in (8, 4, 2) if factor >= s)
        drafted = image.draft("RGB", (max(1, full_w // s), max(1, full_h // s)))
        if drafted is not None:
            scale = full_w / drafted[1][2]
    if image.mode != "RGB":
        image = image.convert("RGB")
    box = (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
    return image.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)
