import math

import torch

import ssdzoo
from ssdzoo.loss import sigmoid_focal_loss


def _cfg():
    return ssdzoo.load_config("ssd_mobilenetv2").replace(num_classes=3, classes=("bg", "a", "b"))


def test_focal_loss_hand_value():
    # logit 0 -> p = 0.5; target 1: alpha * (1 - 0.5)^2 * log 2
    value = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), gamma=2.0, alpha=0.75)
    assert math.isclose(value.item(), 0.75 * 0.25 * math.log(2), rel_tol=1e-6)
    value = sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([0.0]), gamma=2.0, alpha=0.75)
    assert math.isclose(value.item(), 0.25 * 0.25 * math.log(2), rel_tol=1e-6)


def test_image_without_boxes_has_zero_box_loss():
    """Image 1 has no positives: its box predictions must not change the loss."""
    cfg = _cfg()
    loc = torch.randn(2, 10, 4)
    logits = torch.randn(2, 10, 3)
    target_loc = torch.zeros(2, 10, 4)
    target_labels = torch.zeros(2, 10, dtype=torch.long)
    target_labels[0, 3] = 1
    loss = ssdzoo.ssd_loss(loc, logits, target_loc, target_labels, cfg)
    loc_changed = loc.clone()
    loc_changed[1] += 100.0
    assert torch.equal(loss, ssdzoo.ssd_loss(loc_changed, logits, target_loc, target_labels, cfg))


def test_batch_without_boxes_is_finite_and_has_gradients():
    cfg = _cfg()
    loc = torch.randn(2, 10, 4, requires_grad=True)
    logits = torch.randn(2, 10, 3, requires_grad=True)
    loss = ssdzoo.ssd_loss(loc, logits, torch.zeros(2, 10, 4), torch.zeros(2, 10, dtype=torch.long), cfg)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert loc.grad.abs().sum() == 0


def test_normalized_by_positives_in_batch():
    cfg = _cfg()
    loc, logits = torch.zeros(1, 4, 4), torch.zeros(1, 4, 3)
    target_labels = torch.tensor([[1, 2, 0, 0]])
    target_loc = torch.zeros(1, 4, 4)
    target_loc[0, 0, 0] = 0.5  # smooth L1: 0.5 * 0.5^2 = 0.125
    total = ssdzoo.ssd_loss(loc, logits, target_loc, target_labels, cfg)
    p_t = 0.5  # every logit is 0
    per_column = (1 - p_t) ** 2 * math.log(2)
    cls = 4 * (cfg.alpha * per_column + 2 * (1 - cfg.alpha) * per_column)  # one target column per anchor
    assert math.isclose(total.item(), (cls + 0.125) / 2, rel_tol=1e-6)
    halved = ssdzoo.ssd_loss(loc, logits, target_loc, target_labels, cfg, num_matched=torch.tensor(4))
    assert math.isclose(halved.item(), total.item() / 2, rel_tol=1e-6)


def test_multibox_loss_counts_three_hardest_negatives_per_positive():
    from ssdzoo.loss import hard_negative_cross_entropy

    logits = torch.zeros(2, 6, 3)
    logits[0, :, 1] = torch.tensor([0.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # negatives' losses fall with the index
    labels = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # image 1 has no boxes: adds nothing
    ce = torch.nn.functional.cross_entropy(logits[0], labels[0], reduction="none")
    expected = ce[0] + ce[1] + ce[2] + ce[3]  # the positive and the 3 hardest negatives
    assert torch.allclose(hard_negative_cross_entropy(logits, labels, neg_pos_ratio=3.0), expected)
    cfg = ssdzoo.load_config("ssd300_vgg16")
    empty = ssdzoo.ssd_loss(torch.randn(2, 6, 4), logits, torch.zeros(2, 6, 4), torch.zeros_like(labels), cfg)
    assert empty == 0  # no positives: no box loss and no negatives
