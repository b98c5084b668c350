"""predict on video (PyAV): a clip the test writes (moving shapes), per-frame JSON Lines, an
annotated video PyAV reads back, --every K, a corrupt clip and a file that isn't a video."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ssdzoo.inference import Predictor
from ssdzoo.predict import run_predict

av = pytest.importorskip("av")

FRAMES, FPS, HW = 24, 12, (72, 96)


def write_clip(path, *, frames: int = FRAMES, codec: str = "mpeg4") -> list[np.ndarray]:
    """A clip of a circle and a square crossing a gradient; returns the frames as PyAV decodes them."""
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
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")):
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


def test_bad_videos_are_reported_and_skipped(predictor, clip, tmp_path):
    path, _ = clip
    data = bytearray(path.read_bytes())
    corrupt = tmp_path / "in" / "corrupt.mp4"
    corrupt.parent.mkdir()
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)  # a stretch of frames' data zeroed
    corrupt.write_bytes(bytes(data))
    (tmp_path / "in" / "fake.mp4").write_text("not a video at all")
    out = tmp_path / "out"
    summary = run_predict(predictor, [tmp_path / "in"], out, batch_size=4)

    assert [(p.name, "not a readable video" in reason) for p, reason in summary.skipped] == [("fake.mp4", True)]
    lines = {json.loads(s)["file_name"]: json.loads(s) for s in (out / "detections.jsonl").read_text().splitlines()}
    assert "error" in lines["fake.mp4"]
    video = lines["corrupt.mp4"]["video"]
    frames = [json.loads(s) for s in (out / "corrupt.jsonl").read_text().splitlines()]
    assert video["bad_packets"] > 0 and 0 < len(frames) == video["predicted_frames"] == video["frames"] < FRAMES
    numbers = [f["frame"] for f in frames]  # the source's frame numbers: a gap where packets were lost
    assert numbers == sorted(numbers) and numbers[-1] == FRAMES - 1 and len(numbers) < numbers[-1] + 1
    with av.open(str(out / "corrupt.mp4")) as annotated:
        assert sum(1 for _ in annotated.decode(video=0)) == len(frames)
