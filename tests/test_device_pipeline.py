"""data_backend device on CPU tensors: the workers read bytes and draw the augmentation, the
device executor decodes, crops and resizes (roi_align), flips, colours and normalizes whole
batches. Boxes and labels equal the workers backend's exactly; pixels within a stated tolerance
(interpolation); background images, tiny and crowd boxes, PNG, WebP, grayscale and turned JPEGs
pass; training, evaluation and predict run through it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import encode, noise_image, oriented_jpeg
from PIL import Image
from tiny import make_tiny_shapes, tiny_config, tiny_model

from ssdzoo.config import ConfigError
from ssdzoo.data import load_dataset, make_backend_loader
from ssdzoo.data.decoder import device_decodable
from ssdzoo.data.device_pipeline import (EncodedImages, augment_on_device, batch_to_device, decode_images,
                                         encode_image, resolve_data_backend)
from ssdzoo.data.images import decode
from ssdzoo.data.transforms import apply_augmentation, draw_augmentation

CPU = torch.device("cpu")
# The device pipeline runs on CPU tensors everywhere; on a machine with CUDA the tests that
# compare it with the CPU executor run there too (nvJPEG instead of libjpeg-turbo). Its
# tolerances there are a guess until measured on a GPU: nvJPEG's IDCT and chroma upsampling
# are not libjpeg-turbo's, about one grey level apart (1 / 57 in normalized units).
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
DECODER_SLACK = {"cpu": 0.0, "cuda": 1 / 57}  # normalized units
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Pixels, in normalized units (1.0 = one std, about 57 of 255 grey levels): the CPU decodes a
# JPEG at a reduced DCT scale and resizes with PIL's antialiasing filter, the device decodes at
# full scale and averages bilinear samples over each output pixel (roi_align). Measured on
# photo-like 480..640 px JPEGs to 300x300: mean abs difference 0.0084 (about half a grey level),
# worst image's mean 0.015, largest pixel 0.15; bilinear (no antialiasing): 3e-5.
MEAN_ABS_TOLERANCE = 0.015
IMAGE_MEAN_ABS_TOLERANCE = 0.03
BILINEAR_TOLERANCE = 1e-3


def photo_jpeg(seed: int, w: int, h: int, **save) -> bytes:
    """Smooth shapes plus sensor-like grain: about as hard on a resize filter as a photo."""
    rng = np.random.default_rng(seed)
    base = np.asarray(noise_image(seed, size=(w // 16 + 1, h // 16 + 1)).resize((w, h), Image.Resampling.BICUBIC),
                      np.float32)
    pixels = np.clip(base + rng.normal(0, 9, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def device_images(datas, augmentations, size_hw, resize_mode="antialias", device=CPU):
    encoded = EncodedImages.stack([encode_image(d) for d in datas], augmentations)
    decoded, reasons = decode_images(encoded, device)
    assert not reasons
    out = augment_on_device(decoded, encoded, size_hw=size_hw, mean=MEAN, std=STD, resize_mode=resize_mode)
    assert out.device.type == device.type
    return out.cpu()


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("size_hw", [(300, 300), (64, 64)])
def test_device_executor_gives_the_cpu_executor_image(size_hw, device):
    rng = np.random.default_rng(1)
    datas, augmentations = [], []
    for k in range(8):
        w, h = (int(v) * size_hw[0] // 300 for v in rng.integers(480, 641, size=2))
        boxes = np.array([[0.1 * w, 0.2 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.5 * h, 0.9 * w, 0.8 * h]], np.float32)
        drawn = draw_augmentation(boxes, np.array([1, 2]), image_hw=(h, w), size_hw=size_hw,
                                  rng=np.random.default_rng(k))
        datas.append(photo_jpeg(k, w, h))
        augmentations.append(drawn.augmentation)
    assert {a.flip for a in augmentations} == {False, True}
    cpu = torch.stack([apply_augmentation(d, a, size_hw=size_hw, mean=MEAN, std=STD)
                       for d, a in zip(datas, augmentations)])
    out = device_images(datas, augmentations, size_hw, device=device)
    difference = (cpu - out).abs()
    slack = DECODER_SLACK[device.type]
    assert out.shape == cpu.shape and out.dtype == torch.float32
    assert difference.mean() < MEAN_ABS_TOLERANCE + slack
    assert difference.mean(dim=(1, 2, 3)).max() < IMAGE_MEAN_ABS_TOLERANCE + slack
    # a flipped or unflipped twin would be far off: the flip and the colour are the drawn ones
    assert (cpu - out.flip(-1)).abs().mean() > 10 * MEAN_ABS_TOLERANCE
    bilinear_cpu = torch.stack([apply_augmentation(d, a, size_hw=size_hw, mean=MEAN, std=STD, resize_mode="bilinear")
                                for d, a in zip(datas, augmentations)])
    bilinear = device_images(datas, augmentations, size_hw, "bilinear", device=device)
    assert (bilinear_cpu - bilinear).abs().mean() < BILINEAR_TOLERANCE + slack


def test_batched_colour_jitter_is_the_cpu_one_per_image():
    from ssdzoo.data.device_pipeline import color_jitter_batch_
    from ssdzoo.data.transforms import color_jitter_

    images = torch.stack([torch.from_numpy(np.array(noise_image(k, size=(24, 16)))).permute(2, 0, 1)
                          for k in range(6)]).float()
    rng = np.random.default_rng(0)
    order = torch.tensor(np.stack([rng.permutation(3) for _ in range(6)]))
    factors = torch.tensor(rng.uniform(0.6, 1.4, size=(6, 3)), dtype=torch.float32)
    batched = color_jitter_batch_(images.clone(), order, factors)
    for k in range(6):
        one = color_jitter_(images[k].clone(), order[k].tolist(), factors[k].tolist())
        torch.testing.assert_close(batched[k], one, atol=1e-3, rtol=0)


def test_a_crop_outside_the_image_is_filled_with_the_mean():
    data = photo_jpeg(0, 64, 48)
    drawn = draw_augmentation(np.zeros((0, 4), np.float32), np.zeros(0), image_hw=(48, 64), size_hw=(32, 32),
                              rng=np.random.default_rng(0))
    from ssdzoo.data.images import CropRect
    from ssdzoo.data.transforms import NO_JITTER

    expand = drawn.augmentation._replace(crop=CropRect(-64, -48, 128, 96), flip=False)
    expand = expand._replace(jitter_order=NO_JITTER[0], jitter_factors=NO_JITTER[1])
    image = device_images([data], [expand], (32, 32))[0]
    assert image[:, :4].abs().max() < 1e-5 and image[:, :, -4:].abs().max() < 1e-5  # the mean, normalized
    assert image[:, 12:20, 12:20].abs().mean() > 0.1  # the picture in the middle


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_files_the_device_decoder_does_not_take_are_decoded_on_the_cpu(device):
    """PNG, WebP, grayscale and progressive JPEGs: decoded by the CPU in the workers; a turned
    JPEG: decoded on the device, turned there. All give the upright image the CPU decodes."""
    picture = noise_image(5, size=(64, 48))
    files = {
        "png": (encode(picture, "PNG"), False), "webp": (encode(picture, "WEBP"), False),
        "gray": (encode(picture.convert("L")), False), "progressive": (photo_jpeg(3, 64, 48, progressive=True), False),
        "baseline": (photo_jpeg(3, 64, 48), True), "turned": (oriented_jpeg(picture, 6), True),
        "cmyk": (encode(picture.convert("CMYK")), False),
    }
    for name, (data, on_device) in files.items():
        assert device_decodable(data).on_device is on_device, name
        encoded = encode_image(data)
        decoded, reasons = decode_images(EncodedImages.whole([encoded]), device)
        reference = decode(data).image
        assert decoded[0].device.type == device.type and not reasons, name
        assert decoded[0].shape == reference.shape and encoded.image_hw == tuple(reference.shape[1:]), name
        error = (decoded[0].cpu().float() - reference.float()).abs().mean()
        # the CPU route is the same decode; the device decoder another build (or nvJPEG)
        assert error == 0 if not on_device else error < 1.0 + 57 * DECODER_SLACK[device.type], name


@pytest.fixture(scope="module")
def odd_shapes(tmp_path_factory):
    """The tiny shapes with odd files: PNG, WebP, a grayscale JPEG, crowd and 1-pixel boxes."""
    root = make_tiny_shapes(tmp_path_factory.mktemp("odd"))
    path = root / "annotations" / "instances_train2017.json"
    coco = json.loads(path.read_text())
    images = coco["images"]
    for image, fmt in zip(images[:3], ("PNG", "WEBP", "GRAY")):
        old = root / "train2017" / image["file_name"]
        picture = Image.open(old).convert("RGB")
        old.unlink()
        if fmt == "GRAY":
            picture.convert("L").save(old, format="JPEG", quality=90)
            continue
        image["file_name"] = Path(image["file_name"]).with_suffix("." + fmt.lower()).name
        options = {"lossless": True} if fmt == "WEBP" else {}
        picture.save(root / "train2017" / image["file_name"], format=fmt, **options)
    annotations = coco["annotations"]
    first = next(a for a in annotations if a["image_id"] == images[3]["id"])
    annotations[annotations.index(first)] = {**first, "iscrowd": 1}
    annotations.append({**first, "id": 10 ** 6, "bbox": [20.0, 20.0, 1.0, 1.0], "area": 1.0, "iscrowd": 0})
    path.write_text(json.dumps(coco))
    return root


@pytest.mark.parametrize("train", [True, False])
def test_both_backends_give_the_same_boxes_labels_and_pictures(odd_shapes, train):
    cfg = tiny_config(f"data_dir={odd_shapes}")
    dataset = load_dataset(odd_shapes, cfg, train=train)
    for epoch in range(2):
        batches = {}
        for backend in ("workers", "device"):
            loader = make_backend_loader(dataset, cfg, train=train, backend=backend)
            loader.sampler.set_epoch(epoch)
            batches[backend] = [batch_to_device(batch, CPU, cfg) for batch in loader]
        assert len(batches["workers"]) == len(batches["device"]) > 0
        for workers, device in zip(batches["workers"], batches["device"]):
            for field in ("boxes_xyxy", "labels", "image_ids", "image_hw", "skipped"):
                assert torch.equal(getattr(workers, field), getattr(device, field)), field
            difference = (workers.images - device.images).abs()
            assert difference.mean() < MEAN_ABS_TOLERANCE
            assert difference.mean(dim=(1, 2, 3)).max() < IMAGE_MEAN_ABS_TOLERANCE


def test_a_file_that_does_not_decode_is_skipped_in_training_and_fails_evaluation(tmp_path):
    root = make_tiny_shapes(tmp_path / "shapes")
    coco = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    victim = root / "train2017" / coco["images"][0]["file_name"]
    data = bytearray(victim.read_bytes())
    scan = data.index(b"\xff\xda")  # start of scan: corrupt the entropy-coded data after it
    data[scan + 40:scan + 400] = b"\xff\xd9" * 180
    victim.write_bytes(bytes(data))
    cfg = tiny_config(f"data_dir={root}", "batch_size=16")
    dataset = load_dataset(root, cfg, train=True)
    dataset.skip_unreadable = True
    skipped = []
    for batch in make_backend_loader(dataset, cfg, train=True, backend="device"):
        batch = batch_to_device(batch, CPU, cfg)
        skipped += batch.skipped.tolist()
        assert len(batch.images) + len(batch.skipped) == 16
    workers = [b.skipped.tolist() for b in make_backend_loader(dataset, cfg, train=True, backend="workers")]
    assert skipped == sum(workers, []), "both backends skip the same files"


def test_the_backend_key():
    assert tiny_config().data_backend == "auto"
    assert resolve_data_backend(tiny_config(), "cpu") == "workers"
    assert resolve_data_backend(tiny_config(), "cuda") == "device"
    assert resolve_data_backend(tiny_config("image_resize=legacy"), "cuda") == "workers"
    assert resolve_data_backend(tiny_config("data_backend=device"), "cpu") == "device"
    with pytest.raises(ConfigError, match="data_backend"):
        tiny_config("data_backend=gpu")
    with pytest.raises(ConfigError, match="image_resize legacy"):
        tiny_config("data_backend=device", "image_resize=legacy")


def test_eval_and_predict_on_the_device_backend_match_the_workers(tmp_path):
    """A model whose scores spread over (0, 1): eval's AP within 0.005 and predict's detections
    (score >= 0.3) each found again at IoU >= 0.95 with a score within 0.02."""
    from ssdzoo.engine.evaluate import evaluate_report
    from ssdzoo.inference import Predictor
    from ssdzoo.predict import run_predict

    root = make_tiny_shapes(tmp_path / "shapes")
    reports, predictions = {}, {}
    for backend in ("workers", "device"):
        cfg = tiny_config(f"data_dir={root}", f"data_backend={backend}")
        model = tiny_model(cfg)
        reports[backend] = evaluate_report(model, load_dataset(root, cfg, train=False), cfg, device=CPU,
                                           progress=False).coco.stats
        out = tmp_path / backend
        run_predict(Predictor(cfg, model, min_score=0.3), [root / "val2017"], out, batch_size=4, draw=True,
                    progress=False)
        predictions[backend] = {line["file_name"]: line["detections"]
                                for line in map(json.loads, (out / "detections.jsonl").read_text().splitlines())}
        assert len(list(out.rglob("*.jpg"))) == 8  # drawn from the device-decoded pictures too
    for name in ("AP", "AP50"):
        assert abs(reports["workers"][name] - reports["device"][name]) <= 0.005, name
    from ssdzoo.boxes import pairwise_iou

    matched = total = 0
    for name, expected in predictions["workers"].items():
        found = predictions["device"][name]
        for det in expected:
            total += 1
            candidates = [d for d in found if d["category_id"] == det["category_id"]]
            if not candidates:
                continue
            xywh = torch.tensor([det["bbox"]] + [d["bbox"] for d in candidates])
            xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
            iou = pairwise_iou(xyxy[:1], xyxy[1:])[0]
            best = int(iou.argmax())
            if iou[best] >= 0.95 and abs(candidates[best]["score"] - det["score"]) <= 0.02:
                matched += 1
    assert total > 20 and matched == total, f"{matched} of {total} detections found again"
