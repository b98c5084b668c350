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
    assert "demo, ssd_mobilenetv2, ssd_mobilenetv3, ssd_resnet50_fpn" in message
    assert "did you mean 'ssd_mobilenetv2' or 'ssd_mobilenetv3'?" in message
