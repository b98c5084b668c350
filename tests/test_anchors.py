import math

import pytest
import torch

import ssdzoo
from ssdzoo.anchors import grid_anchors, ssd_box_sizes, ssd_default_boxes


def test_ssd_boxes_one_by_one_map():
    """A single 1x1 level at scale s = 0.5 with ratio 2: four hand-checkable boxes."""
    anchors_cxcywh = ssd_default_boxes(100, (1,), (100,), ((2,),), min_scale=0.5, max_scale=0.5)
    r = math.sqrt(2)
    s_prime = math.sqrt(0.5 * 1.0)  # s'_0 = sqrt(s_0 s_1), s_1 = 1.0 after the last level
    expected = torch.tensor([[0.5, 0.5, 0.5, 0.5],
                             [0.5, 0.5, 0.5 * r, 0.5 / r],
                             [0.5, 0.5, 0.5 / r, 0.5 * r],
                             [0.5, 0.5, s_prime, s_prime]], dtype=torch.float64)
    torch.testing.assert_close(anchors_cxcywh, expected)


def test_ssd_first_level_without_ratios():
    sizes = ssd_box_sizes(((), (2,)), min_scale=0.2, max_scale=0.9, num_levels=2)
    assert sizes[0] == [(0.1, 0.1), (0.2 * math.sqrt(2), 0.2 / math.sqrt(2)), (0.2 / math.sqrt(2), 0.2 * math.sqrt(2))]
    assert len(sizes[1]) == 4


def test_ssd_order_is_level_row_column_box():
    anchors_cxcywh = ssd_default_boxes(300, (2, 1), (150, 300), ((), (2,)), min_scale=0.2, max_scale=0.95)
    assert anchors_cxcywh.shape == (2 * 2 * 3 + 1 * 4, 4)
    # level 0: row 0 column 0 (3 boxes), then row 0 column 1: x moves first
    torch.testing.assert_close(anchors_cxcywh[0, :2], torch.tensor([0.25, 0.25], dtype=torch.float64))
    torch.testing.assert_close(anchors_cxcywh[3, :2], torch.tensor([0.75, 0.25], dtype=torch.float64))
    torch.testing.assert_close(anchors_cxcywh[6, :2], torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_grid_anchors_hand_case():
    """One 64x64 image, stride 64: one location, base size 4 * 64; ratio 2 => w = s sqrt 2."""
    anchors_cxcywh = grid_anchors((64, 64), (64,), scale=4.0, scales_per_octave=2, aspect_ratios=(1.0, 2.0))
    base = 4.0
    octave = 2 ** 0.5
    expected_wh = [(base, base), (base * octave, base * octave),
                   (base * math.sqrt(2), base / math.sqrt(2)), (base * octave * math.sqrt(2), base * octave / math.sqrt(2))]
    torch.testing.assert_close(anchors_cxcywh[:, 2:], torch.tensor(expected_wh, dtype=torch.float64))
    assert torch.all(anchors_cxcywh[:, :2] == 0.5)


@pytest.mark.parametrize("recipe, count", [("ssd_mobilenetv2", 1917), ("ssd_mobilenetv3", 1917),
                                           ("ssd_resnet50_fpn", 51150)])
def test_recipe_counts(recipe, count):
    assert len(ssdzoo.default_boxes(ssdzoo.load_config(recipe))) == count


def test_torchvision_order_scales_and_clip_on_a_1x1_map():
    """torchvision's DefaultBoxGenerator for one level: s_k, s'_k, then each ratio both ways,
    widths and heights clipped to [0, 1]."""
    boxes = ssd_default_boxes(300, (1,), (300,), ((2,),), min_scale=0.0, max_scale=0.0, scales=(0.9, 1.6),
                              torchvision_order=True, clip=True)
    s_prime = math.sqrt(0.9 * 1.6)
    wide, tall = 0.9 * math.sqrt(2), 0.9 / math.sqrt(2)
    expected = [[0.5, 0.5, 0.9, 0.9], [0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, tall], [0.5, 0.5, tall, 1.0]]
    assert s_prime > 1 and wide > 1  # both clipped
    assert torch.allclose(boxes, torch.tensor(expected, dtype=torch.float64))


def test_anchor_scales_must_give_one_past_the_last_level():
    with pytest.raises(ssdzoo.ConfigError, match="anchor_scales needs 7 values"):
        ssdzoo.load_config("ssd300_vgg16", ["anchor_scales=[0.1, 0.2]"])


@pytest.mark.parametrize("name, boxes", [("ssd300_vgg16", 8732), ("ssdlite320_mobilenet_v3_large", 3234)])
def test_torchvision_recipes_box_counts(name, boxes):
    assert len(ssdzoo.default_boxes(ssdzoo.load_config(name))) == boxes
