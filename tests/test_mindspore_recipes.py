"""Full seed SSD checkpoints of the other two recipes (ssd_mobilenetv3, ssd_resnet50_fpn).

No MindSpore-written file exists for them here, so each test makes one (in memory: the reader
has its own tests) with the names of the seed's model code (examples/det/ssd/model.py): the
backbone from a MindCV replica under the features_only wrapper's names, the neck and head from
an ssdzoo model's own tensors under the seed's names (loc channels in the seed's (dy, dx, dh,
dw) order). Converting it must give back exactly those tensors, each in its place.
"""

from __future__ import annotations

import mindcv_replicas as replicas
import pytest
import torch

import ssdzoo
from ssdzoo.convert.mindspore import convert_backbone, convert_ssd
from ssdzoo.convert.mindspore_ckpt import MindSporeCheckpoint

NET = "backbone_wrapper.backbone.net."
XY_TO_YX = [1, 0, 3, 2]


def seed_names(module_tag: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A conv's or BN's tensors under MindSpore's parameter names."""
    if isinstance(module, torch.nn.BatchNorm2d):
        return {f"{module_tag}.{ms}": getattr(module, pt).detach().clone()
                for pt, ms in replicas.BN_NAMES.items()}
    out = {f"{module_tag}.weight": module.weight.detach().clone()}
    if module.bias is not None:
        out[f"{module_tag}.bias"] = module.bias.detach().clone()
    return out


def to_seed_loc(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ssdzoo's (dx, dy, dw, dh) output channels of a loc conv in the seed's (dy, dx, dh, dw)."""
    return {k: v.view(-1, 4, *v.shape[1:])[:, XY_TO_YX].reshape(v.shape) for k, v in tensors.items()}


def replica_backbone(replica: torch.nn.Module, flatten: bool) -> dict[str, torch.Tensor]:
    """MindCV's tensors as the features_only wrapper names them (classifier cut off)."""
    out = {}
    for tag, value in replicas.mindcv_state(replica).items():
        if tag.startswith("classifier"):
            continue
        if flatten:  # the wrapper flattens the features sequence: features.3 -> features_3
            tag = tag.replace("features.", "features_", 1)
        out[NET + tag] = value
    return out


def mobilenetv3_neck_head(model: ssdzoo.Detector) -> dict[str, torch.Tensor]:
    """MobileNetV3Wrapper + MultiBox names, from the seed's model code."""
    neck, head = model.neck, model.head
    t = {}
    t |= seed_names("backbone_wrapper.feature1_expand_layer.0", neck.expand.conv)  # a SequentialCell
    t |= seed_names("backbone_wrapper.feature1_expand_layer.1", neck.expand.bn)
    for i, block in enumerate(neck.blocks):
        p = f"backbone_wrapper.multi_residual.{i}.conv"
        for j in (0, 1):  # ConvBNReLU: features.0 conv, features.1 BN
            t |= seed_names(f"{p}.{j}.features.0", block.conv[j].conv)
            t |= seed_names(f"{p}.{j}.features.1", block.conv[j].bn)
        t |= seed_names(f"{p}.2", block.conv[2])
        t |= seed_names(f"{p}.3", block.conv[3])
    for kind in ("loc", "cls"):
        for k, branch in enumerate(getattr(head, kind)):
            p = f"multi_box.multi_{kind}_layers.{k}"
            t |= seed_names(f"{p}.0", branch[0].conv)
            t |= seed_names(f"{p}.1", branch[0].bn)
            last = seed_names(f"{p}.3", branch[1])
            t |= to_seed_loc(last) if kind == "loc" else last
    return t


def fpn_neck_head(model: ssdzoo.Detector, *, shared_at_every_level: bool) -> dict[str, torch.Tensor]:
    """ResNet50FPNWrapper + WeightSharedMultiBox names, from the seed's model code."""
    neck, head = model.neck, model.head
    t = {}
    for i, conv in enumerate(neck.lateral):
        t |= seed_names(f"backbone_wrapper.fpn.lateral_convs_list.{i}", conv)
    for i, block in enumerate(neck.smooth):
        t |= seed_names(f"backbone_wrapper.fpn.fpn_convs_list.{i}.features.0", block.conv)
        t |= seed_names(f"backbone_wrapper.fpn.fpn_convs_list.{i}.features.1", block.bn)
    for i, block in enumerate(neck.extra):
        t |= seed_names(f"backbone_wrapper.bottom_up.blocks.{i}.features.0", block.conv)
        t |= seed_names(f"backbone_wrapper.bottom_up.blocks.{i}.features.1", block.bn)
    for kind in ("loc", "cls"):
        tower = getattr(head, f"{kind}_tower")
        for level, norms in enumerate(tower.norms):
            for x, (conv, norm) in enumerate(zip(tower.convs, norms)):
                p = f"multi_box.addition_layer_{kind}.{level}.{x}.features"
                if level == 0 or shared_at_every_level:  # one tensor, shared by the levels
                    t |= seed_names(f"{p}.0", conv)
                t |= seed_names(f"{p}.1", norm)
    t |= to_seed_loc(seed_names("multi_box.loc_layers.0", head.loc))
    t |= seed_names("multi_box.cls_layers.0", head.cls)
    return t


def _randomized(model: ssdzoo.Detector) -> ssdzoo.Detector:
    """Distinct values in every neck/head tensor, BN statistics and biases included."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not name.startswith("backbone.") and value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=g) + 0.5)
    return model


@pytest.fixture(scope="module")
def mnv3() -> tuple[ssdzoo.Config, ssdzoo.Detector]:
    cfg = ssdzoo.load_config("ssd_mobilenetv3")
    return cfg, _randomized(ssdzoo.build_model(cfg))


@pytest.fixture(scope="module")
def r50fpn() -> tuple[ssdzoo.Config, ssdzoo.Detector, torch.nn.Module]:
    cfg = ssdzoo.load_config("ssd_resnet50_fpn")
    return cfg, _randomized(ssdzoo.build_model(cfg)), replicas.randomize(replicas.ResNet50())


def checkpoint(tensors: dict[str, torch.Tensor]) -> MindSporeCheckpoint:
    return MindSporeCheckpoint(tensors, {}, ())


def _check_round_trip(cfg, model, replica, tensors):
    """Every ssdzoo tensor is filled from the file: neck/head exactly the model's own, the
    backbone as the backbone-only conversion of the replica gives it."""
    conversion = convert_ssd(checkpoint(tensors), model, cfg)
    own = model.state_dict()
    for key, value in own.items():
        if not key.startswith("backbone.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(conversion.state[key], value), key
    backbone = convert_backbone(checkpoint(replicas.mindcv_state(replica)), cfg)
    for key, value in backbone.state.items():
        if f"backbone.model.{key}" in own:
            assert torch.equal(conversion.state[f"backbone.model.{key}"], value), key
    used = set(conversion.sources.values()) | set(conversion.dropped)
    assert used == set(tensors)
    return conversion


def test_mobilenetv3_recipe_checkpoint(mnv3):
    cfg, model = mnv3
    replica = replicas.randomize(replicas.MobileNetV3Large())
    tensors = replica_backbone(replica, flatten=True) | mobilenetv3_neck_head(model)
    conversion = _check_round_trip(cfg, model, replica, tensors)
    assert conversion.dropped == {}


@pytest.mark.parametrize("shared_at_every_level", [False, True])
def test_resnet50_fpn_recipe_checkpoint(r50fpn, shared_at_every_level):
    """The weight-shared head's convs are one tensor each: written once (as MindSpore names a
    shared parameter) or, equal, once per level; the BNs are per level."""
    cfg, model, replica = r50fpn
    tensors = replica_backbone(replica, flatten=False) | fpn_neck_head(
        model, shared_at_every_level=shared_at_every_level)
    conversion = _check_round_trip(cfg, model, replica, tensors)
    duplicates = {tag for tag, why in conversion.dropped.items() if why.startswith("same shared")}
    # loc and cls towers x 4 more levels x 4 convs deep x (weight, bias)
    assert len(duplicates) == (2 * 4 * 4 * 2 if shared_at_every_level else 0)


def test_resnet50_fpn_shared_conv_that_differs_between_levels_is_an_error(r50fpn):
    cfg, model, replica = r50fpn
    tensors = replica_backbone(replica, flatten=False) | fpn_neck_head(model, shared_at_every_level=True)
    tensors["multi_box.addition_layer_cls.3.2.features.0.weight"] += 1
    with pytest.raises(ValueError, match="addition_layer_cls.3.2.features.0.weight.*differ"):
        convert_ssd(checkpoint(tensors), model, cfg)
