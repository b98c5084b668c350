"""postprocess's two kernels, one rule: ``select_detections`` (eager, what eval, predict and the
benchmark run) against ``graph_detections`` (what ``ssdzoo export --nms`` puts in the ONNX graph),
in PyTorch and in onnxruntime, on the seed's golden cases and on torchvision-style settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_golden, yx_to_xy
from ssdzoo.postprocess import graph_detections, nms_per_class_onnx, select_detections

SEED = dict(min_score=0.1, nms_threshold=0.6, max_per_class=100)  # the seed recipe's, +1 pixels
# torchvision's ssd300_vgg16 rule: softmax scores, clipped boxes, plain IoU, caps before and after NMS
TORCHVISION = dict(min_score=0.01, nms_threshold=0.45, max_per_class=400, plus_one=False, pre_nms_top_k=400,
                   max_detections=200, clip=True)


def golden_batch():
    """The six golden cases (1917 anchors, 81 classes; 286 to 8,000 seed detections) as one batch."""
    ref = load_golden("postprocess.npz")
    boxes_xyxy = torch.stack([torch.from_numpy(yx_to_xy(ref[f"case{c}_boxes"])) for c in range(6)])
    probs = torch.stack([torch.from_numpy(ref[f"case{c}_scores"]) for c in range(6)])
    image_hw = torch.stack([torch.from_numpy(ref[f"case{c}_hw"]) for c in range(6)])
    return boxes_xyxy, probs, image_hw


def random_batch(seed: int = 0, num_images: int = 3, num_anchors: int = 1500, num_classes: int = 21):
    """Boxes around random centres (some past the image edge), softmax scores of spread logits."""
    generator = torch.Generator().manual_seed(seed)
    centre = torch.rand(num_images, num_anchors, 2, generator=generator)
    size = 0.02 + 0.4 * torch.rand(num_images, num_anchors, 2, generator=generator)
    boxes_xyxy = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    probs = (3 * torch.randn(num_images, num_anchors, num_classes, generator=generator)).softmax(-1)
    image_hw = torch.tensor([[480, 640], [375, 500], [300, 300]])[:num_images]
    return boxes_xyxy, probs, image_hw


CASES = {"golden, seed rule": (golden_batch, SEED), "golden, plain IoU": (golden_batch, {**SEED, "plus_one": False}),
         "random, torchvision rule": (random_batch, TORCHVISION),
         "random, caps only": (random_batch, {**SEED, "pre_nms_top_k": 50, "max_detections": 30})}


def assert_same(flat, detections, *, box_tol=1e-4):
    """Flat (image_i, boxes_px, scores, labels) and per-image Detections hold the same
    detections, as sets: labels and scores exactly, boxes within box_tol pixels."""
    image_i, boxes_px, scores, labels = (torch.as_tensor(np.asarray(t)) for t in flat)
    assert len(scores) == sum(len(d.scores) for d in detections)
    for i, want in enumerate(detections):
        mine = image_i == i
        got_rows, want_rows = (_rows(*t) for t in ((labels[mine], scores[mine], boxes_px[mine]),
                                                   (want.labels, want.scores, want.boxes)))
        torch.testing.assert_close(got_rows[:, :2], want_rows[:, :2], rtol=0, atol=0)
        torch.testing.assert_close(got_rows[:, 2:], want_rows[:, 2:], rtol=0, atol=box_tol)


def _rows(labels, scores, boxes_px):
    rows = torch.cat([labels[:, None].double(), scores[:, None].double(), boxes_px.double()], dim=1)
    for column in (2, 1, 0):  # stable sorts: by label, then score, then x1
        rows = rows[torch.sort(rows[:, column], stable=True).indices]
    return rows


@pytest.mark.parametrize("case", CASES)
def test_graph_kernel_in_pytorch_equals_select_detections(case):
    make, settings = CASES[case]
    boxes_xyxy, probs, image_hw = make()
    expected = select_detections(boxes_xyxy, probs, image_hw, **settings)
    assert sum(len(d.scores) for d in expected) >= 90
    assert_same(graph_detections(boxes_xyxy, probs, image_hw.float(), **settings), expected)


class _GraphDetections(nn.Module):
    def __init__(self, settings: dict):
        super().__init__()
        self.settings = settings

    def forward(self, boxes_xyxy, probs, image_hw):
        return graph_detections(boxes_xyxy, probs, image_hw, **self.settings)


@pytest.mark.parametrize("case", CASES)
def test_graph_kernel_in_onnxruntime_equals_select_detections(case, tmp_path):
    """onnxruntime's NonMaxSuppression (float32 IoU) against ssdzoo's greedy NMS (float64)."""
    ort = pytest.importorskip("onnxruntime")
    make, settings = CASES[case]
    boxes_xyxy, probs, image_hw = make()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        _GraphDetections(settings).eval(), (boxes_xyxy[:2], probs[:2], image_hw[:2].float()), dynamo=True,
        dynamic_shapes=({0: batch}, {0: batch}, {0: batch}), verbose=False,
        custom_translation_table={torch.ops.ssdzoo.nms_per_class.default: nms_per_class_onnx})
    program.save(tmp_path / "graph.onnx")
    session = ort.InferenceSession(str(tmp_path / "graph.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    flat = session.run(None, dict(zip(names, (boxes_xyxy.numpy(), probs.numpy(), image_hw.float().numpy()))))
    assert_same(flat, select_detections(boxes_xyxy, probs, image_hw, **settings))
