"""SSD losses: smooth L1 on the positives' offsets plus one of two classification losses.

- ``loss: focal`` (the seed's): sigmoid focal loss on every anchor; no hard negative mining
  (the focal loss of Lin et al. 2017 balances the classes instead).
- ``loss: multibox`` (the paper's, Liu et al. 2016, section 2.2 "Hard negative mining"): softmax
  cross-entropy on the positives and on the negatives of highest loss, ``neg_pos_ratio`` (3) of
  them per positive of the same image; torchvision's ``SSD.compute_loss``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .config import Config


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, *, gamma: float, alpha: float) -> Tensor:
    """Element-wise focal loss (Lin et al. 2017, eq. 5) with sigmoid probabilities.

    logits, targets: (..., C), targets 0 or 1. Weight alpha for target columns and 1 - alpha
    for the others, modulating factor (1 - p_t)^gamma.
    """
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = targets * p + (1 - targets) * (1 - p)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    return alpha_t * (1 - p_t).pow(gamma) * bce


def hard_negative_cross_entropy(logits: Tensor, target_labels: Tensor, *, neg_pos_ratio: float) -> Tensor:
    """Summed softmax cross-entropy of the positive anchors and of each image's hardest negatives.

    logits: (N, A, C), column 0 background; target_labels: (N, A) int, 0 = background. Per
    image with P positives, the negatives ranked below neg_pos_ratio * P by their own
    cross-entropy (highest first) count; an image without positives adds nothing.
    """
    ce = F.cross_entropy(logits.flatten(0, 1), target_labels.flatten().long(), reduction="none")
    ce = ce.view(target_labels.shape)  # (N, A)
    positive = target_labels > 0
    num_negative = neg_pos_ratio * positive.sum(dim=1, keepdim=True)  # (N, 1)
    # rank every anchor by its loss as a negative; positives sort last (-inf)
    order = ce.masked_fill(positive, float("-inf")).argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)  # (N, A): 0 = the hardest negative
    hard_negative = rank < num_negative
    return ce[positive].sum() + ce[hard_negative].sum()


def ssd_loss(
    loc: Tensor, logits: Tensor, target_loc: Tensor, target_labels: Tensor, cfg: "Config",
    num_matched: Optional[Tensor] = None,
) -> Tensor:
    """Scalar SSD loss of a batch.

    loc, target_loc: (N, A, 4); logits: (N, A, C); target_labels: (N, A) int, 0 = background.
    Classification: focal loss over all C columns against a one-hot target that includes the
    background column (a background anchor is a positive for column 0), summed; with ``loss:
    multibox``, ``hard_negative_cross_entropy``. Localization:
    smooth L1 (beta 1) on anchors with a label > 0, summed. Both divided by the number of
    positive anchors in the batch; ``num_matched`` overrides that count (data-parallel training
    passes the count over all devices). A batch with no positives divides by 1, where the seed
    divides by zero.
    """
    logits, loc = logits.float(), loc.float()
    positive = target_labels > 0
    if cfg.loss == "multibox":
        cls_loss = hard_negative_cross_entropy(logits, target_labels, neg_pos_ratio=cfg.neg_pos_ratio)
    else:
        onehot = F.one_hot(target_labels.long(), logits.shape[-1]).to(logits.dtype)
        cls_loss = sigmoid_focal_loss(logits, onehot, gamma=cfg.gamma, alpha=cfg.alpha).sum()
    box_loss = F.smooth_l1_loss(loc, target_loc, reduction="none", beta=1.0)
    box_loss = (box_loss.sum(-1) * positive).sum()
    if num_matched is None:
        num_matched = positive.sum()
    return (cls_loss + box_loss) / num_matched.clamp(min=1).to(cls_loss.dtype)
