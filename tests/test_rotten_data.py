"""Rotten data: a JPEG damaged inside a packed shard is skipped, logged by file name and counted
while training goes on; over max_unreadable_share it stops; `prepare verify` names the shard
and the image; a missing or truncated shard is an error at open naming it."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from tiny import TINY_CONFIG, make_tiny_shapes, tiny_config, tiny_run_config

from ssdzoo.cli import main
from ssdzoo.data import PackedFormatError, PackedSplit, RankSampler, load_dataset, prepare_coco
from ssdzoo.data.dataset import SkippedImage, collate
from ssdzoo.engine.checkpoint import load_checkpoint
from ssdzoo.engine.train import UnreadableImagesError, train


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("rotten")
    prepare_coco(make_tiny_shapes(root / "shapes"), root / "packed", shard_size=4, progress=False)
    return root / "packed"


@pytest.fixture(scope="module")
def damaged(packed, tmp_path_factory):
    """A copy of the packed set whose first training image lost its JPEG header (bit rot in
    place: the shard keeps its size). Returns (root, the image's file name, its shard)."""
    root = tmp_path_factory.mktemp("damaged") / "packed"
    shutil.copytree(packed, root)
    split = PackedSplit(root / "train2017")
    name = split.index.file_names[0].as_py()
    shard = root / "train2017" / split.manifest["shards"][int(split.shard_of[0])]["file"]
    data = bytearray(shard.read_bytes())
    start = data.find(split.read(0))
    data[start:start + 4] = b"\0\0\0\0"  # the SOI marker and the start of the first segment
    shard.write_bytes(bytes(data))
    return root, name, shard


def test_training_goes_on_past_a_damaged_image_and_reports_it(damaged, tmp_path, caplog):
    root, name, _ = damaged
    cfg = tiny_run_config(root, tmp_path, "max_unreadable_share=0.1")
    with caplog.at_level(logging.INFO):
        summary = train(cfg, progress_bar=False)
    assert summary["epochs"] == 2 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert f"image {name} cannot be decoded (not an image (unknown format)): skipped" in caplog.text
    for epoch in (1, 2):
        assert f"epoch {epoch}: 1 of 16 images could not be decoded and were skipped: {name}" in caplog.text


def test_more_than_the_allowed_share_stops_with_the_file_named(damaged, tmp_path, capsys):
    root, name, _ = damaged
    assert main(["train", str(TINY_CONFIG), f"data_dir={root}", f"ckpt_save_dir={tmp_path}",
                 "max_unreadable_share=0"]) == 2
    err = capsys.readouterr().err
    assert "1 training images could not be decoded in epoch 1, more than max_unreadable_share 0.0" in err
    assert name in err and "ssdzoo prepare verify" in err
    with pytest.raises(UnreadableImagesError):
        train(tiny_run_config(root, tmp_path / "api", "max_unreadable_share=0"), progress_bar=False)


def test_prepare_verify_names_the_damaged_shard_and_image(damaged, capsys):
    root, name, shard = damaged
    assert main(["prepare", "verify", str(root / "train2017"), str(root / "val2017")]) == 1
    captured = capsys.readouterr()
    assert f"{shard}: checksum mismatch" in captured.err
    assert f"{shard}: image {name} does not decode (not an image (unknown format))" in captured.err
    assert "2 folder(s) checked: 2 problem(s)" in captured.out


def test_a_missing_or_truncated_shard_is_an_error_at_open(packed, tmp_path, capsys):
    root = tmp_path / "packed"
    shutil.copytree(packed, root)
    shard = root / "train2017" / "images-00002.arrow"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    with pytest.raises(PackedFormatError, match=f"{shard}: {len(data) - 100} bytes, the manifest says {len(data)} "
                                                r"\(truncated or replaced\)"):
        load_dataset(root, tiny_config(), train=True)
    shard.unlink()
    assert main(["train", str(TINY_CONFIG), f"data_dir={root}", f"ckpt_save_dir={tmp_path / 'run'}"]) == 2
    assert f"{shard}: missing (the manifest lists it)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before writing anything


def test_collate_leaves_skipped_images_out_and_lists_them(packed):
    dataset = load_dataset(packed, tiny_config(), train=True)
    samples = [dataset[0], SkippedImage(5, "x.jpg", "not an image"), dataset[2]]
    batch = collate(samples)
    assert batch.images.shape[0] == 2 and batch.skipped.tolist() == [5]
    assert collate([dataset[0]]).skipped.shape == (0,)
    with pytest.raises(ValueError, match=r"no image of a batch could be decoded: x.jpg \(not an image\)"):
        collate([samples[1]])


def test_sampler_resumes_in_the_middle_of_an_epoch():
    sampler = RankSampler(10, rank=1, world_size=2, seed=4)
    sampler.set_epoch(3)
    whole = [key.index for key in sampler]
    sampler.set_epoch(3, start=2)
    assert [key.index for key in sampler] == whole[2:] and len(sampler) == 3
    assert all(key.epoch == 3 for key in sampler)
    sampler.set_epoch(4)
    assert len(sampler) == 5 and torch.tensor([k.index for k in sampler]).unique().numel() == 5
