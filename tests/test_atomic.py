import json

import pytest

from ssdzoo.atomic import atomic_path, write_json


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
