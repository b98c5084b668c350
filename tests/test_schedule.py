import pytest

import ssdzoo


def test_warmup_then_cosine():
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["epoch_size=10", "warmup_epochs=2", "lr=0.1",
                                                 "lr_init=0.01", "lr_end_rate=0.1"])
    rates = ssdzoo.lr_schedule(cfg, steps_per_epoch=5)
    assert len(rates) == 50
    assert rates[0] == pytest.approx(0.01)
    assert rates[5] == pytest.approx(0.01 + 0.09 * 5 / 10)  # halfway through warmup
    assert rates[10] == pytest.approx(0.1)  # peak at the end of warmup
    assert rates[-1] == pytest.approx(0.01, rel=0.02)  # approaches lr * lr_end_rate
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_no_warmup():
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["epoch_size=2", "warmup_epochs=0", "lr=0.1"])
    assert ssdzoo.lr_schedule(cfg, steps_per_epoch=3)[0] == pytest.approx(0.1)
