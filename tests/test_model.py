"""Model construction: the three recipes, any timm backbone, shapes in train and eval mode."""

import pytest
import torch

import ssdzoo

SEED_PARAMS = {  # trainable / with BN running statistics, measured in MindSpore (SEED_FACTS.md)
    "ssd_mobilenetv2": (4_393_461, 4_445_365),
    "ssd_mobilenetv3": (4_841_093, 4_882_325),
    "ssd_resnet50_fpn": (33_294_654, 33_370_814),
}

# each recipe at a small input: the anchor layout follows the smaller maps
SMALL = {
    "ssd_mobilenetv2": ["image_size=[64, 64]", "feature_size=[4, 2, 1, 1, 1, 1]",
                        "steps=[16, 32, 64, 64, 64, 64]", "num_ssd_boxes=96"],
    "ssd_mobilenetv3": ["image_size=[64, 64]", "feature_size=[4, 2, 1, 1, 1, 1]",
                        "steps=[16, 32, 64, 64, 64, 64]", "num_ssd_boxes=96"],
    "ssd_resnet50_fpn": ["image_size=[64, 64]", "feature_size=[8, 4, 2, 1, 1]", "num_ssd_boxes=516"],
}


@pytest.mark.parametrize("recipe", SEED_PARAMS)
def test_parameter_counts_match_the_seed(recipe):
    model = ssdzoo.build_model(ssdzoo.load_config(recipe))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (trainable, trainable + buffers) == SEED_PARAMS[recipe]


@pytest.mark.parametrize("recipe", SEED_PARAMS)
def test_forward_backward_small_input(recipe):
    cfg = ssdzoo.load_config(recipe, SMALL[recipe])
    model = ssdzoo.build_model(cfg)
    images = torch.randn(2, 3, *cfg.image_size)
    loc, logits = model(images)
    assert loc.shape == (2, cfg.num_ssd_boxes, 4) and logits.shape == (2, cfg.num_ssd_boxes, 81)
    anchors_cxcywh = ssdzoo.default_boxes(cfg)
    gt_xyxy = torch.tensor([[[0.1, 0.1, 0.6, 0.7]], [[0.3, 0.2, 0.9, 0.5]]])
    target_loc, target_labels = ssdzoo.encode(gt_xyxy, torch.tensor([[1], [7]]), anchors_cxcywh, cfg)
    loss = ssdzoo.ssd_loss(loc, logits, target_loc, target_labels, cfg)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        eval_loc, eval_logits = model(images)
    assert eval_loc.shape == loc.shape and eval_logits.shape == logits.shape


@pytest.mark.parametrize("backbone, indices, use_fpn", [
    ("test_efficientnet", [3, 4], False),   # SSD extras on another MobileNet-like net
    ("test_resnet", [2, 3, 4], True),       # FPN on another ResNet
    ("test_convnext", [1, 2, 3], True),     # a ConvNeXt: feature levels at strides 8, 16, 32
])
def test_any_timm_backbone(backbone, indices, use_fpn):
    base = ["backbone=" + backbone, f"backbone_out_indices={indices}", "image_size=[64, 64]",
            "num_classes=3", "classes=[bg, a, b]"]
    if use_fpn:
        overrides = base + ["use_fpn=true", "use_anchor_generator=true", "extras_out_channels=[32, 32, 32, 32, 32]",
                            "feature_size=[8, 4, 2, 1, 1]", "steps=[8, 16, 32, 64, 128]", "num_default=[6, 6, 6, 6, 6]",
                            "num_ssd_boxes=516", "num_addition_layers=2"]
        recipe = "ssd_resnet50_fpn"
    else:
        overrides = base + ["backbone_use_head=true", "extras_in_channels=[0, 288, 256, 64, 64]",
                            "extras_out_channels=[288, 256, 64, 64]", "extras_strides=[1, 1, 2, 2]",
                            "extras_ratio=[0.2, 0.2, 0.25, 0.5]", "feature_size=[4, 2, 1, 1]",
                            "steps=[16, 32, 64, 64]", "num_default=[3, 6, 6, 6]", "num_ssd_boxes=84"]
        recipe = "ssd_mobilenetv2"
    cfg = ssdzoo.load_config(recipe, overrides)
    model = ssdzoo.build_model(cfg)
    loc, logits = model(torch.randn(2, 3, 64, 64))
    assert loc.shape == (2, cfg.num_ssd_boxes, 4) and logits.shape == (2, cfg.num_ssd_boxes, 3)


def test_layout_errors_name_the_expected_values():
    with pytest.raises(ValueError, match=r"maps of \[4, 2, 1, 1, 1, 1\].*feature_size is \[19, 10, 5, 3, 2, 1\]"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", ["image_size=[64, 64]"]))
    with pytest.raises(ValueError, match="num_ssd_boxes is 1000"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", ["num_ssd_boxes=1000"]))
    with pytest.raises(ValueError, match="extras_out_channels"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", ["backbone=mobilenetv3_large_100"]))
    with pytest.raises(ValueError, match="out of range"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", ["backbone_out_indices=[3, 9]"]))


def test_backbone_weights_from_a_timm_state_dict(tmp_path):
    import timm

    source = timm.create_model("mobilenetv2_100", num_classes=1000)  # with its classifier, as released
    path = tmp_path / "mobilenetv2_100.pth"
    torch.save(source.state_dict(), path)
    model = ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", [f"backbone_ckpt_path={path}"]))
    torch.testing.assert_close(model.backbone.model.conv_head.weight, source.conv_head.weight)
    torch.testing.assert_close(model.backbone.model.blocks[3][0].bn1.running_var, source.blocks[3][0].bn1.running_var)

    incomplete = {k: v for k, v in source.state_dict().items() if not k.startswith("conv_head")}
    torch.save(incomplete, path)
    with pytest.raises(ValueError, match="missing 1: conv_head.weight"):
        ssdzoo.build_model(ssdzoo.load_config("ssd_mobilenetv2", [f"backbone_ckpt_path={path}"]))


def test_model_weights_round_trip(tmp_path):
    cfg = ssdzoo.load_config("ssd_mobilenetv2", SMALL["ssd_mobilenetv2"])
    model = ssdzoo.build_model(cfg).eval()
    path = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    again = ssdzoo.build_model(cfg, weights=path).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), again(images), rtol=0, atol=0)


def test_torchvision_backbone_options_name_what_they_need():
    with pytest.raises(ValueError, match="backbone_reduced_tail applies to mobilenetv3_large_100"):
        ssdzoo.build_model(ssdzoo.load_config("ssdlite320_mobilenet_v3_large", ["backbone=mobilenetv2_100"]))
    with pytest.raises(ValueError, match="backbone_expansion_level needs a timm EfficientNet/MobileNet"):
        ssdzoo.build_model(ssdzoo.load_config("ssdlite320_mobilenet_v3_large", [
            "backbone_reduced_tail=false", "backbone_use_head=true"]))
    with pytest.raises(ValueError, match="backbone_ceil_pools: 'features.99' matches no max-pool"):
        ssdzoo.build_model(ssdzoo.load_config("ssd300_vgg16", ["backbone_ceil_pools=[features.99]"]))


def test_image_size_alone_names_both_anchor_keys_for_ssd_boxes():
    """ssd_mobilenetv2 at another input size: the error gives feature_size and num_ssd_boxes to set."""
    cfg = ssdzoo.load_config("ssd_mobilenetv2", ["image_size=[160,160]", "backbone_pretrained=false"])
    with pytest.raises(ValueError, match=r"feature maps of \[10, 5, 3, 2, 1, 1\] and 540 default boxes, but "
                                         r"feature_size is \[19, 10, 5, 3, 2, 1\] and num_ssd_boxes 1917: set both "
                                         r"\(feature_size=\[10,5,3,2,1,1\] num_ssd_boxes=540\)"):
        ssdzoo.build_model(cfg)
    fixed = ssdzoo.load_config("ssd_mobilenetv2", ["image_size=[160,160]", "backbone_pretrained=false",
                                                   "feature_size=[10,5,3,2,1,1]", "num_ssd_boxes=540"])
    assert len(ssdzoo.default_boxes(fixed)) == 540
