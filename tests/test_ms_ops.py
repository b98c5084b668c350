"""The seed-compatible layers against MindSpore's own outputs (golden/mindspore/ms_ops.npz):
pad_mode "same" convolutions and the legacy bilinear resize of the FPN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_golden
from torch import nn

from ssdzoo.model.layers import (Conv2dSame, MaxPool2dSame, conv2d, resize_mindspore, upsample,
                                 use_same_padding)


@pytest.fixture(scope="module")
def ms_ops() -> dict[str, np.ndarray]:
    return load_golden("mindspore/ms_ops.npz")


def _cases(ops: dict[str, np.ndarray], kind: str) -> list[str]:
    return sorted({k.split("_")[0] for k in ops if k.startswith(kind)})


def test_same_padding_conv_matches_mindspore(ms_ops):
    cases = _cases(ms_ops, "conv")
    assert len(cases) == 6
    for case in cases:
        x, w = torch.from_numpy(ms_ops[f"{case}_in"]), torch.from_numpy(ms_ops[f"{case}_w"])
        stride = int(ms_ops[f"{case}_stride"])
        conv = conv2d(w.shape[1], w.shape[0], 3, stride=stride, pad_mode="same")
        conv.weight.data.copy_(w)
        with torch.no_grad():
            out = conv(x).numpy()
        assert out.shape == ms_ops[f"{case}_out"].shape, case
        np.testing.assert_allclose(out, ms_ops[f"{case}_out"], atol=1e-5, rtol=0, err_msg=case)


def test_symmetric_padding_differs_where_the_input_is_even(ms_ops):
    """The golden cases do tell the paddings apart: PyTorch's padding=1 misses an even input."""
    x, w = torch.from_numpy(ms_ops["conv0_in"]), torch.from_numpy(ms_ops["conv0_w"])
    assert x.shape[-1] % 2 == 0 and int(ms_ops["conv0_stride"]) == 2
    symmetric = F.conv2d(x, w, stride=2, padding=1).numpy()
    assert np.abs(symmetric - ms_ops["conv0_out"]).max() > 1e-2


def test_resize_matches_mindspore(ms_ops):
    cases = _cases(ms_ops, "resize")
    assert len(cases) == 4
    for case in cases:
        x, expected = torch.from_numpy(ms_ops[f"{case}_in"]), ms_ops[f"{case}_out"]
        out = resize_mindspore(x, expected.shape[-2:]).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0, err_msg=case)
        via_fpn = upsample(x, expected.shape[-2:], "mindspore").numpy()
        np.testing.assert_allclose(via_fpn, expected, atol=1e-5, rtol=0, err_msg=case)


def test_max_pool_same_takes_the_extra_row_at_the_bottom():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = MaxPool2dSame(3, 2)(x)
    # TF "same" on 4 -> 2: windows rows/cols {0,1,2} and {2,3} (pad below/right only)
    assert out.flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    negative = -x - 1  # padded cells must never win, even over negative values
    assert MaxPool2dSame(3, 2)(negative).flatten().tolist() == [-1.0, -3.0, -9.0, -11.0]


def test_use_same_padding_swaps_only_strided_layers_and_keeps_parameters():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, padding=1, groups=2),
                          nn.Conv2d(2, 2, 3, stride=1, padding=1), nn.MaxPool2d(3, 2, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[0].weight
    replaced = use_same_padding(model, ("0", "1", "2"))
    assert replaced == ["0", "2"]
    assert isinstance(model[0], Conv2dSame) and isinstance(model[2], MaxPool2dSame)
    assert type(model[1]) is nn.Conv2d
    assert model[0].weight is weight
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_use_same_padding_warns_about_a_pattern_that_matches_nothing(caplog):
    model = nn.Sequential(nn.Conv2d(2, 2, 3, stride=2, padding=1))
    assert use_same_padding(model, ("blocks.*.conv_dw",)) == []
    assert "'blocks.*.conv_dw' matches no conv or max-pool of Sequential" in caplog.text
    assert type(model[0]) is nn.Conv2d
