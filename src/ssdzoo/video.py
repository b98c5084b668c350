"""Predict on a video file with PyAV (FFmpeg's libraries): detections per frame as JSON Lines,
and the video with its boxes drawn.

    NAME.jsonl   one line per predicted frame: {"frame": index from 0, "time": seconds from the
                 start of the stream,
                 "detections": [{"category_id", "bbox": [x, y, w, h] pixels, "score"}, ...]}
    NAME.mp4     the predicted frames with their boxes (H.264, or MPEG-4 Part 2 where the FFmpeg
                 build lacks it) at the source's frame rate / ``every``, so it lasts as long

Frames are decoded in order (FFmpeg's own decoding threads), ``every``-th frame from frame 0
predicted in batches (only those converted to RGB). A packet that doesn't decode is reported and
skipped; a file that doesn't open as a video is a ``VideoReadError``. Both outputs are written
under temporary names and renamed when the video is done (the JSON Lines streamed to the
temporary file as frames come); a video that fails or is skipped part way leaves neither.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack, suppress
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .engine.evaluate import coco_results
from .inference import preprocess
from .visualize import DEFAULT_DRAW_SCORE, draw_detections

if TYPE_CHECKING:
    import av

    from .inference import Predictor

log = logging.getLogger(__name__)

_FALLBACK_FPS = Fraction(25)
_ENCODERS = ("libx264", "mpeg4")


class VideoReadError(ValueError):
    """A file that doesn't open as a video with a video stream."""


def frames_name(video_name: str) -> str:
    """The JSON Lines file of a video's output name: clips/a.mp4 -> clips/a.jsonl."""
    return str(PurePosixPath(video_name).with_suffix(".jsonl"))


def predict_video(predictor: "Predictor", path: str | Path, *, out_dir: str | Path, name: str, every: int = 1,
                  batch_size: int = 8, draw: bool = True, draw_score: float = DEFAULT_DRAW_SCORE,
                  category_ids: Optional[Sequence[int]] = None, progress: Optional[bool] = None) -> dict:
    """Predict on ``path``; write ``out_dir/frames_name(name)`` and (``draw``) ``out_dir/name``.
    Returns predict's line for the video (``predict_stream``)."""
    import av

    path, out_dir = Path(path), Path(out_dir)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoReadError(f"{path}: not a readable video ({err})") from err
    with ExitStack() as stack:
        stack.callback(container.close)
        if not container.streams.video:
            raise VideoReadError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg decodes with its own threads
        fps = stream.average_rate or stream.guessed_rate or _FALLBACK_FPS
        jsonl_path = out_dir / frames_name(name)
        jsonl_tmp = stack.enter_context(atomic_path(jsonl_path, durable=False))
        jsonl = stack.enter_context(open(jsonl_tmp, "w", encoding="utf-8"))
        writer = None
        if draw:
            video_tmp = stack.enter_context(atomic_path(out_dir / name, durable=False))
            writer = _Writer(video_tmp, Fraction(fps) / every)
            stack.callback(writer.abort)  # runs before the temporary is removed
        frames = _Frames(container, stream, path, fps)
        total = stream.frames or None
        bar = tqdm(total=total, unit="frame", desc=PurePosixPath(name).name, leave=False,
                   disable=None if progress is None else not progress)
        stack.callback(bar.close)
        predicted = 0
        batch: list[tuple[int, float, np.ndarray]] = []
        for index, time, frame in frames:
            bar.update(1)
            if index % every:
                continue
            batch.append((index, time, frame.to_ndarray(format="rgb24")))
            if len(batch) == batch_size:
                predicted += _predict_frames(predictor, batch, jsonl, writer, draw_score, category_ids)
                batch = []
        if batch:
            predicted += _predict_frames(predictor, batch, jsonl, writer, draw_score, category_ids)
        if frames.count == 0:
            raise VideoReadError(f"{path}: no frame could be decoded")
        if predicted == 0:  # before the writer flushes an encoder that never got a frame
            raise VideoReadError(f"{path}: no frame to predict among the {frames.count} decoded "
                                 f"(every {every}th from frame 0)")
        if writer is not None:
            writer.close()
        jsonl.close()
    log.info("%s: %d frames, %d predicted, %d bad packets -> %s", path, frames.count, predicted,
             frames.bad_packets, out_dir / (name if draw else frames_name(name)))
    return {"file_name": name, "source": str(path),
            "video": {"frames": frames.count, "predicted_frames": predicted, "bad_packets": frames.bad_packets,
                      "fps": round(float(fps), 3), "every": every, "detections_file": frames_name(name)}}


class _Frames:
    """(frame number, seconds from the stream's start, ``av.VideoFrame``) of every decodable
    frame, in order; counts the frames decoded and the packets that did not decode."""

    def __init__(self, container, stream, path: Path, fps: Fraction):
        self.container, self.stream, self.path, self.fps = container, stream, path, float(fps)
        self.count = self.bad_packets = 0

    def __iter__(self) -> Iterator[tuple[int, float, "av.VideoFrame"]]:
        import av

        # times from the stream's start (the first frame's, where the container gives none)
        fps, start = self.fps, None
        if self.stream.start_time is not None:
            start = float(self.stream.start_time * self.stream.time_base)
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as err:  # the container itself is damaged from here on
                log.warning("%s: stopped reading after frame %d (%s)", self.path, self.count, err)
                return
            try:
                decoded = packet.decode()  # an empty packet at the end flushes the decoder
            except av.error.FFmpegError as err:
                self.bad_packets += 1
                log.warning("%s: skipping a packet that does not decode, after frame %d (%s)",
                            self.path, self.count, err)
                continue
            for frame in decoded:
                # the source's frame number from the timestamp, so that frames after a bad
                # packet keep their own numbers; a stream without timestamps counts frames
                if frame.time is not None:
                    if start is None:
                        start = float(frame.time)
                    time = float(frame.time) - start
                    index = round(time * fps)
                else:
                    time, index = self.count / fps, self.count
                yield index, time, frame
                self.count += 1


class _Writer:
    """An MP4 file of RGB frames (the first frame fixes the size; odd sizes padded to even,
    which 4:2:0 chroma needs)."""

    def __init__(self, path: Path, rate: Fraction):
        import av

        self.container = av.open(str(path), mode="w", format="mp4")
        codec = next(c for c in _ENCODERS if c in av.codecs_available)
        self.stream = self.container.add_stream(codec, rate=rate.limit_denominator(1000))
        self.stream.pix_fmt = "yuv420p"
        self.size: Optional[tuple[int, int]] = None

    def write(self, image: np.ndarray) -> None:
        import av

        if self.size is None:
            self.size = (image.shape[0] + image.shape[0] % 2, image.shape[1] + image.shape[1] % 2)
            self.stream.height, self.stream.width = self.size
        if image.shape[:2] != self.size:
            pad = ((0, self.size[0] - image.shape[0]), (0, self.size[1] - image.shape[1]), (0, 0))
            image = np.pad(image, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():  # flush the encoder
            self.container.mux(packet)
        self.container.close()

    def abort(self) -> None:
        """Close the file without flushing the encoder, when the video failed (its temporary is
        removed after); nothing after ``close``, as PyAV closes a container once."""
        import av

        with suppress(av.error.FFmpegError, OSError):  # never mask the error that got here
            self.container.close()


def _predict_frames(predictor: "Predictor", batch, jsonl, writer: Optional[_Writer], draw_score: float,
                    category_ids) -> int:
    images = [image for _, _, image in batch]
    tensors, image_hw = preprocess(images, predictor.cfg)
    detections = predictor.predict_batch(tensors, image_hw)
    lines = []
    for (index, time, image), dets in zip(batch, detections):
        rows = coco_results([dets], [index], category_ids)
        lines.append({"frame": index, "time": round(time, 4),
                      "detections": [{k: r[k] for k in ("category_id", "bbox", "score")} for r in rows]})
        if writer is not None:
            writer.write(np.asarray(draw_detections(image, dets, predictor.cfg.classes, min_score=draw_score)))
    jsonl.write("".join(json.dumps(line) + "\n" for line in lines))
    jsonl.flush()
    return len(batch)
