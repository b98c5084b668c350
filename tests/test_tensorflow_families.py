"""The TF OD API SSD families against TensorFlow itself (tests/golden/tfod/families, made by
TensorFlow 2.21 with the OD API in a scratch environment, see tests/golden/README.md): each
family's checkpoint names and shapes as TF writes them for the zoo's 90-class model, and a
3-class model at 160x160 whose weights are ``tensorflow_writer.fixture_value``, run by TF on a
real photo. The tests rebuild those weights without TensorFlow, write TF's file formats, convert
them and compare ssdzoo's outputs with TF's."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR, load_golden, person_graph, yx_to_xy
from tensorflow_writer import fixture_value, object_graph, write_bundle, write_graph

import ssdzoo
from ssdzoo.boxes import cxcywh_to_xyxy
from ssdzoo.convert import tensorflow_config, tensorflow_to_ssdzoo
from ssdzoo.convert.tensorflow import TFSource
from ssdzoo.convert.tensorflow_names import identify_family, normalize_name
from ssdzoo.inference import preprocess

TF2 = {"ssd_mobilenet_v2_320x320": "tf2_ssd_mobilenet_v2",
       "ssd_mobilenet_v2_fpnlite_320x320": "tf2_ssd_mobilenet_v2_fpnlite",
       "ssd_resnet50_v1_fpn_640x640": "tf2_ssd_resnet50_v1_fpn"}
FIXTURES = {**TF2, "ssd_mobilenet_v2_tf1": "tf1_ssd_mobilenet_v2"}
GRAPH_IMAGE_SIZE = "Preprocessor/map/while/ResizeImage/stack"  # what a TF1 frozen graph states
PIPELINE = "model {{ ssd {{ image_resizer {{ fixed_shape_resizer {{ height: {0} width: {0} }} }} }} }}\n"


def names_of(fixture: dict, key: str = "names_json") -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(shape)) for name, shape in json.loads(str(fixture[key]))]


def write_tensorflow_file(name: str, fixture: dict, folder, *, saved_model: bool = False):
    """The fixture's weights in TF's own format: a frozen graph (TF1) or a checkpoint with its
    pipeline.config (TF2; ``saved_model``: keyed as a SavedModel's variables/)."""
    size = int(fixture["image_size"][0])
    values = {n: fixture_value(normalize_name(n), s) for n, s in names_of(fixture)}
    if name == "ssd_mobilenet_v2_tf1":
        return write_graph(folder / "frozen_inference_graph.pb", {**values, GRAPH_IMAGE_SIZE: np.array([size, size], np.int32)})
    (folder / "pipeline.config").write_text(PIPELINE.format(size))
    if not saved_model:
        (folder / "checkpoint").mkdir()
        return write_bundle(folder / "checkpoint" / "ckpt-0", values, {"_CHECKPOINTABLE_OBJECT_GRAPH": b""})
    keys = [n[len("model/"):] for n in values]
    graph, renamed = object_graph(keys)
    aggregate = {k: values["model/" + v[len("_model/"):]] for k, v in renamed.items()}
    (folder / "saved_model" / "variables").mkdir(parents=True)
    write_bundle(folder / "saved_model" / "variables" / "variables", aggregate, {"_CHECKPOINTABLE_OBJECT_GRAPH": graph})
    return folder / "saved_model"


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def family(request, tmp_path_factory):
    name = request.param
    fixture = load_golden(f"tfod/families/{name}.npz")
    path = write_tensorflow_file(name, fixture, tmp_path_factory.mktemp(name))
    cfg = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), path)
    model = ssdzoo.build_model(cfg, weights=path).eval()
    return name, fixture, path, cfg, model


def test_outputs_match_tensorflow(family):
    """Raw box encodings and class logits on TF's preprocessed photo (measured: at most 3.3e-4
    for outputs up to 20 in size, FPNLite; 1e-4 or less for the others)."""
    name, fixture, _, cfg, model = family
    assert cfg.image_size == (160, 160) and cfg.num_classes == 4  # read from pipeline.config / the graph
    x = torch.from_numpy(fixture["input_nhwc"].astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        loc, logits = model(x)
    np.testing.assert_allclose(loc.numpy(), yx_to_xy(fixture["box_encodings_ty_tx_th_tw"]), atol=1e-3, rtol=0)
    np.testing.assert_allclose(logits.numpy(), fixture["class_predictions_with_background"], atol=1e-3, rtol=0)
    assert loc.abs().max() > 5 and logits.std() > 1  # the random network is alive, not all zero


def test_anchors_and_preprocessing_match_tensorflow(family):
    name, fixture, _, cfg, _ = family
    ours = cxcywh_to_xyxy(ssdzoo.default_boxes(cfg)).numpy()
    np.testing.assert_allclose(ours, yx_to_xy(fixture["anchors_ymin_xmin_ymax_xmax"]), atol=1e-5, rtol=0)
    batch, _ = preprocess([GOLDEN_DIR / "tfod" / "photos" / str(fixture["photo"])], cfg)
    tf_input = fixture["input_nhwc"].astype(np.float32)  # stored as float16: rtol 1e-3 covers its rounding
    pixel = 1 / (255 * cfg.std[0])  # one grey level in the network's input units
    np.testing.assert_allclose(batch.permute(0, 2, 3, 1).numpy(), tf_input, atol=0.01 * pixel, rtol=1e-3)


@pytest.mark.parametrize("name, boxes", [("ssd_mobilenet_v2_320x320", 1917), ("ssd_mobilenet_v2_fpnlite_320x320", 12804)])
def test_zoo_size_anchors_match_tensorflow(name, boxes):
    """At the zoo's sizes; FPNLite at 320 has stride-128 anchors at 128 * j (TF's offset rule)."""
    fixture = load_golden(f"tfod/families/{name}.npz")
    source = TFSource(GOLDEN_DIR, "checkpoint", TF2[name], {normalize_name(n): torch.zeros(s) for n, s in
                      names_of(fixture, "zoo_names_json") if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}, {},
                      {"image_size": tuple(int(v) for v in fixture["zoo_image_size"])})
    cfg = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), GOLDEN_DIR, source=source)
    assert cfg.num_ssd_boxes == boxes
    ours = cxcywh_to_xyxy(ssdzoo.default_boxes(cfg)).numpy()
    np.testing.assert_allclose(ours, yx_to_xy(fixture["zoo_anchors_ymin_xmin_ymax_xmax"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(TF2))
def test_zoo_checkpoints_every_tensor_lands_once(name):
    """The 90-class zoo model's names and shapes, as TF writes them: each weight fills exactly
    one ssdzoo tensor (TF2 ssd_mobilenet_v2's block-13 expansion two: its backbone and its first
    feature map share it), every ssdzoo tensor is filled, only bookkeeping is left over."""
    fixture = load_golden(f"tfod/families/{name}.npz")
    names = names_of(fixture, "zoo_names_json")
    assert ("_CHECKPOINTABLE_OBJECT_GRAPH", ()) in names  # a string entry, read as such
    tensors = {normalize_name(n): torch.zeros(s) for n, s in names if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert identify_family(set(tensors)) == TF2[name]
    source = TFSource(GOLDEN_DIR, "checkpoint", TF2[name], tensors, {},
                      {"image_size": tuple(int(v) for v in fixture["zoo_image_size"])})
    cfg = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), GOLDEN_DIR, source=source)
    assert cfg.num_classes == 91 and cfg.classes[1] == "person" and cfg.classes[12] == "unused_12"
    assert cfg.classes[90] == "toothbrush"  # TF's columns are COCO category ids
    model = ssdzoo.build_model(cfg)
    conversion = tensorflow_to_ssdzoo(GOLDEN_DIR, model, cfg, source=source)
    uses = Counter(conversion.sources.values())
    expected_twice = 5 if name == "ssd_mobilenet_v2_320x320" else 0
    assert sorted(uses.values()).count(2) == expected_twice and max(uses.values()) <= 2
    assert set(uses) == set(tensors) - {"save_counter"}
    assert set(conversion.dropped) == {"save_counter"}
    filled = set(conversion.sources)
    zero_biases = {k for k in model.state_dict() if k not in filled and not k.endswith("num_batches_tracked")}
    assert all(".convs." in k and k.endswith("bias") for k in zero_biases)  # TF's tower convs have no bias
    assert len(zero_biases) == (4 if "fpnlite" in name else 8 if "resnet" in name else 0)


def test_a_saved_model_reads_as_its_checkpoint(tmp_path):
    """A SavedModel's variables/ keys TF2 weights by Keras' variable lists
    (``_model/variables/12``); its object graph gives back the checkpoint's names."""
    name = "ssd_mobilenet_v2_320x320"
    fixture = load_golden(f"tfod/families/{name}.npz")
    saved = write_tensorflow_file(name, fixture, tmp_path, saved_model=True)
    cfg = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), tmp_path)  # the zoo archive's folder
    assert cfg.image_size == (160, 160)
    model = ssdzoo.build_model(cfg, weights=saved).eval()
    with torch.no_grad():
        loc, logits = model(torch.from_numpy(fixture["input_nhwc"].astype(np.float32)).permute(0, 3, 1, 2))
    np.testing.assert_allclose(loc.numpy(), yx_to_xy(fixture["box_encodings_ty_tx_th_tw"]), atol=1e-3, rtol=0)
    np.testing.assert_allclose(logits.numpy(), fixture["class_predictions_with_background"], atol=1e-3, rtol=0)


def test_a_saved_model_written_by_tensorflow():
    """TF's own SavedModel of a small Keras layer tree: variables keyed ``_model/variables/<i>``."""
    from ssdzoo.convert.tensorflow_files import read_tf_checkpoint

    folder = GOLDEN_DIR / "tfod" / "files"
    expected = json.loads((folder / "tf2_saved_model_keys.json").read_text())
    checkpoint = read_tf_checkpoint(folder / "tf2_saved_model")
    assert set(checkpoint.tensors) == set(expected.values())
    for aggregate_key, named in expected.items():
        i = int(aggregate_key.split("/")[2])
        value = checkpoint.tensors[named]
        assert torch.equal(value, torch.arange(value.numel(), dtype=torch.float32).reshape(value.shape) + i)


def test_missing_and_foreign_tensors_are_named(tmp_path):
    name = "ssd_mobilenet_v2_tf1"
    fixture = load_golden(f"tfod/families/{name}.npz")
    values = {n: fixture_value(n, s) for n, s in names_of(fixture)}
    size = np.array([160, 160], np.int32)
    lacking = {k: v for k, v in values.items() if k != "FeatureExtractor/MobilenetV2/Conv_1/BatchNorm/gamma"}
    path = write_graph(tmp_path / "lacking.pb", {**lacking, GRAPH_IMAGE_SIZE: size})
    cfg = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), path)
    with pytest.raises(ValueError, match=r"lacks 1 tensors of the model: backbone\.model\.bn2\.weight"):
        ssdzoo.build_model(cfg, weights=path)
    extra = {**values, "FeatureExtractor/MobilenetV2/layer_20_1_Conv2d_6_1x1_64/weights": np.ones((1, 1, 4, 4), np.float32)}
    path = write_graph(tmp_path / "extra.pb", {**extra, GRAPH_IMAGE_SIZE: size})
    with pytest.raises(ValueError, match="1 weights fit no part of ssdzoo's model: .*layer_20_1_Conv2d_6_1x1_64/weights"):
        ssdzoo.build_model(cfg, weights=path)
    ssdlite = tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), person_graph())
    with pytest.raises(ValueError, match="tensorflow_config derives from it"):  # another family's config
        ssdzoo.build_model(ssdlite, weights=write_graph(tmp_path / "full.pb", {**values, GRAPH_IMAGE_SIZE: size}))


def test_label_maps_and_class_names(tmp_path):
    from ssdzoo.convert.tensorflow import class_names, read_label_map

    label_map = tmp_path / "labels.pbtxt"
    label_map.write_text("item {\n  name: '/m/01g317'\n  id: 1\n  display_name: 'person'\n}\n"
                         "item { id: 3 name: 'car' }\n")
    assert read_label_map(label_map) == {1: "person", 3: "car"}
    assert class_names(4, read_label_map(label_map)) == ("background", "person", "class_2", "car")
    with pytest.raises(ValueError, match=r"label map ids \[3\] do not fit a model of 2 classes"):
        class_names(3, {1: "a", 3: "b"})
    label_map.write_text("nothing here")
    with pytest.raises(ValueError, match="not a TF label map"):
        read_label_map(label_map)
