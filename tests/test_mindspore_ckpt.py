"""The .ckpt reader: round trips through an independent writer, split tensors, damaged files."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import GOLDEN_DIR
from mindspore_writer import write_ckpt

from ssdzoo.convert.mindspore_ckpt import CheckpointError, read_mindspore_checkpoint

GOLDEN_CKPT = GOLDEN_DIR / "mindspore" / "ssd_mobilenetv2_randbn.ckpt"


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "bn.moving_mean": torch.randn(8, generator=g, dtype=torch.float64),
        "half": torch.randn(5, 2, generator=g).half(),
        "bf16": torch.randn(4, 3, generator=g).bfloat16(),
        "ids": torch.arange(-6, 6, dtype=torch.int64).reshape(3, 4),
        "small": torch.tensor([1, 2, 255], dtype=torch.uint8),
        "int32": torch.tensor([[7, -8]], dtype=torch.int32),
        "mask": torch.tensor([True, False, True]),
        "global_step": torch.tensor(1234, dtype=torch.int32),  # a scalar: dims [0]
        "learning_rate": torch.tensor(0.05),
    }


def test_round_trip_all_types(tmp_path):
    tensors = _tensors()
    write_ckpt(tmp_path / "a.ckpt", tensors, strings={"note": "epoch 3"})
    ckpt = read_mindspore_checkpoint(tmp_path / "a.ckpt")
    assert list(ckpt.tensors) == list(tensors)
    for tag, expected in tensors.items():
        got = ckpt.tensors[tag]
        assert got.dtype == expected.dtype and got.shape == expected.shape, tag
        assert torch.equal(got, expected), tag
    assert ckpt.strings == {"note": "epoch 3"}
    assert ckpt.map_tensors == ()


def test_split_tensor_joins_in_order(tmp_path):
    """MindSpore cuts a tensor over 512 MiB along axis 0 into values with the same tag."""
    big = torch.arange(7 * 3 * 2, dtype=torch.float32).reshape(7, 3, 2)
    data = write_ckpt(tmp_path / "s.ckpt", {"a": torch.ones(2), "big": big, "z": torch.zeros(1)},
                      split={"big": 3})
    assert data.count(b"\n\x03big") == 3  # three values tagged "big"
    ckpt = read_mindspore_checkpoint(tmp_path / "s.ckpt")
    assert list(ckpt.tensors) == ["a", "big", "z"]
    assert torch.equal(ckpt.tensors["big"], big)


def test_crc_trailer_is_checked(tmp_path):
    tensors = {"w": torch.randn(3, 3)}
    data = write_ckpt(tmp_path / "c.ckpt", tensors, crc=True)
    assert torch.equal(read_mindspore_checkpoint(tmp_path / "c.ckpt").tensors["w"], tensors["w"])
    damaged = bytearray(data)
    damaged[-30] ^= 0xFF  # a byte of tensor data
    (tmp_path / "d.ckpt").write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="CRC"):
        read_mindspore_checkpoint(tmp_path / "d.ckpt")


def test_golden_file_reads_and_rewrites_byte_for_byte(tmp_path):
    """The real MindSpore file: every parameter of the list, and the writer reproduces it."""
    params = json.loads((GOLDEN_DIR / "mindspore" / "ssd_mobilenetv2_params.json").read_text())
    ckpt = read_mindspore_checkpoint(GOLDEN_CKPT)
    assert [p["name"] for p in params] == list(ckpt.tensors)
    assert all(list(ckpt.tensors[p["name"]].shape) == p["shape"] for p in params)
    assert all(ckpt.tensors[p["name"]].dtype == torch.float32 for p in params)
    assert write_ckpt(tmp_path / "again.ckpt", ckpt.tensors) == GOLDEN_CKPT.read_bytes()


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all\n", "is not a MindSpore checkpoint"),
    (b"PK\x03\x04" + bytes(64), "is a zip archive"),  # torch.save / Lightning files are zips
    (b"\x0a\xff\xff\xff\xff\x0f" + bytes(8), "is truncated"),  # a length beyond the end
])
def test_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path} {message}"):
        read_mindspore_checkpoint(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "e.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_mindspore_checkpoint(tmp_path / "e.ckpt")
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        read_mindspore_checkpoint(tmp_path / "nope.ckpt")


def test_truncated_file(tmp_path):
    data = GOLDEN_CKPT.read_bytes()
    path = tmp_path / "t.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_mindspore_checkpoint(path)


def test_split_tensor_missing_its_last_piece(tmp_path):
    """Cut exactly between two pieces: each message is whole, the tensor is not."""
    big = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    data = write_ckpt(tmp_path / "s.ckpt", {"big": big}, split={"big": 2})
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="'big'.*24 bytes, expected 48"):
        read_mindspore_checkpoint(tmp_path / "cut.ckpt")


def test_unknown_tensor_type(tmp_path):
    from mindspore_writer import tensor_proto, value_message

    (tmp_path / "q.ckpt").write_bytes(value_message("q", tensor_proto([2], "Int4", b"\x12")))
    with pytest.raises(CheckpointError, match="'q' has type 'Int4'"):
        read_mindspore_checkpoint(tmp_path / "q.ckpt")


def test_a_backbone_checkpoint_converts_without_a_model(tmp_path, capsys):
    """A MindCV backbone .ckpt needs only the recipe's backbone: classes null (from the data)
    is fine, and no recipe is written beside it (it is no whole model)."""
    import mindcv_replicas as replicas
    from safetensors.torch import load_file

    from ssdzoo.cli import main

    tensors = replicas.mindcv_state(replicas.randomize(replicas.MobileNetV2()))
    write_ckpt(tmp_path / "mobilenet_v2.ckpt", tensors)
    out = tmp_path / "backbone.safetensors"
    assert main(["convert", str(tmp_path / "mobilenet_v2.ckpt"), "--config", "ssd_mobilenetv2", "classes=null",
                 "--out", str(out)]) == 0
    converted = load_file(out)
    assert torch.equal(converted["conv_stem.weight"], tensors["features.0.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.safetensors", "mobilenet_v2.ckpt"]
    assert "wrote" in capsys.readouterr().out
