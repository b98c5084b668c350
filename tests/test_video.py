"""predict on video (PyAV): a clip the test writes (moving shapes), per-frame JSON Lines, an
annotated video PyAV reads back, --every K, a clip that starts after 0, a corrupt clip, one that
doesn't decode at all and a file that isn't a video, and an error mid-video."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageDraw

import ssdzoo.video
from ssdzoo.inference import Predictor
from ssdzoo.predict import run_predict
from ssdzoo.video import predict_video

av = pytest.importorskip("av")

FRAMES, FPS, HW = 24, 12, (72, 96)


def write_clip(path, *, frames: int = FRAMES, codec: str = "mpeg4", start: int = 0) -> list[np.ndarray]:
    """A clip of a circle and a square crossing a gradient, its first frame at ``start`` / FPS
    seconds; returns the frames as PyAV decodes them."""
    container = av.open(str(path), mode="w")
    stream = container.add_stream(codec, rate=FPS)
    stream.height, stream.width = HW
    stream.pix_fmt = "yuv420p"
    ys, xs = np.mgrid[0:HW[0], 0:HW[1]]
    background = np.stack([xs * 255 // HW[1], ys * 255 // HW[0], np.full_like(xs, 90)], -1).astype(np.uint8)
    for t in range(frames):
        picture = Image.fromarray(background)
        draw = ImageDraw.Draw(picture)
        draw.ellipse((2 + 2 * t, 10, 30 + 2 * t, 38), fill=(250, 40, 40))
        draw.rectangle((60 - t, 40, 84 - t, 64), fill=(30, 30, 240))
        frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
        frame.pts = start + t
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    with av.open(str(path)) as reading:
        return [f.to_ndarray(format="rgb24") for f in reading.decode(video=0)]


@pytest.fixture(scope="module")
def predictor(cfg, model):
    return Predictor(cfg.replace(max_boxes=20), model)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return folder / "street.mp4", write_clip(folder / "street.mp4")


@pytest.mark.parametrize("every", [1, 5])
def test_video_frames_detections_and_annotated_video(predictor, clip, tmp_path, every):
    path, decoded = clip
    summary = run_predict(predictor, [path], tmp_path, every=every, batch_size=4)
    assert summary.videos == 1 and summary.images == 0

    (line,) = [json.loads(s) for s in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert line["file_name"] == "street.mp4"
    assert line["video"]["frames"] == FRAMES and line["video"]["bad_packets"] == 0
    assert line["video"]["predicted_frames"] == len(range(0, FRAMES, every))

    frames = [json.loads(s) for s in (tmp_path / "street.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in frames] == list(range(0, FRAMES, every))
    assert [f["time"] for f in frames] == pytest.approx([i / FPS for i in range(0, FRAMES, every)], abs=1e-3)
    # each frame's detections are the predictor's on that decoded frame
    expected = predictor.predict([decoded[i] for i in range(0, FRAMES, every)])
    assert sum(len(d.scores) for d in expected) > 0
    for frame, want in zip(frames, expected):
        assert [d["category_id"] for d in frame["detections"]] == want.labels.tolist()
        assert [d["score"] for d in frame["detections"]] == pytest.approx(want.scores.tolist(), abs=1e-5)

    with av.open(str(tmp_path / "street.mp4")) as annotated:
        stream = annotated.streams.video[0]
        assert stream.average_rate == Fraction(FPS, every)
        out_frames = [f.to_ndarray(format="rgb24") for f in annotated.decode(stream)]
    assert len(out_frames) == len(frames) and out_frames[0].shape == (*HW, 3)


def test_video_that_starts_after_0_is_numbered_from_0(predictor, tmp_path):
    path = tmp_path / "late.mp4"
    write_clip(path, frames=12, start=30)  # its first frame at 2.5 s
    run_predict(predictor, [path], tmp_path / "out", every=5)
    frames = [json.loads(s) for s in (tmp_path / "out" / "late.jsonl").read_text().splitlines()]
    assert [f["frame"] for f in frames] == [0, 5, 10]
    assert [f["time"] for f in frames] == pytest.approx([0, 5 / FPS, 10 / FPS], abs=1e-3)


def test_bad_videos_are_reported_and_skipped(predictor, clip, tmp_path):
    path, _ = clip
    data = bytearray(path.read_bytes())
    corrupt = tmp_path / "in" / "corrupt.mp4"
    corrupt.parent.mkdir()
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)  # a stretch of frames' data zeroed
    corrupt.write_bytes(bytes(data))
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    data[mdat + 4:moov - 4] = bytes(moov - mdat - 8)  # every frame's data zeroed
    (tmp_path / "in" / "blank.mp4").write_bytes(bytes(data))
    (tmp_path / "in" / "fake.mp4").write_text("not a video at all")
    out = tmp_path / "out"
    summary = run_predict(predictor, [tmp_path / "in"], out, batch_size=4)

    reasons = {p.name: reason for p, reason in summary.skipped}
    assert sorted(reasons) == ["blank.mp4", "fake.mp4"]
    assert "no frame could be decoded" in reasons["blank.mp4"] and "not a readable video" in reasons["fake.mp4"]
    lines = {json.loads(s)["file_name"]: json.loads(s) for s in (out / "detections.jsonl").read_text().splitlines()}
    assert "error" in lines["fake.mp4"] and "error" in lines["blank.mp4"]
    assert not list(out.glob("blank.*")) and not list(out.glob(".*.tmp"))  # no output, no temporary left
    video = lines["corrupt.mp4"]["video"]
    frames = [json.loads(s) for s in (out / "corrupt.jsonl").read_text().splitlines()]
    assert video["bad_packets"] > 0 and 0 < len(frames) == video["predicted_frames"] == video["frames"] < FRAMES
    numbers = [f["frame"] for f in frames]  # the source's frame numbers: a gap where packets were lost
    assert numbers == sorted(numbers) and numbers[-1] == FRAMES - 1 and len(numbers) < numbers[-1] + 1
    with av.open(str(out / "corrupt.mp4")) as annotated:
        assert sum(1 for _ in annotated.decode(video=0)) == len(frames)


def test_error_mid_video_leaves_no_file_and_no_open_descriptor(predictor, clip, tmp_path, monkeypatch):
    path, _ = clip
    real, calls = ssdzoo.video._predict_frames, []

    def fail_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:  # after the first batch went into both outputs
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(ssdzoo.video, "_predict_frames", fail_second_batch)
    monkeypatch.setattr(ssdzoo.video, "_ENCODERS", ("mpeg4",))  # packets from the first frame (x264 looks ahead)
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    with pytest.raises(RuntimeError, match="boom"):
        predict_video(predictor, path, out_dir=tmp_path, name="street.mp4", batch_size=4)
    assert list(tmp_path.iterdir()) == []  # neither output, nor their temporaries
    if fds is not None:
        assert set(os.listdir("/proc/self/fd")) <= fds
