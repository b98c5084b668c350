"""``detections.jsonl``: predict's results streamed to disk, one JSON line per input, so that a
run stopped at any point keeps what it had done and ``--resume`` continues from there.

Line kinds (every line has ``file_name``, the input's name under the output folder, and
``source``, the input path as given):

    image   {"file_name", "source", "image_id", "height", "width",
             "detections": [{"category_id", "bbox": [x, y, w, h] pixels, "score"}, ...]}
    video   {"file_name", "source", "video": {"frames", "predicted_frames", "bad_packets",
             "fps", "every", "detections_file"}}   (written once the video is complete)
    error   {"file_name", "source", "error": reason}   (an input that could not be read)

Lines are appended and flushed after each batch. A line is written only after the files it
names are complete, so a line means done. A run killed mid-line leaves a partial last line:
resuming drops it (and the error lines: unreadable inputs are tried again) and rewrites the
file atomically before appending. ``predict_run.json`` beside it holds the settings the
results depend on; resuming with other settings is refused. Resuming into a folder with no
earlier run starts a new one (one command for a job's first start and its requeues).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO, Iterable, Optional

from .atomic import atomic_path, write_json

log = logging.getLogger(__name__)

JSONL_NAME = "detections.jsonl"
RUN_NAME = "predict_run.json"


class ResultStream:
    """The output folder's detections.jsonl, open for appending; ``done`` holds the lines of
    inputs finished by an earlier run (with ``resume``), by file_name."""

    def __init__(self, out_dir: str | Path, settings: dict, *, resume: bool):
        self.path = Path(out_dir) / JSONL_NAME
        run_path = Path(out_dir) / RUN_NAME
        settings = json.loads(json.dumps(settings))  # as read back: lists, not tuples
        self.done: dict[str, dict] = {}
        if resume and not run_path.exists() and not read_lines(self.path):
            log.info("--resume: no earlier predict run in %s: starting a new one", Path(out_dir))
        elif resume:
            _check_settings(run_path, settings)
            self.done = {line["file_name"]: line for line in read_lines(self.path) if "error" not in line}
        elif self.path.exists():
            log.info("%s: replacing the results of an earlier run (--resume continues one instead)", self.path)
        with atomic_path(self.path, durable=False) as tmp:  # what is kept, whole, before appending
            tmp.write_text("".join(json.dumps(line) + "\n" for line in self.done.values()), encoding="utf-8")
        write_json(run_path, settings, indent=1, durable=False)
        self._file: Optional[IO[str]] = open(self.path, "a", encoding="utf-8")

    def append(self, lines: Iterable[dict]) -> None:
        """Write ``lines`` and flush them to the operating system."""
        assert self._file is not None, "the stream is closed"
        self._file.write("".join(json.dumps(line) + "\n" for line in lines))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ResultStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_lines(path: str | Path) -> list[dict]:
    """The complete lines of a detections.jsonl (none if it doesn't exist). A partial last line
    (a run killed mid-write) is dropped; a bad line elsewhere is an error naming it."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    partial = lines.pop()  # after the last newline: empty, or a line cut short
    if partial:
        log.warning("%s: dropping a partial last line (an interrupted run)", path)
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: not a JSON line ({err})") from err
        if not isinstance(record, dict) or "file_name" not in record:
            raise ValueError(f"{path}, line {number}: not an ssdzoo predict record")
        records.append(record)
    return records


def _check_settings(run_path: Path, settings: dict) -> None:
    """Refuse to resume a run made with other settings (different results would mix)."""
    if not run_path.exists():
        raise ValueError(f"--resume: {run_path} not found beside the results in {run_path.parent / JSONL_NAME}: "
                         "cannot tell what settings made them (run without --resume to start over)")
    try:
        before = json.loads(run_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"--resume: {run_path}: not readable JSON ({err})") from err
    for key, value in settings.items():
        if before.get(key) != value:
            raise ValueError(f"--resume: the results in {run_path.parent} were made with {key} "
                             f"{before.get(key)!r}, this run has {value!r} (run without --resume to start over)")
