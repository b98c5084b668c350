"""Read MindSpore .ckpt files with the ``protobuf`` package alone (no MindSpore).

The format, from MindSpore's ``checkpoint.proto`` (proto2)::

    Checkpoint     { repeated Value value = 1; }
    Value          { required string tag = 1; oneof { TensorProto tensor = 2;
                                                      MapTensorProto maptensor = 3; } }
    TensorProto    { repeated int64 dims = 1; required string tensor_type = 2;
                     required bytes tensor_content = 3; }
    MapTensorProto { repeated TensorProto tensor = 1; }

MindSpore writes one ``Checkpoint`` message per parameter, back to back, so a file is a run
of top-level ``value`` fields. A tensor over 512 MiB is split along its first axis into
several values with the same tag and the full ``dims``; the pieces join in file order.
``tensor_content`` is raw little-endian C-order data. A scalar is written with dims ``[0]``
and one element; a string entry (``append_dict``) has type ``"str"`` and UTF-32 content.
With ``crc_check`` the file ends with ``b"crc_num"`` and the CRC-32 of everything before it
as 10 big-endian bytes.
"""

from __future__ import annotations

import binascii
import math
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

# tensor_type -> torch dtype (MindSpore spells unsigned types "UInt8", older releases "Uint8")
CKPT_DTYPES = {
    "Float16": torch.float16, "Float32": torch.float32, "Float64": torch.float64,
    "BFloat16": torch.bfloat16, "Bool": torch.bool,
    "Int8": torch.int8, "Int16": torch.int16, "Int32": torch.int32, "Int64": torch.int64,
    "UInt8": torch.uint8, "UInt16": torch.uint16, "UInt32": torch.uint32, "UInt64": torch.uint64,
    "Uint8": torch.uint8, "Uint16": torch.uint16, "Uint32": torch.uint32, "Uint64": torch.uint64,
}
CRC_MARK = b"crc_num"
CRC_TRAILER_BYTES = len(CRC_MARK) + 10
VALUE_FIELD_KEY = 0x0A  # field 1 (Checkpoint.value), wire type 2 (length-delimited)


class CheckpointError(ValueError):
    """A file that is not a readable MindSpore checkpoint."""


class MindSporeCheckpoint(NamedTuple):
    tensors: dict[str, Tensor]  # tag -> tensor, in file order
    strings: dict[str, str]  # tag -> text of "str" entries (metadata from append_dict)
    map_tensors: tuple[str, ...]  # tags of MapTensor entries (hash-map embeddings), not read


@lru_cache(maxsize=1)
def _value_class() -> type:
    """The ``Checkpoint.Value`` message class, built from the schema above in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="ssdzoo_mindspore_checkpoint.proto",
                                               package="ssdzoo_ms", syntax="proto2")
    tensor = proto.message_type.add(name="TensorProto")
    tensor.field.add(name="dims", number=1, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    tensor.field.add(name="tensor_type", number=2, type=field.TYPE_STRING, label=field.LABEL_REQUIRED)
    tensor.field.add(name="tensor_content", number=3, type=field.TYPE_BYTES, label=field.LABEL_REQUIRED)
    map_tensor = proto.message_type.add(name="MapTensorProto")
    map_tensor.field.add(name="tensor", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
                         type_name=".ssdzoo_ms.TensorProto")
    checkpoint = proto.message_type.add(name="Checkpoint")
    value = checkpoint.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    value.field.add(name="tag", number=1, type=field.TYPE_STRING, label=field.LABEL_REQUIRED)
    value.field.add(name="tensor", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                    type_name=".ssdzoo_ms.TensorProto", oneof_index=0)
    value.field.add(name="maptensor", number=3, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                    type_name=".ssdzoo_ms.MapTensorProto", oneof_index=0)
    checkpoint.field.add(name="value", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
                         type_name=".ssdzoo_ms.Checkpoint.Value")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ssdzoo_ms.Checkpoint.Value"))


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``; -1 if the data ends inside it."""
    result = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7
    return -1, pos


def _split_crc(data: memoryview, path: Path) -> memoryview:
    """The message bytes, after checking and removing a CRC trailer if the file has one."""
    if len(data) < CRC_TRAILER_BYTES or bytes(data[-CRC_TRAILER_BYTES:-10]) != CRC_MARK:
        return data
    body = data[:-CRC_TRAILER_BYTES]
    stored = int.from_bytes(bytes(data[-10:]), "big")
    if binascii.crc32(body) != stored:
        raise CheckpointError(f"{path}: CRC check failed (the file is damaged or incomplete)")
    return body


def iter_values(data: memoryview, path: Path):
    """Yield (byte offset, parsed ``Checkpoint.Value``) for each top-level value in ``data``."""
    from google.protobuf.message import DecodeError

    value_class = _value_class()
    pos = index = 0
    while pos < len(data):
        if data[pos] != VALUE_FIELD_KEY:
            if pos > 0:
                what = f"has unexpected bytes at offset {pos} after {index} values (damaged file?)"
            elif bytes(data[:2]) == b"PK":
                what = "is a zip archive (a PyTorch or Lightning file?), not a MindSpore checkpoint"
            else:
                what = "is not a MindSpore checkpoint (or is encrypted)"
            raise CheckpointError(f"{path} {what}")
        size, start = _varint(data, pos + 1)
        if size < 0 or start + size > len(data):
            raise CheckpointError(f"{path} is truncated: value #{index} at offset {pos} needs "
                                  f"{max(size, 0)} bytes, the file ends at {len(data)}")
        message = value_class()
        try:
            message.ParseFromString(data[start:start + size])
        except DecodeError as err:
            raise CheckpointError(f"{path}: value #{index} at offset {pos} is not a checkpoint "
                                  f"entry ({err})") from err
        yield pos, message
        pos, index = start + size, index + 1


def _tensor_from_pieces(tag: str, dims: list[int], tensor_type: str, pieces: list[bytes],
                        path: Path) -> Tensor:
    """Join the split pieces of one tensor and give it its shape."""
    dtype = CKPT_DTYPES.get(tensor_type)
    if dtype is None:
        raise CheckpointError(f"{path}: tensor {tag!r} has type {tensor_type!r}, which ssdzoo "
                              f"cannot read (known: {', '.join(sorted(set(CKPT_DTYPES)))})")
    content = b"".join(pieces)
    shape = () if dims in ([], [0]) else tuple(dims)  # MindSpore writes a scalar as dims [0]
    itemsize = torch.empty((), dtype=dtype).element_size()
    expected = math.prod(shape) * itemsize
    if len(content) != expected:
        raise CheckpointError(f"{path}: tensor {tag!r} of shape {list(dims)} ({tensor_type}) has "
                              f"{len(content)} bytes, expected {expected} (truncated or damaged file)")
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(content), dtype=dtype).reshape(shape)


def read_mindspore_checkpoint(path: str | Path) -> MindSporeCheckpoint:
    """All entries of a MindSpore .ckpt file; split tensors joined; nothing executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = _split_crc(memoryview(path.read_bytes()), path)
    if len(data) == 0:
        raise CheckpointError(f"{path} is empty")
    pieces: dict[str, list[bytes]] = {}
    headers: dict[str, tuple[list[int], str]] = {}
    strings: dict[str, str] = {}
    map_tensors: list[str] = []
    for offset, value in iter_values(data, path):
        kind = value.WhichOneof("value")
        if kind == "maptensor":
            map_tensors.append(value.tag)
            continue
        if kind != "tensor":
            raise CheckpointError(f"{path}: entry {value.tag!r} at offset {offset} holds no tensor")
        tensor = value.tensor
        if tensor.tensor_type == "str":
            strings[value.tag] = bytes(tensor.tensor_content).decode("utf-32-le").rstrip("\x00")
            continue
        header = (list(tensor.dims), tensor.tensor_type)
        if headers.setdefault(value.tag, header) != header:
            raise CheckpointError(f"{path}: the pieces of {value.tag!r} disagree on shape or type "
                                  f"({headers[value.tag]} then {header})")
        pieces.setdefault(value.tag, []).append(tensor.tensor_content)
    tensors = {tag: _tensor_from_pieces(tag, *headers[tag], parts, path) for tag, parts in pieces.items()}
    return MindSporeCheckpoint(tensors, strings, tuple(map_tensors))
