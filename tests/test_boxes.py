import torch

from ssdzoo.boxes import (box_area, clip_boxes, cxcywh_to_xyxy, pairwise_iou, xywh_to_xyxy,
                          xyxy_to_cxcywh, xyxy_to_xywh)


def test_conversions_round_trip():
    boxes_xyxy = torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes_xyxy)), boxes_xyxy)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(boxes_xyxy)), boxes_xyxy)
    torch.testing.assert_close(xyxy_to_cxcywh(boxes_xyxy)[0], torch.tensor([0.3, 0.55, 0.4, 0.7]))


def test_iou_hand_cases():
    unit = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    others = torch.tensor([[0.5, 0.5, 1.5, 1.5],   # quarter overlap: 0.25 / 1.75
                           [0.0, 0.0, 1.0, 1.0],   # identical
                           [2.0, 2.0, 3.0, 3.0],   # disjoint
                           [0.0, 0.0, 0.5, 1.0]])  # half inside
    torch.testing.assert_close(pairwise_iou(unit, others), torch.tensor([[1 / 7, 1.0, 0.0, 0.5]]))


def test_iou_broadcasts_over_batch():
    a = torch.rand(3, 5, 2)
    boxes1 = torch.cat([a, a + 0.3], -1)
    boxes2 = torch.cat([a[0, :4], a[0, :4] + 0.2], -1)
    batched = pairwise_iou(boxes1, boxes2)
    assert batched.shape == (3, 5, 4)
    torch.testing.assert_close(batched[1], pairwise_iou(boxes1[1], boxes2))


def test_area_and_clip():
    boxes_xyxy = torch.tensor([[-0.5, 0.2, 1.5, 0.4], [0.6, 0.6, 0.4, 0.4]])
    torch.testing.assert_close(clip_boxes(boxes_xyxy), torch.tensor([[0.0, 0.2, 1.0, 0.4], [0.6, 0.6, 0.4, 0.4]]))
    torch.testing.assert_close(box_area(boxes_xyxy), torch.tensor([0.4, 0.0]))
    torch.testing.assert_close(clip_boxes(torch.tensor([[-1.0, -1.0, 700.0, 500.0]]), height=480, width=640),
                               torch.tensor([[0.0, 0.0, 640.0, 480.0]]))
