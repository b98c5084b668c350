"""The detection dataset, its collate and its loader: what training and evaluation iterate.

``load_dataset(path, cfg, train)`` reads split ``cfg.train_split`` or ``cfg.val_split`` of a
packed dataset (``ssdzoo prepare``) or of a raw COCO folder in place; both give the same items.
``resolve_classes(cfg)`` fills ``classes: null`` from the training split's categories. Training
items carry the seed's augmentation, evaluation items are resized and normalized only. The
loader does not encode targets: ssdzoo encodes whole batches on the training device
(``ssdzoo.encode(batch.boxes_xyxy, batch.labels, anchors, cfg)``).

Reproducibility: the augmentation of item ``i`` in epoch ``e`` comes from a generator seeded
with (seed, e, i), and the sampler hands (i, e, seed) to the dataset. It depends neither on
which worker reads the item nor on how many workers there are, and a resumed run sees the
same augmentation as an uninterrupted one.

Rotten data: a training item whose image no longer decodes (bit rot in a shard, a file gone
from a raw folder) becomes a ``SkippedImage``; the collate leaves it out of the batch and lists
its index in ``Batch.skipped``, and the training loop counts and reports it. Evaluation items
still fail loudly: a metric over fewer images would be a different metric. Only reading and
decoding can skip: any other failure of an item (a bug in the augmentation) is an
``InternalError`` that stops training with its traceback, never a count against the data.
"""

from __future__ import annotations

import logging
import os
import random
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from ..workers import loader_worker_signals
from .coco import annotation_path, is_training_split, read_coco_json, resolve_image
from .images import ImageFileError, probe_image_file
from .index import DetectionIndex, IndexBuilder, candidate_images, check_size, summary_counts
from .packed import PackedSplit, is_packed_split, manifest_categories
from .transforms import eval_transform, train_transform

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

TRAIN_SPLIT, EVAL_SPLIT = "train2017", "val2017"  # the defaults of cfg.train_split / cfg.val_split


class Sample(NamedTuple):
    """One dataset item."""

    image: Tensor  # (3, H, W) float32, normalized, at cfg.image_size
    boxes_xyxy: Tensor  # (G, 4) float32, normalized to [0, 1]
    labels: Tensor  # (G,) int64, 1..K
    image_id: int  # COCO image id
    image_hw: Tensor  # (2,) int64: the original (height, width)


class InternalError(RuntimeError):
    """A failure of ssdzoo's own data path (not of the data): training stops with its traceback.
    Only a file that cannot be read or decoded is a ``SkippedImage``."""


class SkippedImage(NamedTuple):
    """A training item whose image could not be read or decoded (``skip_unreadable``)."""

    index: int  # in the dataset
    file_name: str
    reason: str


_NONE_SKIPPED = torch.zeros(0, dtype=torch.int64)


class Batch(NamedTuple):
    """Collated samples; boxes padded with label 0 (what ``ssdzoo.encode`` takes as padding)."""

    images: Tensor  # (N, 3, H, W) float32
    boxes_xyxy: Tensor  # (N, Gmax, 4) float32, normalized; zeros in padding rows
    labels: Tensor  # (N, Gmax) int64; 0 in padding rows
    image_ids: Tensor  # (N,) int64
    image_hw: Tensor  # (N, 2) int64
    skipped: Tensor = _NONE_SKIPPED  # (S,) int64: dataset indices of images left out (unreadable)


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
        return resolve_image(self.images_dir, self.file_names[i].as_py()).read_bytes()


class DetectionDataset(Dataset):
    """Map-style dataset of ``Sample`` over a ``DetectionIndex`` and a source of image bytes.

    ``dataset[i]`` uses epoch ``self.epoch`` (``set_epoch``) and seed ``self.seed``;
    ``dataset[SampleKey(i, epoch, seed)]`` (what ``make_loader``'s sampler yields) names them.
    With ``skip_unreadable`` (training sets it) an image that cannot be read or decoded gives a
    ``SkippedImage`` (logged with its file name) instead of an error.
    """

    def __init__(self, index: DetectionIndex, images: Union[PackedSplit, _FolderImages], cfg: "Config",
                 *, train: bool, source: str, skipped: Sequence[dict] = (), summary: Optional[dict] = None,
                 skip_unreadable: bool = False):
        self.index, self.images, self.train, self.source = index, images, train, source
        self.skip_unreadable = skip_unreadable
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

    @property
    def background_images(self) -> int:
        """Images without boxes (kept as background: they train the classifier's negatives)."""
        return int((np.diff(self.index.box_offsets) == 0).sum())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def unreadable(self, i: int, err: Exception) -> SkippedImage:
        """A file that cannot be read or decoded: skipped (``skip_unreadable``), else an error."""
        file_name = self.index.file_names[i].as_py()
        if self.skip_unreadable:
            log.warning("%s: image %s cannot be decoded (%s): skipped", self.source, file_name, err)
            return SkippedImage(i, file_name, str(err))
        raise RuntimeError(f"{self.source}: image {file_name}: {err}") from err

    def __getitem__(self, key: Union[int, SampleKey]) -> Union[Sample, SkippedImage]:
        if isinstance(key, tuple):
            i, epoch, seed = key
        else:
            i, epoch, seed = key, self.epoch, self.seed
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i = int(i) % len(self)
        boxes_xyxy, labels = self.index.boxes_of(i)
        image_hw = (int(self.index.heights[i]), int(self.index.widths[i]))
        try:  # read: a missing or unreadable file, a damaged shard (pyarrow: OSError, ArrowInvalid)
            data = self.images.read(i)
        except (OSError, ValueError, ImageFileError) as err:
            return self.unreadable(i, err)
        try:
            if self.train:
                out = train_transform(data, boxes_xyxy, labels, image_hw=image_hw, size_hw=self.size_hw,
                                      rng=np.random.default_rng((seed, epoch, i)), mean=self.mean, std=self.std,
                                      resize_mode=self.resize_mode)
            else:
                out = eval_transform(data, boxes_xyxy, labels, image_hw=image_hw, size_hw=self.size_hw,
                                     mean=self.mean, std=self.std, resize_mode=self.resize_mode)
        except ImageFileError as err:  # images.decode: the bytes do not decode
            return self.unreadable(i, err)
        except Exception as err:  # anything else is ssdzoo's fault, never the data's: stop
            file_name = self.index.file_names[i].as_py()
            raise InternalError(f"internal error: {'training' if self.train else 'evaluation'} transform of "
                                f"{self.source}: image {file_name} failed with {type(err).__name__}: {err} "
                                "(a bug in ssdzoo, not in the data: please report it with the traceback)") from err
        return Sample(
            image=out.image,
            boxes_xyxy=torch.from_numpy(out.boxes_xyxy_norm),
            labels=torch.from_numpy(out.labels),
            image_id=int(self.index.image_ids[i]),
            image_hw=torch.tensor(image_hw, dtype=torch.int64),
        )


def load_dataset(path: Optional[str | Path], cfg: "Config", train: bool, *,
                 split: Optional[str] = None) -> DetectionDataset:
    """Split ``split`` (default: ``cfg.train_split`` for ``train``, else ``cfg.val_split``) of a
    packed root, a packed split folder, or a raw COCO root (annotations/instances_{split}.json +
    {split}/ images, read in place with the same rules as ``prepare``). ``path`` None or "" means
    ``cfg.data_dir``. The dataset's class names must be the config's (unless classes is null).

    A packed split folder given for another split is used as it is, with a warning, unless the
    split asked for lies beside it (``data_dir=packed/train2017``: evaluation reads
    ``packed/{val_split}``).
    """
    path = Path(path or cfg.data_dir)
    split = split or (cfg.train_split if train else cfg.val_split)
    if is_packed_split(path):
        packed = PackedSplit(path)
        if packed.split != split and is_packed_split(path.parent / split):
            log.info("%s is split %s; %s reads split %s beside it: %s", path, packed.split,
                     "training" if train else "evaluation", split, path.parent / split)
            packed = PackedSplit(path.parent / split)
        elif packed.split != split:
            log.warning("WARNING: %s is the single split %r and %s uses it in place of %r: %s", path, packed.split,
                        "training" if train else "evaluation", split,
                        "scores on the images a model trained on say little about new ones; point data_dir at "
                        "the folder that holds both splits" if not train else "set train_split to silence this")
        dataset = DetectionDataset(packed.index, packed, cfg, train=train, source=str(packed.folder),
                                   skipped=packed.summary.get("skipped", ()), summary=packed.summary)
    elif is_packed_split(path / split):
        packed = PackedSplit(path / split)
        dataset = DetectionDataset(packed.index, packed, cfg, train=train, source=str(path / split),
                                   skipped=packed.summary.get("skipped", ()), summary=packed.summary)
    elif annotation_path(path, split).is_file():
        dataset = _raw_dataset(path, split, cfg, train=train)
    else:
        raise FileNotFoundError(_no_split_message(path, split))
    _check_categories(dataset, cfg)
    return dataset


def _no_split_message(path: Path, split: str) -> str:
    found = sorted(p.parent.name for p in path.glob("*/manifest.json")) if path.is_dir() else []
    hint = f" (found packed splits: {', '.join(found)}; set train_split / val_split)" if found else ""
    return (f"{path}: no dataset for split {split}: expected a packed split ({path / 'manifest.json'} "
            f"or {path / split / 'manifest.json'}) or a COCO folder ({annotation_path(path, split)}){hint}")


def dataset_class_names(path: str | Path, split: str) -> tuple[str, ...]:
    """Class names (label order) of split ``split`` at ``path``, as ``load_dataset`` would find it,
    read from the manifest (packed) or the json (raw COCO) alone."""
    path = Path(path)
    for folder in (path / split, path):
        if is_packed_split(folder):
            return tuple(c["name"] for c in manifest_categories(folder))
    if annotation_path(path, split).is_file():
        return tuple(c["name"] for c in read_coco_json(annotation_path(path, split), path / split).categories)
    raise FileNotFoundError(_no_split_message(path, split))


def resolve_classes(cfg: "Config", data_dir: Optional[str | Path] = None) -> "Config":
    """``cfg`` with ``classes: null`` filled from the categories of its training split under
    ``data_dir`` (default ``cfg.data_dir``); a num_classes that disagrees is an error."""
    if cfg.classes is not None:
        return cfg
    data_dir = data_dir or cfg.data_dir
    if not data_dir:
        raise ValueError("classes is null (take them from the data) but data_dir is empty: set data_dir, "
                         "or list the classes in the config")
    names = dataset_class_names(data_dir, cfg.train_split)
    if cfg.num_classes is not None and cfg.num_classes != len(names) + 1:
        raise ValueError(f"{data_dir} ({cfg.train_split}) has {len(names)} categories but the config has "
                         f"num_classes {cfg.num_classes} (background + {cfg.num_classes - 1}); set num_classes: null")
    log.info("classes from %s (%s): %s", data_dir, cfg.train_split, ", ".join(names))
    return cfg.replace(classes=("background", *names), num_classes=len(names) + 1)


def _raw_dataset(root: Path, split: str, cfg: "Config", *, train: bool) -> DetectionDataset:
    """Index a raw COCO split in place: prepare's rules, with a header check of each file
    (about 60 us a file with a warm cache; threads only add GIL contention to it)."""
    images_dir = root / split
    source = read_coco_json(annotation_path(root, split), images_dir)
    candidates, early_drops = candidate_images(source, drop_crowd_images=not is_training_split(split),
                                               keep_background=False)
    skipped, ok_rows, sizes = [], [], []
    for row in np.flatnonzero(candidates).tolist():
        name = source.file_names[row]
        try:
            probed = probe_image_file(source.image_paths[row])
        except ImageFileError as err:
            skipped.append({"file": name, "reason": err.reason})
            continue
        mismatch = check_size((int(source.heights[row]), int(source.widths[row])), (probed.height, probed.width),
                              probed.orientation)
        if mismatch:
            skipped.append({"file": name, "reason": mismatch})
            continue
        ok_rows.append(row)
        sizes.append((probed.height, probed.width))
    builder = IndexBuilder(source)
    sizes_array = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    builder.add_many(np.asarray(ok_rows, dtype=np.int64), heights=sizes_array[:, 0], widths=sizes_array[:, 1])
    index = builder.finish()
    if skipped:
        log.warning("%s: skipped %d unreadable images (first: %s: %s)", images_dir, len(skipped),
                    skipped[0]["file"], skipped[0]["reason"])
    summary = {"split": split, "images": len(index), "boxes": int(len(index.labels)),
               "skipped": skipped, **summary_counts(source, early_drops, builder)}
    return DetectionDataset(index, _FolderImages(images_dir, index), cfg, train=train,
                            source=str(images_dir), skipped=skipped, summary=summary)


def _check_categories(dataset: DetectionDataset, cfg: "Config") -> None:
    """The dataset's classes must be the config's, in order (classes null: any)."""
    if cfg.classes is None:
        return
    names = [c["name"] for c in dataset.categories]
    if len(names) != cfg.num_classes - 1:
        raise ValueError(
            f"{dataset.source}: the dataset has {len(names)} categories but the config has "
            f"num_classes {cfg.num_classes} (background + {cfg.num_classes - 1}); classes: null and "
            "num_classes: null take them from the training split")
    if tuple(names) != tuple(cfg.classes[1:]):
        raise ValueError(
            f"{dataset.source}: the dataset's classes {names} are not the config's {list(cfg.classes[1:])} "
            "(labels follow the dataset's ascending category ids); set classes: null and num_classes: null "
            "to take them from the training split, or list the dataset's names in the config")


def pad_boxes(samples: Sequence) -> tuple[list, list[SkippedImage], Tensor, Tensor]:
    """Leave out ``SkippedImage``s (an error if all are) and pad the rest's boxes to the most in
    any sample (at least 1) with zeros and label 0: (samples, skipped, boxes (N, G, 4), labels (N, G))."""
    skipped = [s for s in samples if isinstance(s, SkippedImage)]
    samples = [s for s in samples if not isinstance(s, SkippedImage)]
    if not samples:
        raise ValueError("no image of a batch could be decoded: " + "; ".join(
            f"{s.file_name} ({s.reason})" for s in skipped))
    gmax = max([1, *(len(s.labels) for s in samples)])
    boxes = torch.zeros(len(samples), gmax, 4, dtype=torch.float32)
    labels = torch.zeros(len(samples), gmax, dtype=torch.int64)
    for k, sample in enumerate(samples):
        boxes[k, :len(sample.labels)] = sample.boxes_xyxy
        labels[k, :len(sample.labels)] = sample.labels
    return samples, skipped, boxes, labels


def collate(samples: Sequence[Union[Sample, SkippedImage]]) -> Batch:
    """Stack samples; pad boxes to the most in any sample (at least 1) with zeros and label 0.
    ``SkippedImage``s are left out and listed in ``Batch.skipped``."""
    samples, skipped, boxes, labels = pad_boxes(samples)
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
        skipped=torch.tensor([s.index for s in skipped], dtype=torch.int64) if skipped else _NONE_SKIPPED,
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
        self.shuffle, self.pad, self.seed, self.epoch, self.start = shuffle, pad, seed, 0, 0

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's item ``start`` on (a run resumed mid-epoch)."""
        self.epoch, self.start = epoch, start

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
        for i in self.indices()[self.start:].tolist():
            yield SampleKey(i, self.epoch, self.seed)

    def __len__(self) -> int:
        if self.pad:
            full = -(-self.num_items // self.world_size)
        else:
            full = len(range(self.rank, self.num_items, self.world_size))
        return max(0, full - self.start)


def seed_worker(worker_id: int, *, seed: int, rank: int) -> None:
    """Seed the global generators of a loader worker (augmentation itself uses per-item ones).

    Workers ignore the SIGTERM and SIGINT a scheduler or a terminal sends to every process of
    the job (the main process stops training cleanly on them) but obey their parent's SIGTERM,
    which is how multiprocessing ends them when the main process exits
    (workers.loader_worker_signals); torch's watchdog ends them when the parent dies."""
    loader_worker_signals()
    worker_seed = int(np.random.SeedSequence((seed, rank, worker_id)).generate_state(1)[0])
    random.seed(worker_seed)
    np.random.seed(worker_seed)
    torch.manual_seed(worker_seed)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM or container limit)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_workers(requested: int, *, processes_per_node: int = 1) -> int:
    """``requested`` loader workers, at most this process's share of the cores it may use
    (the ``processes_per_node`` training processes of a node share them); said once in the log.
    More workers than cores only queue for the CPU (torch warns about it, too)."""
    cores = available_cores()
    cap = max(1, cores // max(1, processes_per_node))
    if requested <= cap:
        return requested
    _note_worker_cap(requested, cap, cores, processes_per_node)
    return cap


@lru_cache(maxsize=None)  # once per process and setting
def _note_worker_cap(requested: int, cap: int, cores: int, processes: int) -> None:
    shared = f", shared by {processes} training processes" if processes > 1 else ""
    log.info("num_parallel_workers %d capped at %d: this process may use %d CPU core%s%s", requested, cap,
             cores, "s" if cores > 1 else "", shared)


def close_loader(loader: DataLoader) -> None:
    """End ``loader``'s worker processes now and wait for them (persistent workers otherwise live
    as long as the loader; the next iteration starts new ones). Every exit path of training
    calls it, so that no worker outlives a failed run."""
    iterator = getattr(loader, "_iterator", None)  # torch keeps persistent workers' iterator here
    loader._iterator = None
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def make_loader(dataset: DetectionDataset, cfg: "Config", *, train: bool, rank: int = 0,
                world_size: int = 1, seed: int = 0, batch_size: Optional[int] = None,
                processes_per_node: int = 1, collate_fn: Callable = collate) -> DataLoader:
    """The loader of this rank's part: ``Batch``es of ``batch_size`` (cfg.batch_size).

    ``device_pipeline.make_backend_loader`` gives the loader of either data backend (the
    device backend's items and ``collate_fn`` are its own).

    Training shuffles (cfg.shuffle) and drops the last short batch (cfg.drop_remainder);
    evaluation keeps the order and every image. Call ``loader.sampler.set_epoch(epoch)`` before
    each epoch. Workers: cfg.num_parallel_workers, persistent, capped by ``loader_workers``.
    """
    sampler = RankSampler(len(dataset), rank=rank, world_size=world_size,
                          shuffle=train and cfg.shuffle, pad=train, seed=seed)
    workers = loader_workers(cfg.num_parallel_workers, processes_per_node=processes_per_node)
    return DataLoader(
        dataset, batch_size=batch_size or cfg.batch_size, sampler=sampler, collate_fn=collate_fn,
        num_workers=workers, pin_memory=torch.cuda.is_available(),
        drop_last=train and cfg.drop_remainder, persistent_workers=workers > 0,
        worker_init_fn=partial(seed_worker, seed=seed, rank=rank) if workers > 0 else None,
    )
