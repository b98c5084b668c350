"""Data: any labelled dataset -> packed dataset, the seed's augmentation, the loader, the demo set.

    prepare_coco(src, out) -> OUT/{split}/ packed shards + index + manifest + summary.json
    prepare_coco_export(json, out, split=...), prepare_voc(root, out), prepare_yolo(data_yaml, out): same
    load_dataset(path, cfg, train) -> DetectionDataset of Sample
    resolve_classes(cfg) -> cfg with classes: null filled from the training split
    make_loader(dataset, cfg, train=...) -> DataLoader of Batch (collate pads boxes with label 0)
    make_backend_loader(dataset, cfg, train=..., backend=...) -> that, or the device backend's loader
    batch_to_device(batch, device, cfg) -> Batch on the device (the device backend decodes and augments there)
    make_synthetic_coco(out, seed=...) -> a COCO-format folder of shapes on textures
"""

from .coco import read_coco_json
from .dataset import (Batch, DetectionDataset, RankSampler, Sample, SampleKey, collate, dataset_class_names,
                      load_dataset, make_loader, resolve_classes)
from .device_pipeline import batch_to_device, make_backend_loader, resolve_data_backend
from .index import DetectionIndex, SourceSplit
from .packed import PackedFormatError, PackedSplit, verify_packed
from .prepare import prepare_coco, prepare_coco_export, prepare_voc, prepare_yolo
from .synthetic import SHAPES, make_synthetic_coco

__all__ = [
    "Batch", "DetectionDataset", "DetectionIndex", "PackedFormatError", "PackedSplit", "RankSampler",
    "SHAPES", "Sample", "SampleKey", "SourceSplit", "batch_to_device", "collate", "dataset_class_names", "load_dataset",
    "make_backend_loader", "make_loader", "make_synthetic_coco", "prepare_coco", "prepare_coco_export", "prepare_voc",
    "prepare_yolo", "read_coco_json", "resolve_classes", "resolve_data_backend", "verify_packed",
]
