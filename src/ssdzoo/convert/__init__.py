"""Weights from other frameworks, read without them: MindSpore .ckpt files of the seed and of
MindCV (``mindspore``), TensorFlow Object Detection API SSDs (``tensorflow``) and torchvision's
SSDs (``torchvision``, state dicts read by ``weights.read_state_dict``). Each framework has a
reader (``mindspore_ckpt``, ``tensorflow_files``), a name map (``mindspore_names``,
``tensorflow_names``, ``torchvision_names``) and the conversion (``mindspore``, ``tensorflow``,
``torchvision``), which ends in
``conversion``'s complete state dict. Nothing here builds a model: callers pass one in."""

from .conversion import Conversion
from .mindspore import convert_checkpoint, mindcv_backbone_to_timm, mindspore_to_ssdzoo
from .mindspore_ckpt import CheckpointError, MindSporeCheckpoint, read_mindspore_checkpoint
from .tensorflow import is_tensorflow_file, read_tensorflow, tensorflow_config, tensorflow_to_ssdzoo
from .tensorflow_files import TFFileError, read_tf_checkpoint, read_tf_graph
from .torchvision import identify_torchvision, torchvision_config, torchvision_to_ssdzoo

__all__ = ["CheckpointError", "Conversion", "MindSporeCheckpoint", "TFFileError", "convert_checkpoint", "is_tensorflow_file",
           "mindcv_backbone_to_timm", "mindspore_to_ssdzoo", "read_mindspore_checkpoint", "read_tensorflow",
           "read_tf_checkpoint", "read_tf_graph", "tensorflow_config", "tensorflow_to_ssdzoo",
           "identify_torchvision", "torchvision_config", "torchvision_to_ssdzoo"]
