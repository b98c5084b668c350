"""The device pipeline's image decoder: one function to replace when another decoder wins.

``decode_on_device(encoded, device)`` decodes a batch of JPEG files on ``device``: with
torchvision's ``decode_jpeg`` (already a dependency), which decodes a list of files in one
batched nvJPEG call on a CUDA device and with libjpeg-turbo on the CPU. TorchCodec's or DALI's
GPU decoders can take its place behind the same signature.

``device_decodable(data)`` reads a file's header (no pixels) and says whether that decoder
takes it as it is. What it does not take goes through the CPU decode (``images.decode``) in the
loader's workers and joins the batch decoded:
- anything but a JPEG (PNG, WebP, BMP, ...);
- grayscale, CMYK and YCCK JPEGs (nvJPEG's RGB output of them is not the CPU's conversion);
- progressive and lossless JPEGs: torchvision's nvJPEG path batches baseline files on the
  GPU's hardware decoder (A100, H100, H200) and decodes the others one by one in software;
  the workers' libjpeg-turbo decodes them in parallel instead.
The EXIF orientation is read here too: nvJPEG ignores it (torchvision applies it on the CPU
only), so the device turns the decoded pixels itself (``images.orient``).
"""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple, Sequence

import torch
from PIL import Image
from torch import Tensor

from .images import ALLOWED_FORMATS, exif_orientation, viewed_size

# JPEG start-of-frame markers: SOF0 baseline and SOF1 extended sequential Huffman are the
# device decoder's; SOF2 (progressive), SOF3 (lossless) and the arithmetic-coded ones are not
_DEVICE_SOF = (0xC0, 0xC1)


class Probe(NamedTuple):
    """What the workers learn from a file's header."""

    on_device: bool  # decode_on_device takes the file as it is
    orientation: int  # EXIF orientation 1..8 the decoded pixels still need
    height: int  # as a viewer shows the image (orientation applied)
    width: int


def device_decodable(data: bytes) -> Probe:
    """Read the header of ``data`` (PIL, lazily: no pixels). Raises what PIL raises on a file
    that is not an image."""
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
        orientation = exif_orientation(image)
        width, height = viewed_size(image.size, orientation)
        if image.format != "JPEG" or image.mode != "RGB":
            return Probe(False, orientation, height, width)
    return Probe(_start_of_frame(data) in _DEVICE_SOF, orientation, height, width)


def _start_of_frame(data: bytes) -> int:
    """The JPEG's SOFn marker byte (0xC0 ...), found by walking the marker segments; 0 if none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return 0
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return 0


def decode_on_device(encoded: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """JPEG files (1-D uint8 CPU tensors, ``device_decodable``) -> (3, h, w) uint8 RGB on
    ``device``, as stored (EXIF orientation not applied). Raises RuntimeError if any fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not encoded:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders for TorchCodec's
        return list(decode_jpeg(list(encoded), mode=ImageReadMode.RGB, device=device))
