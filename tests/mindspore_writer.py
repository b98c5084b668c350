"""A small MindSpore .ckpt writer for the tests, written from the protobuf wire format by hand
(independent of the reader's protobuf classes), so that a round trip checks two
implementations of checkpoint.proto against each other.

MindSpore writes one ``Checkpoint`` message per tensor, back to back; dims are an unpacked
repeated int64 (proto2); a tensor over the slice size is cut along axis 0 into pieces that
each carry the full dims; ``crc_check`` appends b"crc_num" + the CRC-32 as 10 big-endian bytes.
"""

from __future__ import annotations

import binascii
from pathlib import Path

import numpy as np
import torch

TYPE_NAMES = {
    torch.float16: "Float16", torch.float32: "Float32", torch.float64: "Float64",
    torch.bfloat16: "BFloat16", torch.bool: "Bool", torch.int8: "Int8", torch.int16: "Int16",
    torch.int32: "Int32", torch.int64: "Int64", torch.uint8: "UInt8",
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def tensor_proto(dims: list[int], tensor_type: str, content: bytes) -> bytes:
    dims_bytes = b"".join(varint(1 << 3 | 0) + varint(d) for d in dims)
    return dims_bytes + length_delimited(2, tensor_type.encode()) + length_delimited(3, content)


def value_message(tag: str, tensor: bytes) -> bytes:
    """One ``Checkpoint`` message holding one ``Value``."""
    return length_delimited(1, length_delimited(1, tag.encode()) + length_delimited(2, tensor))


def write_ckpt(path: str | Path, tensors: dict[str, torch.Tensor], *,
               strings: dict[str, str] | None = None, split: dict[str, int] | None = None,
               crc: bool = False) -> bytes:
    """Write ``tensors`` (and "str" entries) as MindSpore does; ``split[tag] = n`` cuts that
    tensor into n pieces along axis 0 (MindSpore does this above 512 MiB). Returns the bytes."""
    out = bytearray()
    for tag, tensor in tensors.items():
        tensor = tensor.detach().contiguous()
        dims = list(tensor.shape) if tensor.ndim else [0]  # MindSpore writes scalars as [0]
        raw = tensor.view(torch.uint8) if tensor.ndim else tensor.reshape(1).view(torch.uint8)
        flat = raw.reshape(tensor.shape[0] if tensor.ndim else 1, -1).numpy()
        for piece in np.array_split(flat, (split or {}).get(tag, 1)):
            out += value_message(tag, tensor_proto(dims, TYPE_NAMES[tensor.dtype], piece.tobytes()))
    for tag, text in (strings or {}).items():
        out += value_message(tag, tensor_proto([0], "str", text.encode("utf-32-le")))
    if crc:
        out += b"crc_num" + binascii.crc32(bytes(out)).to_bytes(10, "big")
    Path(path).write_bytes(bytes(out))
    return bytes(out)
