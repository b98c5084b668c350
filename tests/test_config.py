import pytest

import ssdzoo
from ssdzoo.config import ConfigError, config_from_dict


def test_recipes_load_with_seed_values():
    v2 = ssdzoo.load_config("configs/ssd_mobilenetv2.yaml")
    assert v2.image_size == (300, 300) and v2.num_ssd_boxes == 1917
    assert v2.aspect_ratios == ((), (2, 3), (2, 3), (2, 3), (2, 3), (2, 3))
    assert (v2.gamma, v2.alpha, v2.lr, v2.lr_init, v2.weight_decay) == (2.0, 0.75, 0.05, 0.001, 0.00015)
    r50 = ssdzoo.load_config("ssd_resnet50_fpn")
    assert r50.use_fpn and r50.use_anchor_generator and r50.alpha == 0.25 and r50.lr_end_rate == 0.0
    assert len(r50.classes) == r50.num_classes == 81 and r50.classes[1] == "person"


def test_overrides_are_parsed_as_yaml():
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["lr=0.01", "image_size=[300, 300]", "backbone_ckpt_path=null",
                                                 "shuffle=false"])
    assert cfg.lr == 0.01 and cfg.image_size == (300, 300) and cfg.backbone_ckpt_path is None and not cfg.shuffle


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'learning_rate'"):
        ssdzoo.load_config("ssd_mobilenetv2", ["learning_rate=0.1"])
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 0.1\nbogus_key: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'bogus_key'"):
        ssdzoo.load_config(path)


@pytest.mark.parametrize("override, key", [("lr=fast", "lr"), ("batch_size=3.5", "batch_size"),
                                           ("image_size=[300]", "image_size"), ("shuffle=1", "shuffle"),
                                           ("aspect_ratios=[2, 3]", "aspect_ratios")])
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ssdzoo.load_config("ssd_mobilenetv2", [override])


def test_inconsistent_values():
    with pytest.raises(ConfigError, match="num_classes"):
        ssdzoo.load_config("ssd_mobilenetv2", ["num_classes=3"])
    with pytest.raises(ConfigError, match="steps"):
        ssdzoo.load_config("ssd_mobilenetv2", ["steps=[16, 32]"])
    with pytest.raises(ConfigError, match="pad_mode"):
        ssdzoo.load_config("ssd_mobilenetv2", ["pad_mode=reflect"])
    with pytest.raises(ConfigError, match="key=value"):
        ssdzoo.load_config("ssd_mobilenetv2", ["lr"])
    with pytest.raises(ConfigError, match="not found"):
        ssdzoo.load_config("no_such_recipe")


def test_round_trip_through_dict_and_replace():
    cfg = ssdzoo.load_config("ssd_mobilenetv3")
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(lr=0.2).lr == 0.2
    with pytest.raises(ConfigError):
        cfg.replace(max_boxes=0)
    with pytest.raises(Exception):
        cfg.lr = 1.0  # frozen


def test_normalization_comes_from_the_backbone():
    assert ssdzoo.load_config("ssd_mobilenetv2").mean == (0.485, 0.456, 0.406)
    assert ssdzoo.load_config("ssd_mobilenetv2", ["backbone=test_resnet"]).mean == (0.5, 0.5, 0.5)


def test_classes_from_the_data_keys():
    cfg = ssdzoo.load_config("demo", ["classes=null", "num_classes=null", "train_split=train", "val_split=valid"])
    assert cfg.classes is None and cfg.num_classes is None and cfg.classes_from_data
    assert (cfg.train_split, cfg.val_split) == ("train", "valid")
    assert ssdzoo.load_config("demo", ["classes=[background,a]", "num_classes=null"]).num_classes == 2
    with pytest.raises(ValueError, match="resolve it first"):
        ssdzoo.build_model(cfg)
    with pytest.raises(ConfigError, match="twice"):
        ssdzoo.load_config("demo", ["classes=[background,a,a,b]"])
    with pytest.raises(ConfigError, match="val_split"):
        ssdzoo.load_config("demo", ["val_split=a/b"])


def test_resolve_classes_reads_the_training_split(tmp_path):
    from ssdzoo.data import make_synthetic_coco, prepare_coco, resolve_classes

    make_synthetic_coco(tmp_path / "raw", num_train=2, num_val=0, progress=False)
    prepare_coco(tmp_path / "raw", tmp_path / "packed")
    cfg = ssdzoo.load_config("demo", ["classes=null", "num_classes=null", f"data_dir={tmp_path / 'packed'}"])
    assert resolve_classes(cfg).classes == ("background", "circle", "square", "triangle")
    assert resolve_classes(cfg, tmp_path / "raw").num_classes == 4  # a raw COCO root too
    with pytest.raises(ValueError, match="has 3 categories but the config has num_classes 81"):
        resolve_classes(cfg.replace(num_classes=81))
    with pytest.raises(FileNotFoundError, match=r"no dataset for split train.*found packed splits: train2017"):
        resolve_classes(cfg.replace(train_split="train"))


def test_a_weights_file_without_config_needs_one(tmp_path, capsys):
    from safetensors.torch import save_file

    from ssdzoo.cli import main

    path = tmp_path / "w.safetensors"
    save_file({"x": __import__("torch").zeros(1)}, str(path))
    assert main(["eval", "--checkpoint", str(path)]) == 2
    assert f"{path} carries no config: name the recipe" in capsys.readouterr().err


def test_describe_model():
    assert ssdzoo.config.describe_model(ssdzoo.load_config("demo")) == \
        "regnetx_002 + FPN, 128x128, 3 classes (circle, square, triangle)"
    assert "80 in all" in ssdzoo.config.describe_model(ssdzoo.load_config("ssd_mobilenetv2"))


def test_messages_name_where_a_bad_key_came_from_and_suggest_the_key():
    with pytest.raises(ConfigError) as err:
        ssdzoo.load_config("demo", ["bach_size=4"])
    assert str(err.value) == "override 'bach_size=4': unknown key 'bach_size' (did you mean 'batch_size'?)"
    with pytest.raises(ConfigError, match=r"^override 'lr=fast': key 'lr' expects a number"):
        ssdzoo.load_config("demo", ["lr=fast"])
    with pytest.raises(ConfigError, match=r"^override 'zzzz=1': unknown key 'zzzz'$"):
        ssdzoo.load_config("demo", ["zzzz=1"])


def test_unknown_key_in_a_file_suggests_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("epoch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: unknown key\(s\) 'epoch_sise' \(did you mean 'epoch_size'\?\)"):
        ssdzoo.load_config(path)


def test_unknown_recipe_name_lists_the_recipes():
    with pytest.raises(ConfigError) as err:
        ssdzoo.load_config("ssd_mobilenetv4")
    message = str(err.value)
    assert "'ssd_mobilenetv4' not found" in message
    assert ("demo, ssd300_vgg16, ssd_mobilenetv2, ssd_mobilenetv3, ssd_resnet50_fpn, "
            "ssdlite320_mobilenet_v3_large") in message
    assert "did you mean 'ssd_mobilenetv2' or 'ssd_mobilenetv3'?" in message


def _keys_read_outside_the_schema() -> set[str]:
    """Config keys some module other than config.py reads: ``cfg.key``, ``self.cfg.key``,
    ``saved_cfg.key``, ``load_config(...).key``, or ``getattr(cfg, "key")``."""
    import ast
    from pathlib import Path

    read = set()
    for path in (Path(ssdzoo.__file__).parent).rglob("*.py"):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                owner = node.value.func if isinstance(node.value, ast.Call) else node.value
                name = getattr(owner, "id", None) or getattr(owner, "attr", "")
                if "cfg" in name or "config" in name:
                    read.add(node.attr)
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant)):
                read.add(node.args[1].value)
    return read


def test_every_key_of_the_schema_is_used():
    """A key that nothing reads would be accepted and silently ignored (as keep_checkpoint_max
    once was): every key must be read by the code it configures."""
    import dataclasses

    unread = sorted({f.name for f in dataclasses.fields(ssdzoo.Config)} - _keys_read_outside_the_schema())
    assert unread == [], f"config keys that nothing reads: {unread}"


@pytest.mark.parametrize("override, message", [
    ("keep_checkpoint_max=-1", "keep_checkpoint_max must be 0 or more"),
    ("save_checkpoint_steps=-5", "save_checkpoint_steps must be 0 or more"),
    ("save_checkpoint_minutes=-1", "save_checkpoint_minutes must be 0 or more"),
    ("max_unreadable_share=1.5", r"max_unreadable_share must be in \[0, 1\]"),
    ("log_interval=0", "log_interval must be positive"),
    ("num_parallel_workers=-1", "num_parallel_workers must be 0 or more"),
])
def test_run_keys_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        ssdzoo.load_config("ssd_mobilenetv2", [override])


# what build_model reads that does not change the network: weights to start from, and training
NOT_MODEL_KEYS = {"backbone_pretrained", "backbone_ckpt_path", "cls_prior", "bn_momentum", "expand_bn_momentum",
                  "backbone_bn_momentum",
                  "classes", "image_size", "use_anchor_generator", "num_ssd_boxes"}  # anchors, checked apart


def test_every_key_the_model_is_built_from_is_checked_against_a_checkpoint():
    """A checkpoint loaded with a config that builds other layers must be refused: every cfg key
    the model package reads is a MODEL_KEY, or listed above as not shaping the network."""
    import ast
    import dataclasses
    from pathlib import Path

    from ssdzoo.checkpoint_config import check_fits
    from ssdzoo.config import MODEL_KEYS

    fields = {f.name for f in dataclasses.fields(ssdzoo.Config)}
    read = {node.attr for path in (Path(ssdzoo.__file__).parent / "model").rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "cfg"} & fields
    assert {"extras_block", "head_conv", "head_share_tower", "fpn_separable"} <= read  # the walk sees them
    assert sorted(read - set(MODEL_KEYS) - NOT_MODEL_KEYS) == []
    assert set(MODEL_KEYS) <= fields
    cfg = ssdzoo.load_config("ssd_mobilenetv2")
    with pytest.raises(ValueError, match=r"\(extras_block, head_kernel_size differ\)"):
        check_fits(cfg, cfg.replace(extras_block="conv", head_kernel_size=3).to_dict(), "ssd_mobilenetv2", "w.pt")
    check_fits(cfg, cfg.replace(cls_prior=0.01, bn_momentum=0.1).to_dict(), "ssd_mobilenetv2", "w.pt")


def test_an_error_an_override_causes_names_the_override():
    with pytest.raises(ConfigError, match=r"^override 'batch_size=0' \(on .*demo.yaml\): batch_size must be positive"):
        ssdzoo.load_config("demo", ["lr=0.01", "batch_size=0"])
    with pytest.raises(ConfigError, match=r"^override 'num_classes=3' \(on .*\): classes has 81 names but "
                                          r"num_classes is 3"):
        ssdzoo.load_config("ssd_mobilenetv2", ["num_classes=3"])
    with pytest.raises(ConfigError, match=r"^overrides 'classes=\[background,a\]' 'num_classes=4' \(on "):
        ssdzoo.load_config("demo", ["classes=[background,a]", "num_classes=4"])  # neither alone is wrong


def test_classes_given_alone_set_num_classes_everywhere(tmp_path):
    """One rule for load_config, the CLI and a checkpoint's saved config: num_classes follows classes."""
    from ssdzoo.checkpoint_config import config_for_weights

    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["classes=[background,person]"])
    assert cfg.classes == ("background", "person") and cfg.num_classes == 2
    import torch

    torch.save({"config": ssdzoo.load_config("demo").to_dict()}, tmp_path / "x.pt")
    saved = config_for_weights(None, ["classes=[background,a,b]"], tmp_path / "x.pt")
    assert saved.num_classes == 3


def test_a_stale_feature_size_is_refused_naming_both_anchor_keys():
    with pytest.raises(ConfigError, match=r"feature maps of \[20, 10, 5, 3\] and 3204 default boxes, but "
                                          r"feature_size is \[16, 8, 4, 2\] and num_ssd_boxes 2040: set both "
                                          r"\(feature_size=\[20,10,5,3\] num_ssd_boxes=3204\)"):
        ssdzoo.load_config("demo", ["image_size=[160,160]"])
    cfg = ssdzoo.load_config("demo", ["image_size=[160,160]", "feature_size=[20,10,5,3]", "num_ssd_boxes=3204"])
    assert len(ssdzoo.default_boxes(cfg)) == 3204
