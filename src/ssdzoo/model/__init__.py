from .build import build_model, feature_sizes
from .detector import Detector

__all__ = ["Detector", "build_model", "feature_sizes"]
