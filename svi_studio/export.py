"""Export: the selected takes, stitched, written with moviepy as an H.264 mp4.

Frames are streamed (`film_frames`: one frame of at most two takes decoded at a
time), so memory does not grow with the clips' or the film's length. Cuts follow the
timeline's segments (timeline.py, the same the preview and the status use) — so with no crossfade the file's frame count is exactly
the stitching rule's. A crossfade of d seconds overlaps the last n = round(d·fps)
kept frames before a cut with the first n after it (the film gets n frames shorter
per cut; the timeline says so). A sidecar JSON timeline lists each shot's start/end
seconds and take id.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .fsutil import atomic_write_json, fsync_dir, remove_stale_temps
from .project.model import ProjectError
from .timeline import FilmSegment, plan_cuts  # noqa: F401 - plan_cuts is re-exported
from .video_io import probe_clip

QUALITY = {"final": "16", "preview": "23"}
MAX_CROSSFADE_S = 2.0


class ExportError(ProjectError):
    """The film cannot be exported as asked; the message says what to change."""


def timeline_path(out_path: Path) -> Path:
    return out_path.with_suffix(".timeline.json")


@dataclass
class ExportOptions:
    """audio: a soundtrack file (cut or padded with silence to the film). crossfade: seconds
    overlapped at each cut. scale: output size factor. quality: "final" or "preview".
    write_timeline: also write <film>.timeline.json."""

    audio: str | Path | None = None
    crossfade: float = 0.0
    scale: float = 1.0
    quality: str = "final"
    write_timeline: bool = True


SegmentFrames = Callable[[FilmSegment], Iterator[np.ndarray]]


def export_film(segments: Sequence[FilmSegment], frames_of: SegmentFrames, out_path: Path,
                options: ExportOptions | None = None) -> dict[str, Any]:
    """Write the film cut from `segments` to `out_path` (atomic) and its timeline beside it; return the timeline.

    frames_of(segment): a stream of the segment's kept frames [start, end), uint8 (H, W, 3) each,
    one at a time (the caller checks each clip against its take first; see Director.export)."""
    from moviepy import AudioClip, AudioFileClip, VideoClip, concatenate_audioclips

    options = options or ExportOptions()
    audio, crossfade, scale = options.audio, options.crossfade, options.scale
    quality, write_timeline = options.quality, options.write_timeline
    if not segments:
        raise ExportError("nothing to export: no shot has a take yet.")
    fps = segments[0].take.fps
    if any(segment.take.fps != fps for segment in segments):
        raise ExportError("the selected takes were rendered at different fps; re-render the odd ones out.")
    if not 0 <= float(crossfade) <= MAX_CROSSFADE_S:
        raise ExportError(f"crossfade must be between 0 and {MAX_CROSSFADE_S} seconds, got {crossfade}.")
    if not 0.1 <= float(scale) <= 4.0:
        raise ExportError(f"scale must be between 0.1 and 4, got {scale}.")
    fade = int(round(float(crossfade) * fps))
    shortest = min(segment.end - segment.start for segment in segments)
    if len(segments) > 1 and fade * 2 > shortest:
        raise ExportError(f"a {crossfade}s crossfade is longer than half the shortest shot; use a shorter one.")
    plan = plan_cuts(segments, fade if len(segments) > 1 else 0)
    total = plan[-1]["film_first"] + plan[-1]["length"]
    first = segments[0].take
    width = _even(int(round(first.width * scale)))
    height = _even(int(round(first.height * scale)))

    frames = FilmFrames(lambda: film_frames(frames_of, plan, fade, (width, height)))
    duration = total / fps
    try:  # moviepy asks for frame int(duration * fps) - 1 last: the 1e-3 keeps float error from losing one
        video = VideoClip(lambda t: frames.get(min(int(round(t * fps)), total - 1)), duration=(total + 1e-3) / fps)
    except BaseException:
        frames.close()
        raise
    audio_clip = None
    if audio:
        try:
            audio_clip = AudioFileClip(str(audio))
        except Exception as error:  # moviepy raises several types for unreadable files
            raise ExportError(f"{Path(audio).name}: not a readable audio file ({str(error).splitlines()[0][:200]}). "
                              "Use a wav, mp3, m4a or ogg file.") from None
        if audio_clip.duration is None or audio_clip.duration <= 0:
            raise ExportError(f"{Path(audio).name}: the audio track is empty.")
        if audio_clip.duration >= duration:
            audio_clip = audio_clip.subclipped(0, duration)
        else:  # pad with silence to the film's length
            channels = audio_clip.nchannels
            silence = AudioClip(lambda t: np.zeros((np.size(t), channels)) if np.ndim(t) else np.zeros(channels),
                                duration=duration - audio_clip.duration, fps=audio_clip.fps)
            audio_clip = concatenate_audioclips([audio_clip, silence])
        video = video.with_audio(audio_clip)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_path.parent, f".{out_path.stem}.*.tmp.mp4")  # left by an export that was killed
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.stem}.", suffix=".tmp.mp4", dir=out_path.parent)
    os.close(fd)
    try:
        video.write_videofile(
            tmp, fps=fps, codec="libx264", audio=audio_clip is not None, audio_codec="aac", logger=None,
            preset="medium" if quality == "final" else "veryfast",
            ffmpeg_params=["-crf", QUALITY[quality], "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
        )
        written = probe_clip(tmp, max_frames=total).frames
        if written != total:
            raise ExportError(f"the film came out {written} frames long instead of {total}; nothing was saved. "
                              "Please report this (with the fps and the number of shots).")
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):  # disk full, read-only, or ffmpeg failing to write: say so plainly
            from .project.store import storage_error

            raise storage_error(error, f"the film {out_path.name}", out_path.parent) from None
        raise
    finally:
        frames.close()
        video.close()
        if audio_clip is not None:
            audio_clip.close()

    timeline = {
        "film": out_path.name,
        "fps": fps,
        "frames": total,
        "seconds": round(duration, 4),
        "width": width,
        "height": height,
        "crossfade_frames": fade if len(segments) > 1 else 0,
        "audio": Path(audio).name if audio else None,
        "engine": first.engine,
        "draft": any(segment.take.engine.get("is_draft") for segment in segments),
        "shots": [
            {
                "shot": item["segment"].shot_index + 1,
                "shot_id": item["segment"].shot_id,
                "take_id": item["segment"].take.id,
                "prompt": item["segment"].take.shot_prompt,
                "seed": item["segment"].take.seed,
                "engine": item["segment"].take.engine.get("preset"),
                "draft": bool(item["segment"].take.engine.get("is_draft")),
                "first_frame": item["film_first"],
                "frames": item["length"],
                "start_s": round(item["film_first"] / fps, 4),
                "end_s": round((item["film_first"] + item["length"]) / fps, 4),
            }
            for item in plan
        ],
    }
    if write_timeline:
        atomic_write_json(timeline_path(out_path), timeline)
    return timeline


def film_frames(frames_of: SegmentFrames, plan: list[dict[str, Any]], fade: int,
                size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The film's frames in order, uint8 (height, width, 3) each, `size` = (width, height).

    Each segment is streamed by `frames_of`: at most two clips are open at once (both sides of
    a crossfade) and one frame of each is in memory, so memory does not grow with the length of
    the clips or of the film. A crossfade blends the last `fade` kept frames before a cut with
    the first `fade` after it."""

    def stream(item: dict[str, Any]) -> Iterator[np.ndarray]:
        return frames_of(item["segment"])

    current: Iterator[np.ndarray] | None = None
    following: Iterator[np.ndarray] | None = None
    skip = 0  # frames of `current` already blended into the previous cut
    try:
        for position, item in enumerate(plan):
            if current is None:
                current, skip = stream(item), 0
            overlap = fade if position < len(plan) - 1 else 0
            for _ in range(skip, item["length"] - overlap):
                yield _fit(_next_frame(current, item), size)
            if not overlap:
                current.close()
                current = None
                continue
            following = stream(plan[position + 1])
            for step in range(overlap):
                alpha = (step + 1) / (fade + 1)
                before, after = _next_frame(current, item), _next_frame(following, plan[position + 1])
                blended = before.astype(np.float32) * (1 - alpha) + after.astype(np.float32) * alpha
                yield _fit(blended.round().astype(np.uint8), size)
            current.close()
            current, following, skip = following, None, overlap
    finally:
        for stream in (current, following):
            if stream is not None:
                stream.close()


def _next_frame(frames: Iterator[np.ndarray], item: dict[str, Any]) -> np.ndarray:
    try:
        return next(frames)
    except StopIteration:  # store.iter_frames raises BrokenTake for a short clip; this is a backstop
        raise ExportError(f"shot {item['segment'].shot_index + 1}'s clip ended early; render it again.") from None


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` resized to `size` = (width, height) if it is not that size already."""
    if frame.shape[1::-1] == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


class FilmFrames:
    """Film frames by index for moviepy, which asks for them in order (frame 0 twice: once to
    learn the size). A request for an earlier frame restarts the stream from the film's start."""

    def __init__(self, open_stream: Callable[[], Iterator[np.ndarray]]):
        self._open = open_stream
        self._stream: Iterator[np.ndarray] | None = None
        self._index, self._frame = -1, None

    def get(self, index: int) -> np.ndarray:
        if self._stream is None or index < self._index:
            self.close()
            self._stream, self._index = self._open(), -1
        while self._index < index:
            self._frame, self._index = next(self._stream), self._index + 1
        return self._frame

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def _even(value: int) -> int:
    return max(2, value - value % 2)
