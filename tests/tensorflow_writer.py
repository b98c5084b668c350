"""TensorFlow files for the tests, written from the wire formats by hand (independent of the
reader's protobuf classes), and the deterministic tensor values TF's fixtures were made with.

- ``write_graph``: a GraphDef of Const nodes, as a frozen graph holds its weights.
- ``write_bundle``: a tensor-bundle checkpoint, ``PREFIX.index`` (a LevelDB-format table: one
  data block, every key a restart point, an index block, an empty metaindex block, the footer
  with TensorFlow's table magic) and ``PREFIX.data-00000-of-00001``. Checksums are written as
  zero (ssdzoo does not verify them; files written by TensorFlow itself test the reader too).
- ``fixture_value``: the value TF's fixtures in tests/golden/tfod/tf2 gave each variable (made by
  TensorFlow in a scratch environment, see tests/golden/README.md), so that the tests can
  rebuild the same weights without TensorFlow and compare outputs.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
          np.dtype(np.int16): 5, np.dtype(np.int8): 6, np.dtype(np.int64): 9, np.dtype(np.bool_): 10,
          np.dtype(np.float16): 19}
DT_STRING = 7
TABLE_MAGIC = 0xDB4775248B80FB57
KERNEL_LEAVES = ("kernel", "weights", "depthwise_kernel", "depthwise_weights", "pointwise_kernel")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def field_bytes(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def shape_proto(shape) -> bytes:
    return b"".join(field_bytes(2, field_varint(1, d) if d else b"") for d in shape)


def tensor_proto(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    return (field_varint(1, DTYPES[array.dtype]) + field_bytes(2, shape_proto(array.shape))
            + field_bytes(4, array.astype(array.dtype.newbyteorder("<")).tobytes()))


def write_graph(path: str | Path, tensors: dict[str, np.ndarray], extra_nodes: tuple[tuple[str, str], ...] = ()) -> Path:
    """A GraphDef with one Const node per tensor (attrs ``value`` and ``dtype``), plus
    ``extra_nodes`` (name, op) without attributes."""
    nodes = []
    for name, array in tensors.items():
        value = field_bytes(1, b"value") + field_bytes(2, field_bytes(8, tensor_proto(array)))
        dtype = field_bytes(1, b"dtype") + field_bytes(2, field_varint(6, DTYPES[np.asarray(array).dtype]))
        nodes.append(field_bytes(1, name.encode()) + field_bytes(2, b"Const")
                     + field_bytes(5, dtype) + field_bytes(5, value))
    nodes += [field_bytes(1, name.encode()) + field_bytes(2, op.encode()) for name, op in extra_nodes]
    path = Path(path)
    path.write_bytes(b"".join(field_bytes(1, node) for node in nodes))
    return path


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A table block with every entry a restart point (no shared key prefix)."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
    restarts = restarts or [0]
    return bytes(body) + b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))


def write_bundle(prefix: str | Path, tensors: dict[str, np.ndarray], strings: dict[str, bytes] | None = None,
                 *, truncate_data: int = 0) -> Path:
    """``PREFIX.index`` + ``PREFIX.data-00000-of-00001`` holding ``tensors`` and scalar strings."""
    prefix = Path(prefix)
    data, entries = bytearray(), {}
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).astype(np.asarray(array).dtype.newbyteorder("<")).tobytes()
        entries[name.encode()] = (field_varint(1, DTYPES[np.asarray(array).dtype]) + field_bytes(2, shape_proto(np.shape(array)))
                                  + field_varint(4, len(data)) + field_varint(5, len(raw)))
        data += raw
    for name, value in (strings or {}).items():
        raw = varint(len(value)) + b"\0\0\0\0" + value  # lengths, their checksum, the bytes
        entries[name.encode()] = (field_varint(1, DT_STRING) + field_bytes(2, b"") + field_varint(4, len(data))
                                  + field_varint(5, len(raw)))
        data += raw
    header = field_varint(1, 1)  # num_shards 1, little-endian
    items = [(b"", header)] + sorted(entries.items())
    table = bytearray()
    data_block = _block(items)
    data_handle = varint(0) + varint(len(data_block))
    table += data_block + b"\0\0\0\0\0"
    meta_block = _block([])
    meta_handle = varint(len(table)) + varint(len(meta_block))
    table += meta_block + b"\0\0\0\0\0"
    index_block = _block([(items[-1][0] + b"\xff", data_handle)])
    index_handle = varint(len(table)) + varint(len(index_block))
    table += index_block + b"\0\0\0\0\0"
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", TABLE_MAGIC)
    prefix.with_name(prefix.name + ".index").write_bytes(bytes(table + footer))
    shard = prefix.with_name(prefix.name + ".data-00000-of-00001")
    shard.write_bytes(bytes(data[:len(data) - truncate_data]))
    return prefix


def fixture_value(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 value of variable ``name`` (TF1 name, or a TF2 checkpoint key without its
    ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix and ``model/`` prefix) in TF's fixtures:
    He-uniform kernels, small biases, BN statistics near identity, each drawn from a legacy
    numpy RandomState (a stream numpy keeps stable) seeded by the name's CRC-32."""
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    leaf = name.rpartition("/")[2]
    shape = tuple(int(d) for d in shape)
    if leaf in KERNEL_LEAVES:
        fan_in = shape[0] * shape[1] * (1 if "depthwise" in leaf else shape[2])
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)
    low, high = {"gamma": (0.5, 1.5), "beta": (-0.2, 0.2), "moving_mean": (-0.2, 0.2),
                 "moving_variance": (0.5, 2.0)}.get(leaf, (-0.1, 0.1))  # biases
    return rng.uniform(low, high, size=shape).astype(np.float32)


def object_graph(keys: list[str], root: str = "_model") -> tuple[bytes, dict[str, str]]:
    """A TF2 TrackableObjectGraph for variables at ``keys`` (paths below ``root``, with the
    ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix), where ``root`` also lists every variable in a
    ``variables`` aggregate met first, as a SavedModel's exporter keys them. Returns the
    serialized graph and {aggregate checkpoint key: named key}."""
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    nodes: list[dict] = [{"children": [], "attributes": []}, {"children": [], "attributes": []}]
    nodes[0]["children"].append((1, root))
    aggregate = len(nodes)
    nodes.append({"children": [], "attributes": []})
    nodes[1]["children"].append((aggregate, "variables"))
    index: dict[tuple[str, ...], int] = {(): 1}
    renamed = {}
    for i, key in enumerate(keys):
        parts = tuple(key[:-len(suffix)].split("/"))
        for depth in range(1, len(parts) + 1):
            if parts[:depth] not in index:
                index[parts[:depth]] = len(nodes)
                nodes.append({"children": [], "attributes": []})
                nodes[index[parts[:depth - 1]]]["children"].append((index[parts[:depth]], parts[depth - 1]))
        variable = index[parts]
        nodes[aggregate]["children"].append((variable, str(i)))
        checkpoint_key = f"{root}/variables/{i}{suffix}"
        nodes[variable]["attributes"].append(("VARIABLE_VALUE", checkpoint_key))
        renamed[checkpoint_key] = f"{root}/{key}"
    serialized = b""
    for node in nodes:
        body = b"".join(field_bytes(1, field_varint(1, n) + field_bytes(2, name.encode())) for n, name in node["children"])
        body += b"".join(field_bytes(2, field_bytes(1, name.encode()) + field_bytes(3, ckey.encode()))
                         for name, ckey in node["attributes"])
        serialized += field_bytes(1, body)
    return serialized, renamed
