"""A real trained TensorFlow OD API detector (ssdlite_mobilenet_v2 trained on people, a TF1 frozen
graph) against TensorFlow's own outputs on four photos (tests/golden/tfod, README there)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import GOLDEN_DIR, load_golden, person_graph, yx_to_xy

import ssdzoo
from ssdzoo.boxes import cxcywh_to_xyxy, pairwise_iou
from ssdzoo.cli import main
from ssdzoo.convert import read_tensorflow, tensorflow_config, tensorflow_to_ssdzoo
from ssdzoo.inference import Predictor, preprocess

PHOTOS = ("astronaut", "chelsea", "coffee", "grace_hopper")


@pytest.fixture(scope="module")
def person_cfg():
    return tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), person_graph(), ["classes=[background,person]"])


@pytest.fixture(scope="module")
def person_model(person_cfg):
    return ssdzoo.build_model(person_cfg, weights=person_graph()).eval()


def test_config_read_from_the_graph(person_cfg):
    source = read_tensorflow(person_graph())
    assert source.family == "tf1_ssdlite_mobilenet_v2"
    assert source.facts == {"image_size": (300, 300), "nms_threshold": 0.6, "bn_eps": 0.001}
    assert (person_cfg.num_classes, person_cfg.classes) == (2, ("background", "person"))
    assert person_cfg.num_ssd_boxes == 1917 and person_cfg.feature_size == (19, 10, 5, 3, 2, 1)
    assert (person_cfg.anchor_centres, person_cfg.image_resize, person_cfg.nms_plus_one) == ("tensorflow", "legacy", False)
    assert person_cfg.mean == person_cfg.std == (0.5, 0.5, 0.5)


def test_every_weight_of_the_graph_lands(person_cfg):
    model = ssdzoo.build_model(person_cfg)
    conversion = tensorflow_to_ssdzoo(person_graph(), model, person_cfg)
    own = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert sorted(conversion.sources) == sorted(own)
    # each TF weight fills one ssdzoo tensor, except block 13's expansion, which TF's backbone and
    # its first feature map (layer_15/expansion_output) share and ssdzoo holds twice
    used = list(conversion.sources.values())
    twice = sorted({n for n in used if used.count(n) == 2})
    assert twice == sorted(f"FeatureExtractor/MobilenetV2/expanded_conv_13/expand/{leaf}" for leaf in
                           ("weights", "BatchNorm/gamma", "BatchNorm/beta", "BatchNorm/moving_mean",
                            "BatchNorm/moving_variance"))
    assert len(set(used)) == len(used) - len(twice)
    graph = read_tensorflow(person_graph())
    weights = [n for n in graph.tensors if n.rpartition("/")[2] in
               ("weights", "biases", "depthwise_weights", "gamma", "beta", "moving_mean", "moving_variance")]
    assert sorted(set(used)) == sorted(weights)  # and every weight of the graph is used
    assert set(conversion.dropped.values()) == {"graph constant (shapes, anchors, pre/post-processing)",
                                                "string constant"}


def test_anchors_equal_tensorflows(person_cfg):
    tf_anchors_xyxy = yx_to_xy(load_golden("tfod/anchors.npz")["anchors_ymin_xmin_ymax_xmax"])
    ours = cxcywh_to_xyxy(ssdzoo.default_boxes(person_cfg)).numpy()
    np.testing.assert_allclose(ours, tf_anchors_xyxy, atol=1e-5, rtol=0)  # measured: 1.2e-7


@pytest.mark.parametrize("photo", PHOTOS)
def test_raw_outputs_match_tensorflow(person_model, photo):
    """On TF's own preprocessed input: box encodings and class logits before decoding."""
    golden = load_golden(f"tfod/{photo}.npz")
    x = torch.from_numpy(golden["input_normalized_nhwc"]).permute(0, 3, 1, 2)
    with torch.no_grad():
        loc, logits = person_model(x)
    np.testing.assert_allclose(loc.numpy(), yx_to_xy(golden["box_encodings_ty_tx_th_tw"]), atol=1e-3, rtol=0)
    np.testing.assert_allclose(logits.numpy(), golden["class_logits"], atol=1e-3, rtol=0)
    assert np.abs(loc.numpy() - yx_to_xy(golden["box_encodings_ty_tx_th_tw"])).max() < 1e-4  # measured 1.2e-5
    assert np.abs(logits.numpy() - golden["class_logits"]).max() < 1e-4  # measured 1.8e-5


@pytest.mark.parametrize("photo", PHOTOS)
def test_preprocessing_matches_tensorflows(person_cfg, photo):
    """TF1's legacy bilinear resize (no antialiasing, no half-pixel centres), then x / 127.5 - 1."""
    golden = load_golden(f"tfod/{photo}.npz")
    batch, image_hw = preprocess([GOLDEN_DIR / "tfod" / "photos" / str(golden["photo"])], person_cfg)
    assert image_hw.tolist() == [golden["image_hw"].tolist()]
    np.testing.assert_allclose(batch.permute(0, 2, 3, 1).numpy(), golden["input_normalized_nhwc"], atol=1e-4, rtol=0)


def tensorflow_detections(photo: str) -> tuple[np.ndarray, np.ndarray]:
    """TF's final detections of a photo: (D, 4) xyxy pixels, (D,) scores (all class 1)."""
    golden = load_golden(f"tfod/{photo}.npz")
    count = int(golden["num_detections"][0])
    assert (golden["detection_classes"][0, :count] == 1).all()
    height, width = golden["image_hw"]
    boxes = yx_to_xy(golden["detection_boxes_ymin_xmin_ymax_xmax"][0, :count]) * [width, height, width, height]
    return boxes, golden["detection_scores"][0, :count]


def check_against_tensorflow(photo: str, boxes_xyxy: np.ndarray, scores: np.ndarray) -> None:
    """Every TF detection with score >= 0.3 found with IoU >= 0.95 and a score within 0.02; no
    detection over 0.5 that TF lacks."""
    tf_boxes, tf_scores = tensorflow_detections(photo)
    iou = pairwise_iou(torch.tensor(tf_boxes, dtype=torch.float64), torch.tensor(boxes_xyxy, dtype=torch.float64)).numpy()
    for i in np.nonzero(tf_scores >= 0.3)[0]:
        found = (iou[i] >= 0.95) & (np.abs(scores - tf_scores[i]) <= 0.02)
        assert found.any(), f"{photo}: TensorFlow's detection {i} (score {tf_scores[i]:.3f}) not found"
    for j in np.nonzero(scores > 0.5)[0]:
        assert (iou[:, j] >= 0.95).any(), f"{photo}: detection {j} (score {scores[j]:.3f}) TensorFlow lacks"


def test_predict_on_the_photos_matches_tensorflow(tmp_path, capsys):
    """`ssdzoo predict` straight from the frozen graph: original files in, pixels out."""
    out = tmp_path / "preds"
    assert main(["predict", "ssd_mobilenetv2", str(GOLDEN_DIR / "tfod" / "photos"), "--checkpoint", str(person_graph()),
                 "--out", str(out), "--score", "0.2", "--set", "classes=[background,person]"]) == 0
    assert "a TensorFlow OD API model" in capsys.readouterr().out
    rows = json.loads((out / "detections.json").read_text())
    found = 0
    for photo in PHOTOS:
        name = next(p.name for p in (GOLDEN_DIR / "tfod" / "photos").iterdir() if p.stem == photo)
        mine = [r for r in rows if r["file_name"] == name]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in mine)]).reshape(-1, 4)
        check_against_tensorflow(photo, boxes, np.array([r["score"] for r in mine]))
        found += sum(r["score"] > 0.5 for r in mine)
        assert (out / name).with_suffix(".png" if name.endswith(".png") else ".jpg").is_file()
    assert found == 2  # one person in astronaut.png, one in grace_hopper.jpg, as TensorFlow finds


def test_converted_files_reload_and_export_to_onnx(tmp_path, capsys):
    """`ssdzoo convert` writes weights + recipe; the recipe loads as is; `ssdzoo export --nms`
    of it runs in onnxruntime with TensorFlow's detections."""
    weights = tmp_path / "person.safetensors"
    assert main(["convert", str(person_graph()), "--config", "ssd_mobilenetv2", "classes=[background,person]",
                 "--out", str(weights)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["person.safetensors", "person.yaml"]
    cfg = ssdzoo.load_config(tmp_path / "person.yaml")
    assert cfg == tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), person_graph(),
                                    ["classes=[background,person]"])
    onnx_path = tmp_path / "person.onnx"
    photos = GOLDEN_DIR / "tfod" / "photos"
    assert main(["export", str(tmp_path / "person.yaml"), "--checkpoint", str(weights), "--out", str(onnx_path),
                 "--nms", "--check-images", str(photos)]) == 0
    capsys.readouterr()
    predictor = Predictor.from_weights(cfg, onnx_path, min_score=0.2)
    files = sorted(photos.iterdir())
    for file, detections in zip(files, predictor.predict(files)):
        check_against_tensorflow(file.stem, detections.boxes.numpy(), detections.scores.numpy())


def test_finetuning_from_the_converted_person_model(person_cfg, person_model, tmp_path):
    """`train --weights` from TF's person detector (as `ssdzoo convert` writes it) onto three
    classes: everything but the class-logit convs comes from the file."""
    from safetensors.torch import save_file

    from ssdzoo.finetune import load_for_finetuning

    path = tmp_path / "person.safetensors"
    save_file({k: v.contiguous() for k, v in person_model.state_dict().items()}, str(path))
    cfg = person_cfg.replace(classes=("background", "a", "b", "c"), num_classes=4)
    model = ssdzoo.build_model(cfg)
    report = load_for_finetuning(model, path, cfg)
    assert len(report.fresh) == 12 and "2 classes, this model 4" in report.reason
    source, state = person_model.state_dict(), model.state_dict()
    assert len(report.loaded) == len(state) - 12
    assert all(torch.equal(state[k], source[k]) for k in report.loaded)
    with pytest.raises(ValueError, match="a TensorFlow model: convert it first"):
        load_for_finetuning(model, person_graph(), cfg)


def test_a_converted_model_points_at_its_recipe(tmp_path, capsys, caplog):
    """The files `ssdzoo convert` writes: readable like any other file; a recipe that does not
    fit, or none at all, names the .yaml written beside the weights; fine-tuning takes the
    weights' [-1, 1] input normalization."""
    import logging
    import stat

    from ssdzoo.finetune import weights_normalization

    weights = tmp_path / "person.safetensors"
    assert main(["convert", str(person_graph()), "--config", "ssd_mobilenetv2", "classes=[background,person]",
                 "--out", str(weights)]) == 0
    (tmp_path / "plain.txt").write_text("")
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert stat.S_IMODE(weights.stat().st_mode) == stat.S_IMODE((tmp_path / "person.yaml").stat().st_mode) == plain
    photo = str(GOLDEN_DIR / "tfod" / "photos" / "astronaut.png")
    capsys.readouterr()
    assert main(["predict", "ssd_mobilenetv2", photo, "--checkpoint", str(weights), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.count("(model ") == 1, err  # one example, not a wall of them
    assert f"`ssdzoo convert` wrote its recipe beside it, {tmp_path / 'person.yaml'}: use that as the config" in err
    assert main(["predict", photo, "--checkpoint", str(weights), "--out", str(tmp_path / "p")]) == 2
    assert (f"{weights} carries no config: name the recipe it was trained with ({tmp_path / 'person.yaml'}, which "
            "`ssdzoo convert` wrote beside it)") in capsys.readouterr().err
    # the same layers, other numerics: loads, with a warning naming the keys
    with caplog.at_level(logging.WARNING):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", ["classes=[background,person]"]), weights=weights)
    assert "anchor_centres, image_resize" in caplog.text and "use " + str(tmp_path / "person.yaml") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cfg = weights_normalization(ssdzoo.load_config("ssd_mobilenetv2"), weights)
    assert cfg.mean == cfg.std == (0.5, 0.5, 0.5)
    assert "its inputs were normalized with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]" in caplog.text
    chosen = ssdzoo.load_config("ssd_mobilenetv2", ["mean=[0.4,0.4,0.4]"])
    assert weights_normalization(chosen, weights, {"mean"}).mean == (0.4, 0.4, 0.4)
