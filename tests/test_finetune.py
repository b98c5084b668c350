"""Fine-tuning (`train --weights`): what fits loads, new class layers start afresh; pretrained backbones."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from conftest import GOLDEN_DIR
from tiny import TINY_CONFIG, tiny_config, tiny_model

import ssdzoo
from ssdzoo.cli import main
from ssdzoo.data import make_synthetic_coco
from ssdzoo.data.synthetic import SynthSpec
from ssdzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from ssdzoo.finetune import class_logit_names, load_for_finetuning

SIX = ("classes=[background,a,b,c,d,e]", "num_classes=6")


@pytest.fixture(scope="module")
def six_class_checkpoint(tmp_path_factory):
    """An ssdzoo checkpoint of the tiny recipe trained (here: random weights) on 5 classes."""
    path = tmp_path_factory.mktemp("ft") / "six.pt"
    cfg = tiny_config(*SIX)
    model = tiny_model(cfg, seed=1)
    save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 3}, path)
    return path, model.state_dict()


def _prior_logit(prior: float) -> float:
    return math.log(prior / (1 - prior))


def test_other_class_count_loads_all_but_the_class_convs(six_class_checkpoint, caplog):
    path, source = six_class_checkpoint
    cfg = tiny_config("cls_prior=0.01")  # 3 classes
    model = ssdzoo.build_model(cfg)
    fresh_init = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        report = load_for_finetuning(model, path, cfg)
    logits = class_logit_names(model)
    assert logits == {f"head.cls.{i}.1.{p}" for i in range(3) for p in ("weight", "bias")}
    assert set(report.fresh) == logits and "6 classes, this model 4" in report.reason
    state = model.state_dict()
    for name, value in state.items():
        if name in logits:  # the new class convs keep build_model's initialization
            assert torch.equal(value, fresh_init[name]), name
        elif not name.endswith("num_batches_tracked"):  # backbone, neck, box head, class depthwise layers
            assert torch.equal(value, source[name]), name
    assert any(n.startswith("backbone.") for n in report.loaded) and any(n.startswith("neck.") for n in report.loaded)
    assert {"head.loc.0.1.weight", "head.cls.0.0.conv.weight", "head.cls.0.0.bn.running_mean"} <= set(report.loaded)
    bias = state["head.cls.0.1.bias"].view(-1, 4)
    assert torch.allclose(bias[:, 1:], torch.tensor(_prior_logit(0.01)))  # cls_prior
    assert "initialized afresh" in caplog.text and "head.cls.2.1.weight" in caplog.text


def test_same_count_other_names_starts_the_class_convs_afresh(six_class_checkpoint):
    path, source = six_class_checkpoint
    cfg = tiny_config("classes=[background,v,w,x,y,z]", "num_classes=6")
    model = ssdzoo.build_model(cfg)
    report = load_for_finetuning(model, path, cfg)
    assert report.fresh and "trained on a, b, c, d, e" in report.reason
    same = tiny_config(*SIX)
    assert load_for_finetuning(ssdzoo.build_model(same), path, same).fresh == []


def test_a_model_of_another_recipe_is_refused_naming_it(six_class_checkpoint):
    path, _ = six_class_checkpoint
    cfg = tiny_config("extras_out_channels=[96,64,32]", "extras_in_channels=[0,96,64]")
    with pytest.raises(ValueError, match=r"beyond its class layers: 16 tensors .*head.loc.2.0.bn.bias.* It was "
                                         r"trained as test_efficientnet.*5 classes \(a, b"):
        load_for_finetuning(ssdzoo.build_model(cfg), path, cfg)


def test_train_weights_is_a_new_run_from_the_file(six_class_checkpoint, tmp_path, capsys):
    path, source = six_class_checkpoint
    data = tmp_path / "shapes"
    make_synthetic_coco(data, seed=2, num_train=8, num_val=0, progress=False,
                        spec=SynthSpec(min_side=64, max_side=80, min_object=12.0))
    run = tmp_path / "run"
    # lr 0 and frozen BN: training changes nothing, so the checkpoint shows where it started
    args = ["train", str(TINY_CONFIG), f"data_dir={data}", f"ckpt_save_dir={run}", "lr=0", "lr_init=0",
            "freeze_bn=true", "cls_prior=0.01", "--epochs", "1"]
    assert main([*args, "--weights", str(path)]) == 0
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["config"]["classes"] == ["background", "circle", "square", "triangle"]
    for name, value in ckpt["model"].items():
        if name.startswith("head.cls.") and name.split(".")[3] == "1":
            assert value.shape != source[name].shape
        elif not name.endswith("num_batches_tracked"):
            assert torch.equal(value, source[name]), name
    assert main([*args, "--weights", str(path), "--resume", str(run / "last.pt")]) == 2
    assert "--resume continues a run, --weights starts a new one" in capsys.readouterr().err


def test_finetuning_from_the_seeds_mindspore_checkpoint():
    """The real MindSpore-written ssd_mobilenetv2 (81 classes) into a 4-class model: the converted
    tensors land everywhere but in the class convs."""
    from ssdzoo.convert.mindspore import mindspore_to_ssdzoo

    path = GOLDEN_DIR / "mindspore" / "ssd_mobilenetv2_randbn.ckpt"
    coco = ssdzoo.load_config("ssd_mobilenetv2")
    expected = mindspore_to_ssdzoo(path, ssdzoo.build_model(coco), coco)
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["classes=[background,a,b,c]", "num_classes=4"])
    model = ssdzoo.build_model(cfg)
    report = load_for_finetuning(model, path, cfg)
    assert len(report.fresh) == 12 and "81 classes, this model 4" in report.reason
    state = model.state_dict()
    for name in report.loaded:
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(state[name], expected[name]), name
    assert len(report.loaded) + len(report.fresh) == len(state)


# --- backbone_pretrained: timm's published weights, tested with a local file, never a download ---

def test_backbone_pretrained_loads_timms_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    published = timm.create_model("test_efficientnet")  # with its classifier, as timm publishes it
    path = tmp_path / "test_efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in published.state_dict().items()}, str(path))
    cfg = tiny_config("backbone_pretrained=true", f"backbone_kwargs={{pretrained_cfg_overlay: {{file: '{path}'}}}}")
    backbone = ssdzoo.build_model(cfg).backbone.model.state_dict()
    reference = published.state_dict()
    assert backbone and all(torch.equal(v, reference[k]) for k, v in backbone.items())
    plain = ssdzoo.build_model(tiny_config()).backbone.model.state_dict()
    assert not all(torch.equal(v, reference[k]) for k, v in plain.items())


def test_backbone_pretrained_offline_without_cache_is_one_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import; what its calls check
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = tiny_config("backbone_pretrained=true")
    with pytest.raises(ValueError, match=r"backbone_pretrained: timm could not load the published weights of "
                                         r"'test_efficientnet' .*HF_HUB_OFFLINE is set.*backbone_ckpt_path"):
        ssdzoo.build_model(cfg)
    with pytest.raises(ssdzoo.config.ConfigError, match="set one"):
        tiny_config("backbone_pretrained=true", "backbone_ckpt_path=x.safetensors")


def test_weights_with_resume_auto_start_a_run_once_then_it_continues(six_class_checkpoint, tmp_path):
    """A requeued fine-tuning job (`--resume auto --weights FILE`) starts from FILE only when
    there is nothing to continue; afterwards its own checkpoint wins."""
    path, source = six_class_checkpoint
    other = tmp_path / "other.pt"
    cfg = tiny_config(*SIX)
    save_checkpoint({"model": tiny_model(cfg, seed=2).state_dict(), "config": cfg.to_dict()}, other)
    data = tmp_path / "shapes"
    make_synthetic_coco(data, seed=2, num_train=8, num_val=0, progress=False,
                        spec=SynthSpec(min_side=64, max_side=80, min_object=12.0))
    run = tmp_path / "run"
    args = ["train", str(TINY_CONFIG), f"data_dir={data}", f"ckpt_save_dir={run}", "lr=0", "lr_init=0",
            "freeze_bn=true", "epoch_size=2", "--epochs", "1", "--resume", "auto"]
    assert main([*args, "--weights", str(path)]) == 0
    first = load_checkpoint(run / "last.pt")
    assert first["epoch"] == 1
    assert torch.equal(first["model"]["backbone.model.conv_stem.weight"], source["backbone.model.conv_stem.weight"])
    assert main([*args, "--weights", str(other)]) == 0  # continues epoch 2 from last.pt; other.pt unused
    second = load_checkpoint(run / "last.pt")
    assert second["epoch"] == 2
    for name, value in second["model"].items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, first["model"][name]), name


def test_train_weights_takes_the_files_input_normalization(tmp_path, caplog):
    """Weights trained on [-1, 1] inputs (a converted TF model, or this checkpoint) fine-tune on
    the same inputs, not silently on the recipe's ImageNet statistics; mean=/std= choose."""
    path = tmp_path / "half.pt"
    cfg = tiny_config("mean=[0.5,0.5,0.5]", "std=[0.5,0.5,0.5]")
    save_checkpoint({"model": tiny_model(cfg).state_dict(), "config": cfg.to_dict(), "epoch": 1}, path)
    data = tmp_path / "shapes"
    make_synthetic_coco(data, seed=2, num_train=4, num_val=0, progress=False,
                        spec=SynthSpec(min_side=64, max_side=80, min_object=12.0))
    args = ["train", str(TINY_CONFIG), f"data_dir={data}", "--epochs", "1", "--weights", str(path)]
    with caplog.at_level(logging.WARNING):
        assert main([*args, f"ckpt_save_dir={tmp_path / 'a'}"]) == 0
    assert "its inputs were normalized with mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]" in caplog.text
    assert load_checkpoint(tmp_path / "a" / "last.pt")["config"]["mean"] == [0.5, 0.5, 0.5]
    assert main([*args, f"ckpt_save_dir={tmp_path / 'b'}", "mean=[0.4,0.4,0.4]", "std=[0.2,0.2,0.2]"]) == 0
    assert load_checkpoint(tmp_path / "b" / "last.pt")["config"]["std"] == [0.2, 0.2, 0.2]
