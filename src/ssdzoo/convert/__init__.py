"""Weights from other frameworks: MindSpore .ckpt files of the seed and of MindCV."""

from .mindspore import convert_checkpoint, mindcv_backbone_to_timm, mindspore_to_ssdzoo
from .mindspore_ckpt import CheckpointError, MindSporeCheckpoint, read_mindspore_checkpoint

__all__ = ["CheckpointError", "MindSporeCheckpoint", "convert_checkpoint", "mindcv_backbone_to_timm",
           "mindspore_to_ssdzoo", "read_mindspore_checkpoint"]
