"""The device executor of the augmentation: loader workers read bytes, the device makes pixels.

``data_backend`` (config) chooses where images are decoded and augmented:

    workers   the loader's worker processes decode and augment each image on the CPU
              (``transforms.train_transform``); the batch reaches the device as pixels.
    device    the workers only read each file's bytes and boxes and draw its augmentation
              (``transforms.draw_augmentation``: no pixel is touched); the training device
              decodes the batch (``decoder.decode_on_device``: batched nvJPEG on CUDA), then,
              for the whole batch at once: crop and resize (one ``roi_align``), flip, colour
              jitter, normalize.
    auto      device when the training (or evaluation, predict) device is CUDA, else workers
              (and workers for ``image_resize: legacy``, which the device does not do).

``make_backend_loader`` makes either backend's loader; ``batch_to_device`` turns either kind
of loader batch into the same ``Batch`` on the device. Boxes and labels are the drawn ones on
both backends, so they are equal; pixels differ by interpolation only (the CPU decodes JPEGs
at a reduced DCT scale and resizes with PIL's antialiasing filter; the device averages
bilinear samples over each output pixel's area, roi_align's adaptive sampling):
tests/test_device_pipeline.py measures it.

Measured on the CPU only so far (the 2-core development machine, CPU time of one thread, the
demo's data at 128x128): the workers backend costs 0.73 ms per image in a worker process, the
device backend 1.1 ms per image in the training process, beside a training step of 8.3 ms per
image. On 480x640 JPEGs to 300x300, one roi_align over the batch took 3.2x less time than
per-image F.interpolate(antialias=True), the two 0.008 apart (normalized units);
benchmarks/bench_device_pipeline.py times both on a GPU.

The crop and resize works in mean-centred [0, 255] pixels, so the zero padding of roi_align
outside an image is the mean colour (the seed's expand fill, should a crop reach outside). A
batch of differently sized images shares one zero canvas; each image's last row and column are
repeated once beside it, so that sampling at its edge sees the image's border as a lone image
would (torchvision's roi_align clamps there).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .dataset import _NONE_SKIPPED, Batch, pad_boxes, SampleKey, SkippedImage, make_loader
from .decoder import decode_on_device, device_decodable
from .images import CropRect, ImageFileError, decode, orient
from .transforms import LUMA_RGB, NO_JITTER, Augmentation, draw_augmentation, eval_augmentation

if TYPE_CHECKING:
    from ..config import Config
    from .dataset import DetectionDataset

log = logging.getLogger(__name__)

DATA_BACKENDS = ("auto", "workers", "device")


def make_backend_loader(dataset: "DetectionDataset", cfg: "Config", *, backend: str, **kwargs) -> DataLoader:
    """``dataset.make_loader`` (same keywords) for data backend ``backend`` (``workers`` or
    ``device``, as ``resolve_data_backend`` gives it): the workers backend's loader yields
    ``Batch``es, the device backend's ``EncodedBatch``es (bytes, boxes and drawn augmentations);
    ``batch_to_device`` makes either a ``Batch`` on the device."""
    if backend == "device":
        return make_loader(EncodedItems(dataset), cfg, collate_fn=collate_encoded, **kwargs)
    if backend != "workers":
        raise ValueError(f"data backend must be workers or device, got {backend!r}")
    return make_loader(dataset, cfg, **kwargs)


def resolve_data_backend(cfg: "Config", device: Union[torch.device, str]) -> str:
    """cfg.data_backend with ``auto`` resolved for ``device``: device on CUDA (unless
    image_resize is legacy, which only the workers do), else workers."""
    backend = cfg.data_backend
    if backend == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return "device" if on_cuda and cfg.image_resize != "legacy" else "workers"
    return backend


# ------------------------------------------------------------------------------------------
# in the loader's workers: bytes, boxes and drawn parameters


class EncodedImage(NamedTuple):
    """One image as the workers hand it over: its bytes for the device decoder, or its pixels
    where the CPU decoded it (a file that decoder does not take)."""

    data: Optional[bytes]  # the encoded file (None when ``pixels`` is given)
    pixels: Optional[Tensor]  # (3, h, w) uint8 upright RGB decoded on the CPU
    orientation: int  # EXIF orientation still to apply to the device-decoded pixels (1: none)
    image_hw: tuple[int, int]  # the upright image's (height, width)


def encode_image(data: bytes) -> EncodedImage:
    """Route a file: bytes for the device decoder if it takes them, else decoded on the CPU.
    Raises ImageFileError for a file that is not an image."""
    try:
        probe = device_decodable(data)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... on bad headers
        raise ImageFileError(f"not decodable ({err})") from None
    image_hw = (probe.height, probe.width)
    if probe.on_device:
        return EncodedImage(data, None, probe.orientation, image_hw)
    return EncodedImage(None, decode(data).image.clone(), 1, image_hw)


class EncodedSample(NamedTuple):
    """A ``Sample`` before its pixels exist."""

    index: int  # in the dataset
    image: EncodedImage
    augmentation: Augmentation
    boxes_xyxy: Tensor  # (G, 4) float32, normalized to [0, 1] of the output image
    labels: Tensor  # (G,) int64
    image_id: int
    image_hw: Tensor  # (2,) int64: the original (height, width)


class EncodedItems(Dataset):
    """``DetectionDataset`` items for the device backend: the file's bytes, its boxes and its
    drawn augmentation (training: the seed's, from the generator seeded with (seed, epoch, i),
    as the workers backend draws it; evaluation: the whole image). Unreadable files follow the
    dataset's ``skip_unreadable``."""

    def __init__(self, dataset: "DetectionDataset"):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Union[int, SampleKey]) -> Union[EncodedSample, SkippedImage]:
        ds = self.dataset
        i, epoch, seed = key if isinstance(key, tuple) else (key, ds.epoch, ds.seed)
        if not -len(ds) <= i < len(ds):
            raise IndexError(f"index {i} out of range for a dataset of {len(ds)} images")
        i = int(i) % len(ds)
        boxes_xyxy, labels = ds.index.boxes_of(i)
        image_hw = (int(ds.index.heights[i]), int(ds.index.widths[i]))
        if ds.train:
            drawn = draw_augmentation(boxes_xyxy, labels, image_hw=image_hw, size_hw=ds.size_hw,
                                      rng=np.random.default_rng((seed, epoch, i)), resize_mode=ds.resize_mode)
        else:
            drawn = eval_augmentation(boxes_xyxy, labels, image_hw=image_hw, size_hw=ds.size_hw,
                                      resize_mode=ds.resize_mode)
        try:  # the dataset's rule: a file that cannot be read or decoded is skipped, anything else stops
            data = ds.images.read(i)
        except (OSError, ValueError, ImageFileError) as err:
            return ds.unreadable(i, err)
        try:
            image = encode_image(data)
        except ImageFileError as err:
            return ds.unreadable(i, err)
        return EncodedSample(i, image, drawn.augmentation, torch.from_numpy(drawn.boxes_xyxy_norm),
                             torch.from_numpy(drawn.labels), int(ds.index.image_ids[i]),
                             torch.tensor(image_hw, dtype=torch.int64))


class EncodedImages(NamedTuple):
    """A batch's images before decoding, with their drawn augmentations. The files and the
    CPU-decoded pixels are one flat tensor each: one shared-memory block per batch from a
    loader worker (one file descriptor, not one per image)."""

    data: Tensor  # (B,) uint8: the files for the device decoder, back to back in batch order
    data_ends: Tensor  # (F,) int64 end offset of each file in ``data``
    pixels: Tensor  # (P,) uint8: the (3, h, w) images decoded on the CPU, back to back
    pixel_shapes: Tensor  # (D, 3) int64 their shapes
    on_device: Tensor  # (N,) bool: image k is the next file (True) or the next decoded image
    orientation: Tensor  # (N,) int64 EXIF orientation to apply after decoding
    crops: Tensor  # (N, 4) float32 x0, y0, x1, y1 in the upright image's pixels
    flips: Tensor  # (N,) bool
    jitter_order: Tensor  # (N, 3) int64
    jitter_factors: Tensor  # (N, 3) float32

    @classmethod
    def stack(cls, images: Sequence[EncodedImage], augmentations: Sequence[Augmentation]) -> "EncodedImages":
        files = [np.frombuffer(im.data, dtype=np.uint8) for im in images if im.data is not None]
        decoded = [im.pixels for im in images if im.data is None]
        return cls(
            data=torch.from_numpy(np.concatenate(files)) if files else torch.zeros(0, dtype=torch.uint8),
            data_ends=torch.tensor(np.cumsum([len(f) for f in files], dtype=np.int64)),
            pixels=torch.cat([p.reshape(-1) for p in decoded]) if decoded else torch.zeros(0, dtype=torch.uint8),
            pixel_shapes=torch.tensor([tuple(p.shape) for p in decoded], dtype=torch.int64).reshape(-1, 3),
            on_device=torch.tensor([im.data is not None for im in images], dtype=torch.bool),
            orientation=torch.tensor([im.orientation for im in images], dtype=torch.int64),
            crops=torch.tensor([tuple(a.crop) for a in augmentations], dtype=torch.float32).reshape(-1, 4),
            flips=torch.tensor([a.flip for a in augmentations], dtype=torch.bool),
            jitter_order=torch.tensor([a.jitter_order for a in augmentations], dtype=torch.int64).reshape(-1, 3),
            jitter_factors=torch.tensor([a.jitter_factors for a in augmentations],
                                        dtype=torch.float32).reshape(-1, 3),
        )

    @classmethod
    def whole(cls, images: Sequence[EncodedImage]) -> "EncodedImages":
        """Images to resize whole, nothing random (evaluation, predict)."""
        return cls.stack(images, [Augmentation(CropRect(0, 0, im.image_hw[1], im.image_hw[0]), 1, False, *NO_JITTER)
                                  for im in images])

    def files(self) -> list[Tensor]:
        """The encoded files, (B_k,) uint8 views of ``data``."""
        starts = [0, *self.data_ends.tolist()]
        return [self.data[a:b] for a, b in zip(starts[:-1], starts[1:])]

    def cpu_decoded(self) -> list[Tensor]:
        """The images decoded on the CPU, (3, h, w) uint8 views of ``pixels``."""
        out, start = [], 0
        for shape in self.pixel_shapes.tolist():
            size = shape[0] * shape[1] * shape[2]
            out.append(self.pixels[start:start + size].view(*shape))
            start += size
        return out

    def select(self, keep: Sequence[int]) -> "EncodedImages":
        """The images at positions ``keep``, in that order."""
        files, decoded = iter(self.files()), iter(self.cpu_decoded())
        items = [EncodedImage(bytes(next(files).numpy()), None, 0, (0, 0)) if flag
                 else EncodedImage(None, next(decoded), 0, (0, 0)) for flag in self.on_device.tolist()]
        index = torch.as_tensor(list(keep), dtype=torch.int64)
        chosen = EncodedImages.stack([items[k] for k in keep], [])
        return chosen._replace(orientation=self.orientation[index], crops=self.crops[index], flips=self.flips[index],
                               jitter_order=self.jitter_order[index], jitter_factors=self.jitter_factors[index])


class EncodedBatch(NamedTuple):
    """What a device-backend loader yields; ``batch_to_device`` makes it a ``Batch``."""

    images: EncodedImages
    indices: Tensor  # (N,) int64 dataset indices
    boxes_xyxy: Tensor  # (N, Gmax, 4) float32, normalized; zeros in padding rows
    labels: Tensor  # (N, Gmax) int64; 0 in padding rows
    image_ids: Tensor  # (N,) int64
    image_hw: Tensor  # (N, 2) int64
    skipped: Tensor = _NONE_SKIPPED  # (S,) int64 dataset indices of images left out
    skipped_names: tuple = ()  # their file names, for a clear error in evaluation


def collate_encoded(samples: Sequence[Union[EncodedSample, SkippedImage]]) -> EncodedBatch:
    """``dataset.collate`` for the device backend: boxes padded alike, images left encoded."""
    samples, skipped, boxes, labels = pad_boxes(samples)
    return EncodedBatch(
        images=EncodedImages.stack([s.image for s in samples], [s.augmentation for s in samples]),
        indices=torch.tensor([s.index for s in samples], dtype=torch.int64),
        boxes_xyxy=boxes, labels=labels,
        image_ids=torch.tensor([s.image_id for s in samples], dtype=torch.int64),
        image_hw=torch.stack([s.image_hw for s in samples]),
        skipped=torch.tensor([s.index for s in skipped], dtype=torch.int64) if skipped else _NONE_SKIPPED,
        skipped_names=tuple(s.file_name for s in skipped),
    )


# ------------------------------------------------------------------------------------------
# on the device


def decode_images(images: EncodedImages, device: torch.device) -> tuple[list[Optional[Tensor]], list[str]]:
    """Every image of the batch as (3, h, w) uint8 upright RGB on ``device`` (None where a file
    does not decode), and the reasons of those that failed. The device decodes the files in
    one call; if that call fails, file by file, and a file it refuses goes to the CPU decode."""
    decoded: list[Optional[Tensor]] = []
    reasons: list[str] = []
    files = images.files()
    try:
        from_device = decode_on_device(files, device)
    except RuntimeError:
        from_device = [_decode_one(data, device, reasons) for data in files]
    on_cpu = iter(images.cpu_decoded())
    from_device = iter(from_device)
    for flag, orientation in zip(images.on_device.tolist(), images.orientation.tolist()):
        if flag:
            pixels = next(from_device)
            decoded.append(None if pixels is None else orient(pixels, orientation))
        else:
            decoded.append(next(on_cpu).to(device, non_blocking=True))
    return decoded, reasons


def _decode_one(data: Tensor, device: torch.device, reasons: list[str]) -> Optional[Tensor]:
    try:
        return decode_on_device([data], device)[0]
    except RuntimeError:
        pass
    try:  # libjpeg-turbo through PIL decodes some files nvJPEG refuses
        return decode(data.numpy().tobytes()).image.to(device)
    except ImageFileError as err:
        reasons.append(err.reason)
        return None


def centred_canvas(images: Sequence[Tensor], mean_255: Tensor) -> Tensor:
    """(N, 3, Hmax, Wmax) float32 ``pixels - mean``: each image at the top left, zeros (the
    mean colour) beyond it, its last row and column repeated once beside it."""
    heights = [im.shape[1] for im in images]
    widths = [im.shape[2] for im in images]
    if len(set(heights)) == 1 and len(set(widths)) == 1:
        return torch.stack(list(images)).float().sub_(mean_255)
    device = images[0].device
    canvas = torch.zeros(len(images), 3, max(heights) + 1, max(widths) + 1, device=device)
    for k, image in enumerate(images):
        h, w = image.shape[1:]
        canvas[k, :, :h, :w] = image
        canvas[k, :, :h, w] = image[:, :, -1]
        canvas[k, :, h, :w + 1] = canvas[k, :, h - 1, :w + 1]
        canvas[k, :, :h + 1, :w + 1] -= mean_255[0]
    return canvas


def crop_and_resize(canvas: Tensor, crops_xyxy: Tensor, size_hw: tuple[int, int], resize_mode: str) -> Tensor:
    """(N, C, H, W) canvas, (N, 4) pixel rectangles -> (N, C, h, w): each rectangle of its image
    resized to ``size_hw`` in one ``roi_align`` call (pixel centres at half-integers, zeros
    outside the canvas). ``antialias``: each output pixel averages ceil(rectangle / output)
    bilinear samples per axis over its area; ``bilinear``: one sample at its centre
    (F.interpolate's align_corners=False)."""
    from torchvision.ops import roi_align

    if resize_mode not in ("antialias", "bilinear"):
        raise ValueError(f"data_backend device resizes with image_resize antialias or bilinear, not {resize_mode!r}")
    index = torch.arange(len(crops_xyxy), dtype=canvas.dtype, device=canvas.device)[:, None]
    rois = torch.cat([index, crops_xyxy.to(canvas.device, canvas.dtype)], dim=1)
    return roi_align(canvas, rois, output_size=tuple(size_hw), spatial_scale=1.0,
                     sampling_ratio=-1 if resize_mode == "antialias" else 1, aligned=True)


def color_jitter_batch_(images: Tensor, order: Tensor, factors: Tensor) -> Tensor:
    """``transforms.color_jitter_`` for a batch, in place on (N, 3, H, W) float in [0, 255]:
    step s applies to image n the colour step ``order[n, s]`` with factor f = ``factors[n, s]``,
    then clamps. Each step is one blend ``x * a + c`` for the whole batch: brightness a = f,
    c = 0; contrast a = f, c = (1 - f) * mean grey; saturation a = f, c = (1 - f) * grey image
    (the CPU's lerps, written as one multiply-add)."""
    luma = images.new_tensor(LUMA_RGB)
    shape = (-1, 1, 1, 1)
    for step in range(order.shape[1]):
        kind, factor = order[:, step], factors[:, step].to(images.dtype)
        grey = torch.einsum("c,nchw->nhw", luma, images)[:, None]  # (N, 1, H, W)
        towards_mean = torch.where(kind == 1, 1.0 - factor, 0.0).view(shape)
        towards_grey = torch.where(kind == 2, 1.0 - factor, 0.0).view(shape)
        offset = towards_grey * grey + towards_mean * grey.mean(dim=(2, 3), keepdim=True)
        images.mul_(factor.view(shape)).add_(offset).clamp_(0.0, 255.0)
    return images


def augment_on_device(decoded: Sequence[Tensor], images: EncodedImages, *, size_hw: tuple[int, int],
                      mean: Sequence[float], std: Sequence[float], resize_mode: str = "antialias") -> Tensor:
    """Decoded (3, h, w) uint8 images on one device and their drawn augmentations -> (N, 3, H, W)
    float32 normalized: crop and resize, flip, colour jitter, normalize (the CPU executor's
    order and formulas)."""
    device = decoded[0].device
    mean_255 = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    std_255 = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    canvas = centred_canvas(decoded, mean_255)
    out = crop_and_resize(canvas, images.crops.to(device, non_blocking=True), size_hw, resize_mode)
    del canvas
    if bool(images.flips.any()):
        flips = images.flips.to(device, non_blocking=True).view(-1, 1, 1, 1)
        out = torch.where(flips, out.flip(-1), out)
    if bool((images.jitter_factors != 1.0).any()):
        out.add_(mean_255)  # the CPU's [0, 255] pixels: colour steps clamp there
        color_jitter_batch_(out, images.jitter_order.to(device, non_blocking=True),
                            images.jitter_factors.to(device, non_blocking=True))
        out.sub_(mean_255)
    return out.div_(std_255)


def batch_to_device(batch: Union[Batch, EncodedBatch], device: torch.device, cfg: "Config", *,
                    strict: bool = False) -> Batch:
    """A loader's batch (either backend) -> a ``Batch`` whose images, boxes and labels are on
    ``device`` (ids, sizes and the skipped list stay on the host). An encoded batch is decoded
    and augmented there; a file that turns out not to decode is left out and listed in
    ``skipped`` as the workers backend does, or raises with ``strict`` (evaluation)."""
    if isinstance(batch, Batch):
        return batch._replace(images=batch.images.to(device, non_blocking=True),
                              boxes_xyxy=batch.boxes_xyxy.to(device, non_blocking=True),
                              labels=batch.labels.to(device, non_blocking=True))
    if strict and len(batch.skipped):
        raise RuntimeError(f"images cannot be decoded: {', '.join(batch.skipped_names)}")
    decoded, reasons = decode_images(batch.images, device)
    keep = [k for k, image in enumerate(decoded) if image is not None]
    encoded, skipped = batch.images, batch.skipped
    if len(keep) < len(decoded):
        failed = [int(batch.image_ids[k]) for k, image in enumerate(decoded) if image is None]
        if strict or not keep:
            raise RuntimeError(f"images {failed} cannot be decoded: {'; '.join(reasons)}")
        log.warning("images %s cannot be decoded (%s): skipped", failed, "; ".join(reasons))
        skipped = torch.cat([skipped, batch.indices[[k for k in range(len(decoded)) if decoded[k] is None]]])
        encoded, decoded = encoded.select(keep), [decoded[k] for k in keep]
        batch = batch._replace(boxes_xyxy=batch.boxes_xyxy[keep], labels=batch.labels[keep],
                               image_ids=batch.image_ids[keep], image_hw=batch.image_hw[keep])
    images = augment_on_device(decoded, encoded, size_hw=tuple(cfg.image_size), mean=cfg.mean, std=cfg.std,
                               resize_mode=cfg.image_resize)
    return Batch(images=images, boxes_xyxy=batch.boxes_xyxy.to(device, non_blocking=True),
                 labels=batch.labels.to(device, non_blocking=True), image_ids=batch.image_ids,
                 image_hw=batch.image_hw, skipped=skipped)
