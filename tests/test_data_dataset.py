"""load_dataset items, collate, the rank sampler and the loader."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import ssdzoo
from ssdzoo.config import load_config
from ssdzoo.data import Batch, RankSampler, Sample, SampleKey, collate, load_dataset, make_loader, prepare_coco
from ssdzoo.data.synthetic import SynthSpec, make_synthetic_coco


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A tiny synthetic set, raw and packed."""
    root = tmp_path_factory.mktemp("shapes")
    make_synthetic_coco(root / "coco", seed=1, num_train=20, num_val=7,
                        spec=SynthSpec(min_side=48, max_side=80, min_object=8))
    prepare_coco(root / "coco", root / "packed", shard_size=8)
    return root


def _cfg(**overrides):
    items = {"image_size": "[32,32]", "feature_size": "[4,2,1,1]", "batch_size": "4", "num_parallel_workers": "0",
             **overrides}
    return load_config("demo", [f"{k}={v}" for k, v in items.items()])


def test_eval_items_are_resized_and_normalized_only(shapes):
    cfg = _cfg()
    dataset = load_dataset(shapes / "packed", cfg, False)
    sample = dataset[2]
    assert isinstance(sample, Sample) and sample.image.shape == (3, 32, 32)
    index = dataset.index
    with Image.open(io.BytesIO(dataset.images.read(2))) as image:
        assert sample.image_hw.tolist() == [image.height, image.width]
        expected = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32)
    restored = ((sample.image.permute(1, 2, 0) * torch.tensor(cfg.std) + torch.tensor(cfg.mean)) * 255).numpy()
    assert np.abs(restored - np.round(restored)).max() < 1e-3  # an exact uint8 image, normalized
    assert np.abs(restored - expected).mean() < 4  # decoded at 1/2 scale, so close, not equal
    boxes, labels = index.boxes_of(2)
    h, w = sample.image_hw.tolist()
    np.testing.assert_allclose(sample.boxes_xyxy.numpy(), boxes / np.array([w, h, w, h]), rtol=1e-6)
    assert sample.labels.tolist() == labels.tolist() and sample.image_id == int(index.image_ids[2])
    assert dataset[2].image.equal(sample.image)  # no randomness in evaluation


def test_train_items_are_augmented_and_reproducible(shapes):
    dataset = load_dataset(shapes / "packed", _cfg(), True)
    first = dataset[SampleKey(3, 0, 0)]
    assert first.image.equal(dataset[SampleKey(3, 0, 0)].image)
    others = [dataset[SampleKey(3, epoch, 0)] for epoch in range(1, 6)]
    assert any(not o.image.equal(first.image) for o in others)  # epochs differ
    for sample in [first, *others]:
        assert ((sample.boxes_xyxy >= 0) & (sample.boxes_xyxy <= 1)).all() and len(sample.labels) >= 1
        assert sample.labels.dtype == torch.int64 and sample.boxes_xyxy.dtype == torch.float32
    dataset.set_epoch(4)
    assert dataset[3].image.equal(others[3].image)


def test_raw_folder_and_packed_dataset_agree(shapes):
    packed, raw = load_dataset(shapes / "packed", _cfg(), True), load_dataset(shapes / "coco", _cfg(), True)
    assert len(packed) == len(raw) == 20 and packed.categories == raw.categories
    for key in (SampleKey(0, 2, 5), SampleKey(7, 0, 1)):
        a, b = packed[key], raw[key]
        assert a.image.equal(b.image) and a.boxes_xyxy.equal(b.boxes_xyxy) and a.image_id == b.image_id


def test_collate_pads_with_label_zero_and_feeds_encode(shapes):
    cfg = _cfg()
    dataset = load_dataset(shapes / "packed", cfg, True)
    samples = [dataset[i] for i in range(4)]
    batch = collate(samples)
    gmax = max(len(s.labels) for s in samples)
    assert isinstance(batch, Batch) and batch.images.shape == (4, 3, 32, 32)
    assert batch.boxes_xyxy.shape == (4, gmax, 4) and batch.labels.shape == (4, gmax)
    for k, s in enumerate(samples):
        assert batch.labels[k, :len(s.labels)].equal(s.labels) and (batch.labels[k, len(s.labels):] == 0).all()
        assert (batch.boxes_xyxy[k, len(s.labels):] == 0).all()
    assert batch.image_ids.dtype == torch.int64 and batch.image_hw.shape == (4, 2)
    cfg = load_config("demo")
    target_loc, target_labels = ssdzoo.encode(batch.boxes_xyxy, batch.labels, ssdzoo.default_boxes(cfg), cfg)
    assert target_loc.shape == (4, cfg.num_ssd_boxes, 4) and (target_labels > 0).any()


def test_collate_of_boxless_samples_keeps_one_padding_row():
    empty = Sample(torch.zeros(3, 8, 8), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 1,
                   torch.tensor([8, 8]))
    batch = collate([empty, empty])
    assert batch.boxes_xyxy.shape == (2, 1, 4) and (batch.labels == 0).all()
    cfg = load_config("demo")
    _, target_labels = ssdzoo.encode(batch.boxes_xyxy, batch.labels, ssdzoo.default_boxes(cfg), cfg)
    assert (target_labels == 0).all()


def test_rank_sampler_splits_the_data():
    for num in (10, 11, 1):
        train = [list(RankSampler(num, rank=r, world_size=4, seed=3)) for r in range(4)]
        assert len({len(part) for part in train}) == 1  # the same number of steps on every rank
        assert {k.index for part in train for k in part} == set(range(num))
        evaluation = [[k.index for k in RankSampler(num, rank=r, world_size=4, shuffle=False, pad=False)]
                      for r in range(4)]
        assert sorted(i for part in evaluation for i in part) == list(range(num))  # each image once
        assert [len(p) for p in evaluation] == [len(RankSampler(num, rank=r, world_size=4, pad=False))
                                                for r in range(4)]
    sampler = RankSampler(50, seed=3)
    epoch0 = [k.index for k in sampler]
    sampler.set_epoch(1)
    epoch1 = [k.index for k in sampler]
    assert epoch0 != epoch1 and sorted(epoch0) == sorted(epoch1) == list(range(50))
    assert [k.epoch for k in sampler] == [1] * 50
    assert epoch1 == [k.index for k in _at_epoch(RankSampler(50, seed=3), 1)]
    with pytest.raises(ValueError, match="rank 2"):
        RankSampler(5, rank=2, world_size=2)


def _at_epoch(sampler: RankSampler, epoch: int) -> RankSampler:
    sampler.set_epoch(epoch)
    return sampler


def test_loader_batches_do_not_depend_on_workers(shapes):
    batches = {}
    for workers in (0, 2):
        cfg = _cfg(num_parallel_workers=str(workers))
        dataset = load_dataset(shapes / "packed", cfg, True)
        loader = make_loader(dataset, cfg, train=True, rank=1, world_size=2, seed=7)
        loader.sampler.set_epoch(3)
        batches[workers] = list(loader)
        assert loader.persistent_workers == (workers > 0)
    assert len(batches[0]) == 2  # 10 items on rank 1, batches of 4, last one dropped
    for a, b in zip(batches[0], batches[2]):
        assert a.images.equal(b.images) and a.boxes_xyxy.equal(b.boxes_xyxy) and a.image_ids.equal(b.image_ids)


def test_eval_loader_keeps_every_image_in_order(shapes):
    cfg = _cfg()
    dataset = load_dataset(shapes / "packed", cfg, False)
    loader = make_loader(dataset, cfg, train=False, batch_size=3)
    ids = torch.cat([b.image_ids for b in loader]).tolist()
    assert ids == dataset.index.image_ids.tolist()


def test_index_is_flat_arrays(shapes):
    dataset = load_dataset(shapes / "packed", _cfg(), True)
    index = dataset.index
    for name in ("image_ids", "heights", "widths", "box_offsets", "boxes_xyxy", "labels", "ann_ids"):
        assert isinstance(getattr(index, name), np.ndarray), name


def test_loader_workers_are_capped_at_the_cores_this_process_may_use(shapes, monkeypatch, caplog):
    from ssdzoo.data import dataset as dataset_module
    from ssdzoo.data.dataset import loader_workers

    monkeypatch.setattr(dataset_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    dataset_module._note_worker_cap.cache_clear()
    with caplog.at_level("INFO"):
        assert [loader_workers(n) for n in (8, 8, 2, 1, 0)] == [2, 2, 2, 1, 0]
        assert loader_workers(8, processes_per_node=2) == 1 == loader_workers(8, processes_per_node=4)
        cfg = _cfg(num_parallel_workers="8")  # the seed's recipes ask for 8
        assert make_loader(load_dataset(shapes / "packed", cfg, True), cfg, train=True).num_workers == 2
    assert [r.getMessage() for r in caplog.records if "capped" in r.getMessage()] == [
        "num_parallel_workers 8 capped at 2: this process may use 2 CPU cores",  # once, however often asked
        "num_parallel_workers 8 capped at 1: this process may use 2 CPU cores, shared by 2 training processes",
        "num_parallel_workers 8 capped at 1: this process may use 2 CPU cores, shared by 4 training processes"]
