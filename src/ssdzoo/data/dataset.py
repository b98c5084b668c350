"""The detection dataset, its collate and its loader: what training and evaluation iterate.

``load_dataset(path, cfg, train)`` reads a packed dataset (``ssdzoo prepare``) or a raw COCO
folder in place; both give the same items. Training items carry the seed's augmentation,
evaluation items are resized and normalized only. The loader does not encode targets: ssdzoo
encodes whole batches on the training device (``ssdzoo.encode(batch.boxes_xyxy, batch.labels,
anchors, cfg)``).

Reproducibility: the augmentation of item ``i`` in epoch ``e`` comes from a generator seeded
with (seed, e, i), and the sampler hands (i, e, seed) to the dataset. It depends neither on
which worker reads the item nor on how many workers there are, and a resumed run sees the
same augmentation as an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from .coco import (DetectionIndex, IndexBuilder, annotation_path, candidate_images, check_size,
                   is_training_split, read_coco_json, summary_counts)
from .images import ImageFileError, probe_image_file
from .packed import PackedSplit, is_packed_split
from .transforms import eval_transform, train_transform

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

TRAIN_SPLIT, EVAL_SPLIT = "train2017", "val2017"


class Sample(NamedTuple):
    """One dataset item."""

    image: Tensor  # (3, H, W) float32, normalized, at cfg.image_size
    boxes_xyxy: Tensor  # (G, 4) float32, normalized to [0, 1]
    labels: Tensor  # (G,) int64, 1..K
    image_id: int  # COCO image id
    image_hw: Tensor  # (2,) int64: the original (height, width)


class Batch(NamedTuple):
    """Collated samples; boxes padded with label 0 (what ``ssdzoo.encode`` takes as padding)."""

    images: Tensor  # (N, 3, H, W) float32
    boxes_xyxy: Tensor  # (N, Gmax, 4) float32, normalized; zeros in padding rows
    labels: Tensor  # (N, Gmax) int64; 0 in padding rows
    image_ids: Tensor  # (N,) int64
    image_hw: Tensor  # (N, 2) int64


class SampleKey(NamedTuple):
    """What the loader's sampler yields: the item and what seeds its augmentation."""

    index: int
    epoch: int
    seed: int


class _FolderImages:
    """Image bytes of a raw COCO split, read from its folder."""

    def __init__(self, images_dir: Path, index: DetectionIndex):
        self.images_dir, self.file_names = images_dir, index.file_names

    def read(self, i: int) -> bytes:
        return (self.images_dir / self.file_names[i].as_py()).read_bytes()


class DetectionDataset(Dataset):
    """Map-style dataset of ``Sample`` over a ``DetectionIndex`` and a source of image bytes.

    ``dataset[i]`` uses epoch ``self.epoch`` (``set_epoch``) and seed ``self.seed``;
    ``dataset[SampleKey(i, epoch, seed)]`` (what ``make_loader``'s sampler yields) names them.
    """

    def __init__(self, index: DetectionIndex, images: Union[PackedSplit, _FolderImages], cfg: "Config",
                 *, train: bool, source: str, skipped: Sequence[dict] = (), summary: Optional[dict] = None):
        self.index, self.images, self.train, self.source = index, images, train, source
        self.size_hw = tuple(cfg.image_size)
        self.mean, self.std = tuple(cfg.mean), tuple(cfg.std)
        self.resize_mode = cfg.image_resize
        self.seed, self.epoch = cfg.seed, 0
        self.skipped = list(skipped)
        self.summary = summary or {}

    @property
    def categories(self) -> list[dict]:
        """[{"id": coco_category_id, "name": ...}] in label order (label = position + 1)."""
        return [{"id": c["id"], "name": c["name"]} for c in self.index.categories]

    def coco_ground_truth(self) -> dict:
        return self.index.coco_ground_truth()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Union[int, SampleKey]) -> Sample:
        if isinstance(key, tuple):
            i, epoch, seed = key
        else:
            i, epoch, seed = key, self.epoch, self.seed
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i = int(i) % len(self)
        boxes_xyxy, labels = self.index.boxes_of(i)
        image_hw = (int(self.index.heights[i]), int(self.index.widths[i]))
        try:
            data = self.images.read(i)
            if self.train:
                out = train_transform(data, boxes_xyxy, labels, image_hw=image_hw, size_hw=self.size_hw,
                                      rng=np.random.default_rng((seed, epoch, i)), mean=self.mean, std=self.std,
                                      resize_mode=self.resize_mode)
            else:
                out = eval_transform(data, boxes_xyxy, labels, image_hw=image_hw, size_hw=self.size_hw,
                                     mean=self.mean, std=self.std, resize_mode=self.resize_mode)
        except (OSError, ValueError) as err:
            raise RuntimeError(f"{self.source}: image {self.index.file_names[i].as_py()}: {err}") from err
        return Sample(
            image=out.image,
            boxes_xyxy=torch.from_numpy(out.boxes_xyxy_norm),
            labels=torch.from_numpy(out.labels),
            image_id=int(self.index.image_ids[i]),
            image_hw=torch.tensor(image_hw, dtype=torch.int64),
        )


def load_dataset(path: Optional[str | Path], cfg: "Config", train: bool) -> DetectionDataset:
    """A packed root (split train2017 for ``train``, val2017 otherwise), a packed split folder,
    or a raw COCO root (annotations/instances_{split}.json + {split}/ images, read in place with
    the same rules as ``prepare``). ``path`` None or "" means ``cfg.data_dir``."""
    path = Path(path or cfg.data_dir)
    split = TRAIN_SPLIT if train else EVAL_SPLIT
    if is_packed_split(path):
        packed = PackedSplit(path)
        dataset = DetectionDataset(packed.index, packed, cfg, train=train, source=str(path),
                                   skipped=packed.summary.get("skipped", ()), summary=packed.summary)
    elif is_packed_split(path / split):
        packed = PackedSplit(path / split)
        dataset = DetectionDataset(packed.index, packed, cfg, train=train, source=str(path / split),
                                   skipped=packed.summary.get("skipped", ()), summary=packed.summary)
    elif annotation_path(path, split).is_file():
        dataset = _raw_dataset(path, split, cfg, train=train)
    else:
        raise FileNotFoundError(
            f"{path}: no dataset for split {split}: expected a packed split ({path / 'manifest.json'} "
            f"or {path / split / 'manifest.json'}) or a COCO folder ({annotation_path(path, split)})")
    _check_categories(dataset, cfg)
    return dataset


def _raw_dataset(root: Path, split: str, cfg: "Config", *, train: bool) -> DetectionDataset:
    """Index a raw COCO split in place: prepare's rules, with a header check of each file
    (about 60 us a file with a warm cache; threads only add GIL contention to it)."""
    coco = read_coco_json(annotation_path(root, split))
    candidates, early_drops = candidate_images(coco, drop_crowd_images=not is_training_split(split))
    images_dir = root / split
    skipped, ok_rows, sizes = [], [], []
    for row in np.flatnonzero(candidates).tolist():
        name = coco.file_names[row]
        try:
            probed = probe_image_file(images_dir / name)
        except ImageFileError as err:
            skipped.append({"file": name, "reason": err.reason})
            continue
        mismatch = check_size((int(coco.heights[row]), int(coco.widths[row])), (probed.height, probed.width))
        if mismatch:
            skipped.append({"file": name, "reason": mismatch})
            continue
        ok_rows.append(row)
        sizes.append((probed.height, probed.width))
    builder = IndexBuilder(coco)
    sizes_array = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    builder.add_many(np.asarray(ok_rows, dtype=np.int64), heights=sizes_array[:, 0], widths=sizes_array[:, 1])
    index = builder.finish()
    if skipped:
        log.warning("%s: skipped %d unreadable images (first: %s: %s)", images_dir, len(skipped),
                    skipped[0]["file"], skipped[0]["reason"])
    summary = {"split": split, "images": len(index), "boxes": int(len(index.labels)),
               "skipped": skipped, **summary_counts(coco, early_drops, builder)}
    return DetectionDataset(index, _FolderImages(images_dir, index), cfg, train=train,
                            source=str(images_dir), skipped=skipped, summary=summary)


def _check_categories(dataset: DetectionDataset, cfg: "Config") -> None:
    names = [c["name"] for c in dataset.categories]
    if len(names) != cfg.num_classes - 1:
        raise ValueError(
            f"{dataset.source}: the dataset has {len(names)} categories but the config has "
            f"num_classes {cfg.num_classes} (background + {cfg.num_classes - 1})")
    if tuple(names) != tuple(cfg.classes[1:]):
        log.warning("%s: category names %s differ from the config's classes %s (labels follow "
                    "the dataset's ascending category ids)", dataset.source, names, list(cfg.classes[1:]))


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples; pad boxes to the most in any sample (at least 1) with zeros and label 0."""
    gmax = max([1, *(len(s.labels) for s in samples)])
    boxes = torch.zeros(len(samples), gmax, 4, dtype=torch.float32)
    labels = torch.zeros(len(samples), gmax, dtype=torch.int64)
    for k, sample in enumerate(samples):
        boxes[k, :len(sample.labels)] = sample.boxes_xyxy
        labels[k, :len(sample.labels)] = sample.labels
    images = [s.image for s in samples]
    if get_worker_info() is not None:
        stacked = default_collate(images)  # in a loader worker: straight into shared memory
    else:
        # numpy asks for transparent huge pages for large arrays: a 35 MB batch then costs a few
        # page faults instead of thousands (about 4x faster to fill here than torch.stack)
        stacked = torch.from_numpy(np.stack([image.numpy() for image in images]))
    return Batch(
        images=stacked,
        boxes_xyxy=boxes,
        labels=labels,
        image_ids=torch.tensor([s.image_id for s in samples], dtype=torch.int64),
        image_hw=torch.stack([s.image_hw for s in samples]),
    )


class RankSampler(Sampler):
    """Each rank's part of the dataset, as ``SampleKey``s; deterministic from seed and epoch.

    Training (``pad``): like torch's DistributedSampler: one permutation per epoch (seeded with
    seed + epoch) shared by all ranks, padded by repeating its start so that every rank gets the
    same number of items (the same number of steps), then every ``world_size``-th item from
    position ``rank``. Evaluation (no ``pad``): no padding, so each image is seen exactly once
    over all ranks; ranks may differ by one item.
    """

    def __init__(self, num_items: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 pad: bool = True, seed: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size {world_size})")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size
        self.shuffle, self.pad, self.seed, self.epoch = shuffle, pad, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        if self.pad and self.num_items:
            total = -(-self.num_items // self.world_size) * self.world_size
            order = np.resize(order, total)  # repeats from the start
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[SampleKey]:
        for i in self.indices().tolist():
            yield SampleKey(i, self.epoch, self.seed)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.num_items // self.world_size)
        return len(range(self.rank, self.num_items, self.world_size))


def seed_worker(worker_id: int, *, seed: int, rank: int) -> None:
    """Seed the global generators of a loader worker (augmentation itself uses per-item ones)."""
    worker_seed = int(np.random.SeedSequence((seed, rank, worker_id)).generate_state(1)[0])
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    torch.manual_seed(worker_seed)


def make_loader(dataset: DetectionDataset, cfg: "Config", *, train: bool, rank: int = 0,
                world_size: int = 1, seed: int = 0, batch_size: Optional[int] = None) -> DataLoader:
    """The loader of this rank's part: ``Batch``es of ``batch_size`` (cfg.batch_size).

    Training shuffles (cfg.shuffle) and drops the last short batch (cfg.drop_remainder);
    evaluation keeps the order and every image. Call ``loader.sampler.set_epoch(epoch)`` before
    each epoch. Workers: cfg.num_parallel_workers, persistent.
    """
    sampler = RankSampler(len(dataset), rank=rank, world_size=world_size,
                          shuffle=train and cfg.shuffle, pad=train, seed=seed)
    workers = cfg.num_parallel_workers
    return DataLoader(
        dataset, batch_size=batch_size or cfg.batch_size, sampler=sampler, collate_fn=collate,
        num_workers=workers, pin_memory=torch.cuda.is_available(),
        drop_last=train and cfg.drop_remainder, persistent_workers=workers > 0,
        worker_init_fn=partial(seed_worker, seed=seed, rank=rank) if workers > 0 else None,
    )
