"""Read TensorFlow's weight files with the ``protobuf`` package alone (no TensorFlow).

Two formats, both plain data (nothing in them is executed):

- a frozen ``GraphDef`` (``.pb``; TF1's ``frozen_inference_graph.pb``): the graph's nodes, the
  weights as ``Const`` nodes holding ``TensorProto`` values. A SavedModel's ``saved_model.pb``
  wraps graphs in ``SavedModel { repeated MetaGraphDef meta_graphs = 2 }``,
  ``MetaGraphDef { GraphDef graph_def = 2 }``.
- a checkpoint in the tensor-bundle format (``PREFIX.index`` + ``PREFIX.data-0000k-of-0000n``;
  TF1's ``model.ckpt``, TF2's ``ckpt-0``, a SavedModel's ``variables/variables``). The index is
  a LevelDB-style table: sorted keys (tensor names; the empty key holds a
  ``BundleHeaderProto``) mapping to ``BundleEntryProto`` {dtype, shape, shard, offset, size};
  the tensors' bytes lie in the data shards.

The messages, from tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto
and tensorflow/core/protobuf/{meta_graph,saved_model,tensor_bundle}.proto (proto3; only the
fields read here are declared, the others are skipped)::

    GraphDef          { repeated NodeDef node = 1; }
    NodeDef           { string name = 1; string op = 2; repeated string input = 3;
                        map<string, AttrValue> attr = 5; }
    AttrValue         { oneof value { ListValue list = 1; bytes s = 2; int64 i = 3; float f = 4;
                                      bool b = 5; DataType type = 6; TensorShapeProto shape = 7;
                                      TensorProto tensor = 8; } }
    AttrValue.ListValue { repeated bytes s = 2; repeated int64 i = 3; repeated float f = 4;
                          repeated bool b = 5; }
    TensorProto       { DataType dtype = 1; TensorShapeProto tensor_shape = 2;
                        bytes tensor_content = 4; repeated float float_val = 5;
                        repeated double double_val = 6; repeated int32 int_val = 7;
                        repeated bytes string_val = 8; repeated int64 int64_val = 10;
                        repeated bool bool_val = 11; repeated int32 half_val = 13;
                        repeated uint32 uint32_val = 16; repeated uint64 uint64_val = 17; }
    TensorShapeProto  { repeated Dim dim = 2; bool unknown_rank = 3; }  Dim { int64 size = 1; }
    BundleHeaderProto { int32 num_shards = 1; Endianness endianness = 2; }
    BundleEntryProto  { DataType dtype = 1; TensorShapeProto shape = 2; int32 shard_id = 3;
                        int64 offset = 4; int64 size = 5; fixed32 crc32c = 6;
                        repeated TensorSliceProto slices = 7; }
    TrackableObjectGraph { repeated TrackableObject nodes = 1; }   (TF2's object graph)
    TrackableObject   { repeated ObjectReference children = 1; repeated SerializedTensor attributes = 2; }
    ObjectReference   { int32 node_id = 1; string local_name = 2; }
    SerializedTensor  { string name = 1; string full_name = 2; string checkpoint_key = 3; }

A TF2 checkpoint keys each variable by its first path from the root object; a SavedModel's
``variables/`` keys them by whatever path its exporter met first (``_model/_box_predictor/
variables/0``). ``object_paths`` recovers the path through named attributes from the object
graph stored in the bundle, so both read with the same names.

The bundle's CRC32C checksums are not verified (Python's standard library has no CRC32C);
every offset and size is checked against the files, so a truncated file is still an error.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

# DataType enum values (types.proto) -> numpy dtype of the raw little-endian data
TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
             9: np.int64, 10: np.bool_, 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
DT_STRING, DT_BFLOAT16, DT_HALF = 7, 14, 19
TF_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
                  7: "string", 8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16",
                  18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
                  23: "uint64"}
TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table footer magic, as TensorFlow's table.cc writes
FOOTER_BYTES = 48  # two block handles, padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_BYTES = 5  # compression type (0 = none), masked CRC32C


class TFFileError(ValueError):
    """A file that is not a readable TensorFlow graph or checkpoint."""


class GraphNode(NamedTuple):
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, object]  # attribute name -> bytes, int, float, bool, list, TensorProto ...


class TFGraph(NamedTuple):
    """A frozen graph: its Const tensors by node name, and every node."""

    tensors: dict[str, Tensor]  # Const node name -> value (numeric constants)
    nodes: dict[str, GraphNode]  # every node, in file order
    strings: dict[str, list[bytes]]  # string constants


class TFCheckpoint(NamedTuple):
    """A tensor bundle: its numeric tensors and its string entries, by key."""

    tensors: dict[str, Tensor]
    strings: dict[str, list[bytes]]  # e.g. TF2's _CHECKPOINTABLE_OBJECT_GRAPH (a serialized proto)


# ---- the messages ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _message_classes() -> dict[str, type]:
    """The message classes of the module docstring, built in a private descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="ssdzoo_tensorflow.proto", package="ssdzoo_tf",
                                               syntax="proto3")
    repeated, optional = field.LABEL_REPEATED, field.LABEL_OPTIONAL

    def message(name: str, fields: list[tuple], parent=None):
        msg = (parent.nested_type if parent is not None else proto.message_type).add(name=name)
        for spec in fields:
            fname, number, ftype, label, *rest = spec
            kwargs = dict(name=fname, number=number, type=ftype, label=label)
            if rest and rest[0]:
                kwargs["type_name"] = rest[0]
            if len(rest) > 1:
                kwargs["oneof_index"] = rest[1]
            msg.field.add(**kwargs)
        return msg

    msg_t, i64, i32, u32, u64, f32, f64, b, s, by, fx32 = (
        field.TYPE_MESSAGE, field.TYPE_INT64, field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_UINT64,
        field.TYPE_FLOAT, field.TYPE_DOUBLE, field.TYPE_BOOL, field.TYPE_STRING, field.TYPE_BYTES,
        field.TYPE_FIXED32)
    shape = message("TensorShapeProto", [("dim", 2, msg_t, repeated, ".ssdzoo_tf.TensorShapeProto.Dim"),
                                         ("unknown_rank", 3, b, optional)])
    message("Dim", [("size", 1, i64, optional)], parent=shape)
    message("TensorProto", [
        ("dtype", 1, i32, optional), ("tensor_shape", 2, msg_t, optional, ".ssdzoo_tf.TensorShapeProto"),
        ("tensor_content", 4, by, optional), ("float_val", 5, f32, repeated),
        ("double_val", 6, f64, repeated), ("int_val", 7, i32, repeated), ("string_val", 8, by, repeated),
        ("int64_val", 10, i64, repeated), ("bool_val", 11, b, repeated), ("half_val", 13, i32, repeated),
        ("uint32_val", 16, u32, repeated), ("uint64_val", 17, u64, repeated)])
    attr = message("AttrValue", [
        ("list", 1, msg_t, optional, ".ssdzoo_tf.AttrValue.ListValue", 0), ("s", 2, by, optional, "", 0),
        ("i", 3, i64, optional, "", 0), ("f", 4, f32, optional, "", 0), ("b", 5, b, optional, "", 0),
        ("type", 6, i32, optional, "", 0), ("shape", 7, msg_t, optional, ".ssdzoo_tf.TensorShapeProto", 0),
        ("tensor", 8, msg_t, optional, ".ssdzoo_tf.TensorProto", 0)])
    attr.oneof_decl.add(name="value")
    message("ListValue", [("s", 2, by, repeated), ("i", 3, i64, repeated), ("f", 4, f32, repeated),
                          ("b", 5, b, repeated)], parent=attr)
    node = message("NodeDef", [("name", 1, s, optional), ("op", 2, s, optional), ("input", 3, s, repeated),
                               ("attr", 5, msg_t, repeated, ".ssdzoo_tf.NodeDef.AttrEntry")])
    entry = message("AttrEntry", [("key", 1, s, optional), ("value", 2, msg_t, optional, ".ssdzoo_tf.AttrValue")],
                    parent=node)
    entry.options.map_entry = True
    message("GraphDef", [("node", 1, msg_t, repeated, ".ssdzoo_tf.NodeDef")])
    message("MetaGraphDef", [("graph_def", 2, msg_t, optional, ".ssdzoo_tf.GraphDef")])
    message("SavedModel", [("saved_model_schema_version", 1, i64, optional),
                           ("meta_graphs", 2, msg_t, repeated, ".ssdzoo_tf.MetaGraphDef")])
    graph = message("TrackableObjectGraph", [("nodes", 1, msg_t, repeated, ".ssdzoo_tf.TrackableObjectGraph.Node")])
    node_msg = message("Node", [("children", 1, msg_t, repeated, ".ssdzoo_tf.TrackableObjectGraph.Node.Ref"),
                                ("attributes", 2, msg_t, repeated, ".ssdzoo_tf.TrackableObjectGraph.Node.Tensor")],
                       parent=graph)
    message("Ref", [("node_id", 1, i32, optional), ("local_name", 2, s, optional)], parent=node_msg)
    message("Tensor", [("name", 1, s, optional), ("full_name", 2, s, optional), ("checkpoint_key", 3, s, optional)],
            parent=node_msg)
    message("BundleHeaderProto", [("num_shards", 1, i32, optional), ("endianness", 2, i32, optional)])
    message("BundleEntryProto", [
        ("dtype", 1, i32, optional), ("shape", 2, msg_t, optional, ".ssdzoo_tf.TensorShapeProto"),
        ("shard_id", 3, i32, optional), ("offset", 4, i64, optional), ("size", 5, i64, optional),
        ("crc32c", 6, fx32, optional), ("slices", 7, by, repeated)])  # slices: only counted

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = ("GraphDef", "SavedModel", "TensorProto", "BundleHeaderProto", "BundleEntryProto", "TrackableObjectGraph")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"ssdzoo_tf.{n}")) for n in names}


def _parse(kind: str, data: bytes, what: str):
    from google.protobuf.message import DecodeError

    message = _message_classes()[kind]()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise TFFileError(f"{what} is not a TensorFlow {kind} (truncated or another kind of file: {err})") from err
    return message


def _shape(shape_proto) -> tuple[int, ...]:
    return tuple(int(d.size) for d in shape_proto.dim)


def tensor_from_proto(proto, name: str, source: str) -> Tensor | list[bytes]:
    """A ``TensorProto`` as a torch tensor (numeric) or a list of bytes (DT_STRING)."""
    shape = _shape(proto.tensor_shape)
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == DT_STRING:
        return list(proto.string_val)
    if proto.dtype == DT_BFLOAT16:
        raw = (np.frombuffer(proto.tensor_content, np.uint16) if proto.tensor_content
               else np.array(proto.half_val, np.uint16))
        return _filled(torch.from_numpy(raw.astype(np.int32) << 16).view(torch.float32), count, shape,
                       name, source).to(torch.bfloat16)
    dtype = TF_DTYPES.get(proto.dtype)
    if dtype is None:
        raise TFFileError(f"{source}: tensor {name!r} has type "
                          f"{TF_DTYPE_NAMES.get(proto.dtype, proto.dtype)}, which ssdzoo cannot read")
    if proto.tensor_content:
        raw = np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
        if raw.size != count:
            raise TFFileError(f"{source}: tensor {name!r} of shape {list(shape)} has {raw.size} values, "
                              f"expected {count} (damaged file?)")
        return torch.from_numpy(raw.astype(dtype).reshape(shape))
    values = {np.float32: proto.float_val, np.float64: proto.double_val, np.int64: proto.int64_val,
              np.bool_: proto.bool_val, np.uint32: proto.uint32_val, np.uint64: proto.uint64_val,
              np.float16: proto.half_val}.get(dtype, proto.int_val)
    raw = np.array(values)
    if dtype is np.float16:  # half_val holds the bit patterns
        raw = raw.astype(np.uint16).view(np.float16)
    return _filled(torch.from_numpy(raw.astype(dtype)), count, shape, name, source)


def _filled(values: Tensor, count: int, shape: tuple[int, ...], name: str, source: str) -> Tensor:
    """TF's rule for short value lists: the last value repeats to fill the shape."""
    if len(values) == count:
        return values.reshape(shape)
    if len(values) == 0:
        return torch.zeros(shape, dtype=values.dtype)
    if len(values) > count:
        raise TFFileError(f"{source}: tensor {name!r} of shape {list(shape)} holds {len(values)} values")
    return torch.cat([values, values[-1:].expand(count - len(values))]).reshape(shape)


def _attr_value(attr):
    kind = attr.WhichOneof("value")
    if kind == "list":
        return list(attr.list.s) or list(attr.list.i) or list(attr.list.f) or list(attr.list.b)
    if kind == "shape":
        return _shape(attr.shape)
    return getattr(attr, kind) if kind else None


# ---- frozen graphs ---------------------------------------------------------------------------

def read_tf_graph(path: str | Path) -> TFGraph:
    """A frozen GraphDef (or a SavedModel's ``saved_model.pb``): every Const tensor and node."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorFlow graph not found: {path}")
    data = path.read_bytes()
    if not data:
        raise TFFileError(f"{path} is empty")
    if data[:4] == b"PK\x03\x04":
        raise TFFileError(f"{path} is a zip archive (a PyTorch or Keras file?), not a TensorFlow graph")
    graph = _parse("GraphDef", data, str(path))
    if not _looks_like_graph(graph):
        saved = _parse("SavedModel", data, str(path))
        graphs = [m.graph_def for m in saved.meta_graphs if _looks_like_graph(m.graph_def)]
        if not graphs:
            raise TFFileError(f"{path} is not a TensorFlow GraphDef or SavedModel (no graph nodes found)")
        graph = graphs[0]
    tensors: dict[str, Tensor] = {}
    strings: dict[str, list[bytes]] = {}
    nodes: dict[str, GraphNode] = {}
    for node in graph.node:
        attrs = {key: _attr_value(value) for key, value in node.attr.items()}
        nodes[node.name] = GraphNode(node.op, tuple(node.input), attrs)
        if node.op == "Const" and "value" in node.attr:
            value = tensor_from_proto(node.attr["value"].tensor, node.name, str(path))
            (strings if isinstance(value, list) else tensors)[node.name] = value
    return TFGraph(tensors, nodes, strings)


def _looks_like_graph(graph) -> bool:
    return len(graph.node) > 0 and all(n.name and n.op for n in graph.node[:50])


# ---- TF2 object graphs ---------------------------------------------------------------------

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Containers that list objects already reachable by name (Keras' variable lists and layer lists)
AGGREGATE_EDGES = {"variables", "trainable_variables", "non_trainable_variables", "keras_api",
                   "_self_saveable_object_factories", "layer_metrics", "signatures"}


def object_paths(serialized: bytes, source: str = "checkpoint") -> dict[str, str]:
    """{checkpoint key: the key through named attributes} for the variables of a TF2 object
    graph: a breadth-first walk from the root that skips Keras' aggregate lists
    (``AGGREGATE_EDGES``), as a ``tf.train.Checkpoint`` of the same objects keys them."""
    graph = _parse("TrackableObjectGraph", serialized, f"{source}: {OBJECT_GRAPH_KEY}")
    if not graph.nodes:
        return {}
    paths, queue = {0: ""}, [0]
    for node_id in queue:  # grows while walked: breadth first
        if node_id >= len(graph.nodes):
            raise TFFileError(f"{source}: {OBJECT_GRAPH_KEY} refers to object {node_id} of {len(graph.nodes)}")
        for child in graph.nodes[node_id].children:
            if child.local_name not in AGGREGATE_EDGES and child.node_id not in paths:
                paths[child.node_id] = f"{paths[node_id]}{child.local_name}/"
                queue.append(child.node_id)
    renamed = {}
    for node_id, path in paths.items():
        for attribute in graph.nodes[node_id].attributes:
            renamed[attribute.checkpoint_key] = f"{path}.ATTRIBUTES/{attribute.name}"
    return renamed


# ---- tensor bundles --------------------------------------------------------------------------

def bundle_prefix(path: str | Path) -> Optional[Path]:
    """The checkpoint prefix ``path`` names, or None: ``X.index``, a ``X.data-*`` shard, ``X``
    itself when ``X.index`` exists, or a folder holding one (a SavedModel's
    ``variables/variables``, the TF2 zoo's ``checkpoint/ckpt-0``, TF1's ``model.ckpt``)."""
    path = Path(path)
    if path.name.endswith(".index") and path.is_file():
        return path.with_name(path.name[:-len(".index")])
    if ".data-" in path.name and path.is_file():
        return path.with_name(path.name[:path.name.index(".data-")])
    if path.with_name(path.name + ".index").is_file():
        return path
    if path.is_dir():
        for candidate in ("variables/variables", "checkpoint/ckpt-0", "saved_model/variables/variables",
                          "model.ckpt", "ckpt-0"):
            if (path / (candidate + ".index")).is_file():
                return path / candidate
        found = sorted(path.glob("*.index")) + sorted(path.glob("*/*.index"))
        if len(found) == 1:
            return found[0].with_name(found[0].name[:-len(".index")])
    return None


def read_tf_checkpoint(path: str | Path) -> TFCheckpoint:
    """Every tensor of a tensor-bundle checkpoint (``path``: see ``bundle_prefix``)."""
    prefix = bundle_prefix(path)
    if prefix is None:
        raise FileNotFoundError(f"no TensorFlow checkpoint at {path} (expected PREFIX.index with "
                                "PREFIX.data-00000-of-0000N beside it)")
    index_path = prefix.with_name(prefix.name + ".index")
    entries = _read_table(index_path)
    if b"" not in entries:
        raise TFFileError(f"{index_path}: no bundle header (not a TensorFlow checkpoint index)")
    header = _parse("BundleHeaderProto", entries.pop(b""), f"{index_path} header")
    if header.endianness != 0:
        raise TFFileError(f"{index_path}: a big-endian checkpoint, which ssdzoo cannot read")
    num_shards = max(int(header.num_shards), 1)
    shards = [prefix.with_name(f"{prefix.name}.data-{k:05d}-of-{num_shards:05d}") for k in range(num_shards)]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise TFFileError(f"{index_path}: data shard(s) missing: {', '.join(missing)}")
    data = [np.memmap(s, dtype=np.uint8, mode="r") if s.stat().st_size else np.zeros(0, np.uint8) for s in shards]
    tensors: dict[str, Tensor] = {}
    strings: dict[str, list[bytes]] = {}
    for key, value in entries.items():
        name = key.decode("utf-8", errors="replace")
        entry = _parse("BundleEntryProto", value, f"{index_path} entry {name!r}")
        if len(entry.slices):
            raise TFFileError(f"{index_path}: tensor {name!r} is saved in {len(entry.slices)} slices "
                              "(a partitioned variable), which ssdzoo cannot read")
        if not 0 <= entry.shard_id < num_shards:
            raise TFFileError(f"{index_path}: tensor {name!r} is in shard {entry.shard_id} of {num_shards}")
        shard = data[entry.shard_id]
        start, size = int(entry.offset), int(entry.size)
        if start < 0 or size < 0 or start + size > len(shard):
            raise TFFileError(f"{shards[entry.shard_id]} is truncated: tensor {name!r} needs bytes "
                              f"{start}..{start + size}, the file has {len(shard)}")
        raw = bytes(shard[start:start + size])
        shape = _shape(entry.shape)
        if entry.dtype == DT_STRING:
            strings[name] = _bundle_strings(raw, int(np.prod(shape, dtype=np.int64)), name, index_path)
            continue
        tensors[name] = _bundle_tensor(raw, entry.dtype, shape, name, index_path)
    if OBJECT_GRAPH_KEY in strings and strings[OBJECT_GRAPH_KEY]:
        renamed = object_paths(strings[OBJECT_GRAPH_KEY][0], str(index_path))
        tensors = {renamed.get(k, k): v for k, v in tensors.items()}
    return TFCheckpoint(tensors, strings)


def _bundle_tensor(raw: bytes, dtype_enum: int, shape: tuple[int, ...], name: str, source: Path) -> Tensor:
    count = int(np.prod(shape, dtype=np.int64))
    if dtype_enum == DT_BFLOAT16:
        values = np.frombuffer(raw, np.dtype("<u2"))
        tensor = torch.from_numpy(values.astype(np.int32) << 16).view(torch.float32).to(torch.bfloat16)
    else:
        dtype = TF_DTYPES.get(dtype_enum)
        if dtype is None:
            raise TFFileError(f"{source}: tensor {name!r} has type "
                              f"{TF_DTYPE_NAMES.get(dtype_enum, dtype_enum)}, which ssdzoo cannot read")
        values = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
        tensor = torch.from_numpy(values.astype(dtype))
    if tensor.numel() != count:
        raise TFFileError(f"{source}: tensor {name!r} of shape {list(shape)} has {tensor.numel()} values, "
                          f"expected {count} (damaged file?)")
    return tensor.reshape(shape)


def _bundle_strings(raw: bytes, count: int, name: str, source: Path) -> list[bytes]:
    """DT_STRING data: ``count`` varint lengths, a 4-byte checksum of them, then the bytes."""
    lengths, pos = [], 0
    for _ in range(count):
        length, pos = _varint(raw, pos, name, source)
        lengths.append(length)
    pos += 4
    out = []
    for length in lengths:
        if pos + length > len(raw):
            raise TFFileError(f"{source}: string tensor {name!r} is truncated")
        out.append(raw[pos:pos + length])
        pos += length
    return out


def _varint(data: bytes, pos: int, name: str = "", source: Path | str = "") -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise TFFileError(f"{source}: bad varint in {name!r} (truncated or damaged file)")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _read_table(path: Path) -> dict[bytes, bytes]:
    """Every key and value of a LevelDB-format table (TensorFlow's lib/io/table), in key order."""
    data = path.read_bytes()
    if len(data) < FOOTER_BYTES:
        raise TFFileError(f"{path} is truncated or not a TensorFlow checkpoint index ({len(data)} bytes)")
    (magic,) = struct.unpack("<Q", data[-8:])
    if magic != TABLE_MAGIC:
        raise TFFileError(f"{path} is not a TensorFlow checkpoint index (no table magic at its end: "
                          "truncated, or another kind of file)")
    footer = data[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0, "footer", path)  # metaindex block: unused
    _, pos = _varint(footer, pos, "footer", path)
    index_offset, pos = _varint(footer, pos, "footer", path)
    index_size, _ = _varint(footer, pos, "footer", path)
    entries: dict[bytes, bytes] = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, path), path):
        offset, pos = _varint(handle, 0, "index", path)
        size, _ = _varint(handle, pos, "index", path)
        entries.update(_block_entries(_block(data, offset, size, path), path))
    return entries


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size + BLOCK_TRAILER_BYTES
    if offset < 0 or end > len(data) - FOOTER_BYTES:
        raise TFFileError(f"{path} is truncated or damaged: a block at {offset} (+{size}) lies past the table")
    compression = data[offset + size]
    if compression != 0:
        raise TFFileError(f"{path}: a block is compressed (type {compression}); ssdzoo reads uncompressed "
                          "checkpoint indexes, as TensorFlow writes them")
    return data[offset:offset + size]


def _block_entries(block: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """A block's (key, value) pairs: prefix-compressed keys, then the restart array."""
    if len(block) < 4:
        raise TFFileError(f"{path}: a table block is damaged")
    (num_restarts,) = struct.unpack("<I", block[-4:])
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise TFFileError(f"{path}: a table block is damaged")
    pairs, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos, "block", path)
        unshared, pos = _varint(block, pos, "block", path)
        value_size, pos = _varint(block, pos, "block", path)
        if shared > len(key) or pos + unshared + value_size > end:
            raise TFFileError(f"{path}: a table block is damaged")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        pairs.append((key, block[pos:pos + value_size]))
        pos += value_size
    return pairs
