"""int8 on real photos: TensorFlow's trained person detector (tests/golden/tfod), converted by
ssdzoo, exported to ONNX float32 and int8 (calibrated on the four photos): int8 finds every
person float32 finds with score >= 0.5, at IoU >= 0.9."""

from __future__ import annotations

import pytest
from conftest import GOLDEN_DIR

import ssdzoo
from ssdzoo.export import export_onnx
from ssdzoo.inference import Predictor
from ssdzoo.quantize import calibration_images, matched_detections, quantize_onnx

pytest.importorskip("onnxruntime")
PHOTOS = GOLDEN_DIR / "tfod" / "photos"
PERSON_GRAPH = GOLDEN_DIR / "tfod" / "ssdlite_mobilenet_v2_person.pb"


def test_int8_finds_every_person_float32_finds(tmp_path):
    convert = pytest.importorskip("ssdzoo.convert")
    if not hasattr(convert, "tensorflow_config"):
        pytest.skip("needs ssdzoo.convert's TensorFlow OD API reader (`ssdzoo convert FILE.pb`)")
    if not PERSON_GRAPH.is_file():
        pytest.fail(f"{PERSON_GRAPH} is missing: `make person-model` fetches it (tests/golden/README.md)")
    cfg = convert.tensorflow_config(ssdzoo.load_config("ssd_mobilenetv2"), PERSON_GRAPH,
                                    ["classes=[background,person]"])
    model = ssdzoo.build_model(cfg, weights=PERSON_GRAPH).eval()
    float_path = export_onnx(model, cfg, tmp_path / "person.onnx")
    int8_path = quantize_onnx(float_path, tmp_path / "person.int8.onnx", calibration_images(PHOTOS, cfg, 4))

    photos = sorted(PHOTOS.iterdir())
    reference = Predictor.from_weights(cfg, float_path).predict(photos)
    int8 = Predictor.from_weights(cfg, int8_path).predict(photos)
    found, total = matched_detections(reference, int8, min_score=0.5, iou=0.9)
    assert total == 2  # one person in astronaut.png, one in grace_hopper.jpg, as TensorFlow finds
    assert found == total
