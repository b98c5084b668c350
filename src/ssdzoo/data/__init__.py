"""Data: COCO -> packed dataset, the seed's augmentation, the loader, the synthetic demo set.

    prepare_coco(src, out) -> OUT/{split}/ packed shards + index + manifest + summary.json
    load_dataset(path, cfg, train) -> DetectionDataset of Sample
    make_loader(dataset, cfg, train=...) -> DataLoader of Batch (collate pads boxes with label 0)
    make_synthetic_coco(out, seed=...) -> a COCO-format folder of shapes on textures
"""

from .coco import DetectionIndex, read_coco_json
from .dataset import (Batch, DetectionDataset, RankSampler, Sample, SampleKey, collate, load_dataset,
                      make_loader)
from .packed import PackedFormatError, PackedSplit, verify_packed
from .prepare import prepare_coco
from .synthetic import SHAPES, make_synthetic_coco

__all__ = [
    "Batch", "DetectionDataset", "DetectionIndex", "PackedFormatError", "PackedSplit", "RankSampler",
    "SHAPES", "Sample", "SampleKey", "collate", "load_dataset", "make_loader", "make_synthetic_coco",
    "prepare_coco", "read_coco_json", "verify_packed",
]
