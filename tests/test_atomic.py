import json
import os

import pytest

from ssdzoo.atomic import atomic_folder, atomic_path, write_json


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    write_json(path, {"AP": 0.5})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"AP": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    path = tmp_path / "shard.arrow"
    with atomic_path(path, durable=False) as tmp:
        tmp.write_bytes(b"data")
        assert not path.exists() and tmp.parent == path.parent
    assert path.read_bytes() == b"data" and not tmp.exists()


def _folder(path, text):
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)


def test_a_folder_is_swapped_in_whole_and_the_previous_one_removed(tmp_path):
    path = tmp_path / "packed"
    _folder(path, "old")
    with atomic_folder(path) as staging:
        (staging / "a.txt").write_text("new")
        assert (path / "a.txt").read_text() == "old"
    assert (path / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["packed"]


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    path = tmp_path / "packed"
    _folder(path, "old")
    replace, calls = os.replace, []

    def failing_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder into place, after the old one was moved aside
            raise OSError(5, "Input/output error")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second)
    with pytest.raises(OSError, match="Input/output error"), atomic_folder(path) as staging:
        (staging / "a.txt").write_text("new")
    assert len(calls) == 3 and calls[2] == (calls[0][1], path)  # moved aside, failed, moved back
    assert (path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["packed"]


def test_a_folder_hidden_by_a_run_that_died_mid_swap_is_put_back(tmp_path):
    path = tmp_path / "packed"
    _folder(tmp_path / ".packed.old-123-abcd1234", "old")  # moved aside; the new one never came
    _folder(tmp_path / ".packed.partial-123-abcd1234", "half")
    with pytest.raises(RuntimeError), atomic_folder(path) as staging:
        (staging / "a.txt").write_text("new")
        raise RuntimeError("crash mid-write")
    assert (path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["packed"]


def test_leftovers_beside_an_intact_folder_are_removed(tmp_path):
    path = tmp_path / "packed"
    _folder(path, "current")
    _folder(tmp_path / ".packed.old-123-abcd1234", "old")  # a removal cut short, or a failed move back
    with atomic_folder(path) as staging:
        assert (path / "a.txt").read_text() == "current"
        assert sorted(p.name for p in tmp_path.iterdir()) == [staging.name, "packed"]
        (staging / "a.txt").write_text("new")
    assert (path / "a.txt").read_text() == "new"
