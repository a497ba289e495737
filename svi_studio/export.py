"""Export: the selected takes, stitched, written with moviepy as an H.264 mp4.

Frames are pulled lazily (one or two takes decoded at a time), so memory does not
grow with the film's length. Cuts follow the timeline's segments (timeline.py, the
same the preview and the status use) — so with no crossfade the file's frame count is exactly
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
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .fsutil import atomic_write_json, fsync_dir, remove_stale_temps
from .project.model import ProjectError
from .timeline import FilmSegment, plan_cuts  # noqa: F401 - plan_cuts is re-exported

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


def export_film(segments: Sequence[FilmSegment], frames_of: Callable[[FilmSegment], np.ndarray], out_path: Path,
                options: ExportOptions | None = None) -> dict[str, Any]:
    """Write the film cut from `segments` to `out_path` (atomic) and its timeline beside it; return the timeline.

    frames_of(segment): the decoded frames (T, H, W, 3) uint8 of the segment's take."""
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

    def segment_frame(item: dict[str, Any], offset: int) -> np.ndarray:
        segment = item["segment"]
        return frames_of(segment)[segment.start + offset]

    def film_frame(index: int) -> np.ndarray:
        index = min(max(index, 0), total - 1)
        for position, item in enumerate(plan):
            if item["film_first"] <= index < item["film_first"] + item["length"]:
                offset = index - item["film_first"]
                frame = segment_frame(item, offset)
                nxt = plan[position + 1] if position + 1 < len(plan) else None
                if fade and nxt is not None and index >= nxt["film_first"]:
                    alpha = (index - nxt["film_first"] + 1) / (fade + 1)
                    other = segment_frame(nxt, index - nxt["film_first"])
                    frame = (frame.astype(np.float32) * (1 - alpha) + other.astype(np.float32) * alpha).round().astype(np.uint8)
                break
        if frame.shape[:2] != (height, width):
            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))
        return frame

    duration = total / fps
    video = VideoClip(lambda t: film_frame(int(round(t * fps))), duration=(total + 1e-3) / fps)
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
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):  # disk full, read-only, or ffmpeg failing to write: say so plainly
            from .project.store import storage_error

            raise storage_error(error, f"the film {out_path.name}", out_path.parent) from None
        raise
    finally:
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


def _even(value: int) -> int:
    return max(2, value - value % 2)
