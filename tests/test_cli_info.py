import json

import pytest

from ssdzoo.cli import main


@pytest.mark.parametrize("recipe, anchors, params", [("ssd_mobilenetv2", 1917, 4_393_461),
                                                     ("ssd_mobilenetv3", 1917, 4_841_093),
                                                     ("ssd_resnet50_fpn", 51150, 33_294_654)])
def test_info_json(recipe, anchors, params, capsys):
    assert main(["info", recipe, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["anchors"] == anchors and info["params"] == params
    assert info["gflops"] > 0 and len(info["levels"]) in (5, 6)


def test_info_table_and_bad_override(capsys):
    assert main(["info", "ssd_mobilenetv2"]) == 0
    out = capsys.readouterr().out
    assert "4,393,461" in out and "1,917" in out and "576 x  19 x 19" in out
    assert main(["info", "ssd_mobilenetv2", "bogus=1"]) == 2
    assert "'bogus'" in capsys.readouterr().err
