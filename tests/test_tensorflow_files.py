"""The TensorFlow readers (GraphDef, tensor bundle) on files TensorFlow itself wrote
(tests/golden/tfod/files) and on files written by hand (tensorflow_writer), and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR, person_graph
from tensorflow_writer import write_bundle, write_graph

from ssdzoo.convert.tensorflow import read_tensorflow
from ssdzoo.convert.tensorflow_files import TFFileError, bundle_prefix, read_tf_checkpoint, read_tf_graph
from ssdzoo.convert.tensorflow_names import use_moving_averages

FILES = GOLDEN_DIR / "tfod" / "files"
DTYPES = {"f32", "f16", "f64", "i64", "i32", "u8", "b", "i8", "bf16"}


@pytest.fixture(scope="module")
def expected():
    with np.load(FILES / "expected.npz") as data:
        return dict(data)


def assert_values(tensors: dict[str, torch.Tensor], expected: dict, key) -> None:
    for name, want in expected.items():
        got = tensors[key(name)]
        if name == "bf16":
            assert got.dtype == torch.bfloat16
            got = got.float()
        np.testing.assert_array_equal(got.numpy(), want)
        assert got.numpy().dtype == want.dtype and got.shape == want.shape


def test_a_tf2_checkpoint_written_by_tensorflow(expected):
    checkpoint = read_tf_checkpoint(FILES / "tf2_ckpt")
    assert_values(checkpoint.tensors, expected, lambda n: f"model/{n}/.ATTRIBUTES/VARIABLE_VALUE")
    assert len(checkpoint.tensors) == len(DTYPES)
    assert checkpoint.strings["model/text/.ATTRIBUTES/VARIABLE_VALUE"] == [b"hello"]
    assert set(checkpoint.strings) == {"model/text/.ATTRIBUTES/VARIABLE_VALUE", "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_a_tf1_checkpoint_with_weight_averages():
    checkpoint = read_tf_checkpoint(FILES / "tf1_model.ckpt.index")
    weights = "FeatureExtractor/MobilenetV2/Conv/weights"
    assert checkpoint.tensors["global_step"].item() == 1234
    tensors, dropped = use_moving_averages(checkpoint.tensors)
    assert torch.equal(tensors[weights], torch.full((3, 3, 3, 2), 0.5))  # the average, not the raw 0.25
    assert dropped == {weights: "raw value; its ExponentialMovingAverage is used"}


def test_a_frozen_graph_written_by_tensorflow(expected):
    """TF writes small constants in typed fields (float_val, half_val, int64_val, ...) and a
    one-value constant once, to be repeated; larger ones as tensor_content."""
    graph = read_tf_graph(FILES / "tf1_frozen.pb")
    assert_values(graph.tensors, expected, lambda n: f"const_{n}")
    assert torch.equal(graph.tensors["const_fill"], torch.full((2, 3), 1.5))
    assert torch.equal(graph.tensors["FeatureExtractor/MobilenetV2/Conv/weights"], torch.full((3, 3, 3, 2), 0.25))
    assert graph.strings == {"const_text": [b"a", b"bc"]}
    assert all(node.op == "Const" for node in graph.nodes.values())


def test_hand_written_files_round_trip(tmp_path):
    tensors = {"a/kernel": np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32),
               "b": np.arange(7, dtype=np.int64), "c/half": np.array([1.5, -2], np.float16), "d": np.array(True),
               "e/ab": np.zeros((0, 3), np.float32)}
    prefix = write_bundle(tmp_path / "ckpt-3", tensors, {"note": b"hi"})
    checkpoint = read_tf_checkpoint(prefix)
    graph = read_tf_graph(write_graph(tmp_path / "g.pb", tensors, extra_nodes=(("input", "Placeholder"),)))
    for read in (checkpoint.tensors, graph.tensors):
        assert set(read) == set(tensors)
        for name, value in tensors.items():
            np.testing.assert_array_equal(read[name].numpy(), value)
    assert checkpoint.strings == {"note": [b"hi"]}
    assert graph.nodes["input"].op == "Placeholder"


def test_checkpoint_paths(tmp_path):
    """A checkpoint is named by its prefix, either file, or the folder holding it (the zoo's
    archive layout, a SavedModel's variables/)."""
    (tmp_path / "zoo" / "checkpoint").mkdir(parents=True)
    prefix = write_bundle(tmp_path / "zoo" / "checkpoint" / "ckpt-0", {"w": np.ones(2, np.float32)})
    for given in (prefix, prefix.with_name("ckpt-0.index"), prefix.with_name("ckpt-0.data-00000-of-00001"),
                  tmp_path / "zoo", tmp_path / "zoo" / "checkpoint"):
        assert bundle_prefix(given) == prefix
    assert bundle_prefix(tmp_path / "nothing") is None
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint"):
        read_tf_checkpoint(tmp_path / "nothing")


def test_truncated_and_damaged_checkpoints(tmp_path):
    prefix = write_bundle(tmp_path / "ckpt", {"w": np.ones((100,), np.float32), "v": np.ones(3, np.float32)},
                          truncate_data=10)
    with pytest.raises(TFFileError, match=r"ckpt.data-00000-of-00001 is truncated: tensor 'v' needs bytes 400..412, the file has 402"):
        read_tf_checkpoint(prefix)
    index = prefix.with_name("ckpt.index")
    data = index.read_bytes()
    index.write_bytes(data[:-5])
    with pytest.raises(TFFileError, match="no table magic"):
        read_tf_checkpoint(prefix)
    index.write_bytes(data[:30] + data[-48:])  # the footer kept, the blocks cut
    with pytest.raises(TFFileError, match="truncated or damaged"):
        read_tf_checkpoint(prefix)
    index.write_bytes(data)
    prefix.with_name("ckpt.data-00000-of-00001").unlink()
    with pytest.raises(TFFileError, match="data shard.* missing"):
        read_tf_checkpoint(prefix)


def test_foreign_files(tmp_path):
    (tmp_path / "x.index").write_bytes(b"this is not a table at all, not at all" * 3)
    with pytest.raises(TFFileError, match="not a TensorFlow checkpoint index"):
        read_tf_checkpoint(tmp_path / "x")
    (tmp_path / "model.pb").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(TFFileError, match="zip archive"):
        read_tf_graph(tmp_path / "model.pb")
    (tmp_path / "noise.pb").write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(TFFileError, match="noise.pb is not a TensorFlow"):
        read_tf_graph(tmp_path / "noise.pb")
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(TFFileError, match="empty"):
        read_tf_graph(tmp_path / "empty.pb")


def test_a_truncated_frozen_graph(tmp_path):
    """Cut inside a message: a parse error; cut between nodes: the graph reads, and the
    conversion then names the weights it lacks."""
    data = person_graph().read_bytes()
    cut = tmp_path / "cut.pb"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(TFFileError, match="cut.pb is not a TensorFlow"):
        read_tf_graph(cut)


def test_a_graph_of_another_architecture(tmp_path):
    graph = write_graph(tmp_path / "inception.pb", {
        "FeatureExtractor/InceptionV2/Conv2d_1a_7x7/depthwise_weights": np.ones((7, 7, 3, 8), np.float32),
        "BoxPredictor_0/BoxEncodingPredictor/weights": np.ones((1, 1, 8, 12), np.float32)})
    with pytest.raises(TFFileError, match="not a TensorFlow Object Detection API SSD ssdzoo can convert.*InceptionV2"):
        read_tensorflow(graph)


def test_a_converted_model_takes_its_classes_and_no_backbone_weights_from_the_recipe(tmp_path, capsys):
    """The file's classes can be named but not nulled; the recipe's backbone weights
    (backbone_pretrained) are not what the TF file's model loads."""
    from ssdzoo.cli import main
    from ssdzoo.config import load_config
    from ssdzoo.convert.tensorflow import tensorflow_config

    cfg = tensorflow_config(load_config("ssd_mobilenetv2", ["backbone_pretrained=true"]), person_graph())
    assert cfg.backbone_pretrained is False and cfg.backbone_ckpt_path is None
    with pytest.raises(ValueError, match=r"classes=null: a TensorFlow model's classes come from the file \(.*"
                                         r"ssdlite_mobilenet_v2_person.pb predicts 1\)"):
        tensorflow_config(load_config("ssd_mobilenetv2"), person_graph(), ["classes=null"])
    assert main(["convert", str(person_graph()), "--config", "ssd_mobilenetv2", "classes=null",
                 "--out", str(tmp_path / "person.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "classes=null: a TensorFlow model's classes come from the file" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
