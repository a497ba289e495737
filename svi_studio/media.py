"""Per-shot media files, opened as untrusted input: the bounded video loader.

Images (anchor image, end frame) go through `reference.load_reference`, the gate every
picture passes. Videos (a pose video per shot) go through `check_video` when they are
stored and `load_pose_video` when a shot renders:

    check_video       size, duration and frame size read from the container header,
                      refused past the limits *before* a single frame is decoded
    load_pose_video   streams the frames, keeps only the ones the shot needs (nearest
                      frame in time: the video is resampled to the shot's frame count),
                      and fits each to the clip size with nearest interpolation, centred
                      on black (as SVI-Dance prepares its DWPose videos)

Memory stays bounded by the shot's own frame count, whatever the video's length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .project.model import ProjectError

MAX_VIDEO_BYTES = 256 * 1024**2
MAX_VIDEO_SECONDS = 600.0
MAX_VIDEO_SIDE = 4096
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
VIDEO_HINT = "Use an mp4, webm or mov file"


class MediaError(ProjectError):
    """A media file (pose video) that cannot be used; the message says why and what to do."""


def check_video(path: str | Path, name: str = "the video") -> dict:
    """The video's header facts {"fps", "size", "duration"}; MediaError past the limits or unreadable."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{name}: file not found. Upload it again.")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{name} is empty (0 bytes). {VIDEO_HINT}.")
    if size > MAX_VIDEO_BYTES:
        raise MediaError(f"{name} is {size // 1024**2} MB; the largest video accepted is "
                         f"{MAX_VIDEO_BYTES // 1024**2} MB. Shorten it or lower its resolution.")
    reader = None
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except Exception as error:  # imageio-ffmpeg raises OSError, RuntimeError, StopIteration …
        first = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise MediaError(f"{name} is not a video SVI Studio can read ({_no_paths(first, path)}). {VIDEO_HINT}.") from None
    finally:
        if reader is not None:
            reader.close()
    width, height = meta.get("size") or (0, 0)
    duration, fps = float(meta.get("duration") or 0.0), float(meta.get("fps") or 0.0)
    if not (0 < width <= MAX_VIDEO_SIDE and 0 < height <= MAX_VIDEO_SIDE):
        raise MediaError(f"{name} is {width}x{height}; videos up to {MAX_VIDEO_SIDE} px on a side are accepted.")
    if duration > MAX_VIDEO_SECONDS:
        raise MediaError(f"{name} is {duration:.0f} s long; the limit is {MAX_VIDEO_SECONDS:.0f} s. Trim it.")
    if fps <= 0:
        raise MediaError(f"{name} has no frame rate in its header. {VIDEO_HINT}.")
    return {"fps": fps, "size": (width, height), "duration": duration}


def load_pose_video(path: str | Path, num_frames: int, width: int, height: int, name: str = "the pose video",
                    seconds: np.ndarray | None = None) -> np.ndarray:
    """`num_frames` frames of a video at width × height: uint8 (num_frames, height, width, 3).

    seconds: the time in the video of each output frame (a film-long pose video cut into a
    shot's frames; times past its end hold its last frame). None: the whole video,
    resampled to num_frames (a shot's own pose video)."""
    import imageio_ffmpeg

    meta = check_video(path, name)
    estimated = max(1, round(meta["duration"] * meta["fps"]))
    if seconds is None:
        wanted = np.round(np.linspace(0, estimated - 1, num_frames)).astype(int)  # source index of each output frame
    else:
        wanted = np.clip(np.round(np.asarray(seconds) * meta["fps"]), 0, estimated - 1).astype(int)
    out = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    filled, latest = 0, None
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        src_w, src_h = next(reader)["size"]
        for index, chunk in enumerate(reader):
            if index > wanted[-1]:
                break
            if not (wanted == index).any():
                continue
            latest = fit_nearest(np.frombuffer(chunk, dtype=np.uint8).reshape(src_h, src_w, 3), width, height)
            while filled < num_frames and wanted[filled] <= index:
                out[filled] = latest
                filled += 1
    except Exception as error:
        raise MediaError(f"{name} could not be decoded ({type(error).__name__}). {VIDEO_HINT}.") from None
    finally:
        reader.close()
    if latest is None:
        raise MediaError(f"{name} holds no frames. {VIDEO_HINT}.")
    out[filled:] = latest  # the header overstated the length: hold the last frame
    return out


def fit_nearest(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale (nearest) to fit inside width × height, centred on black: pose lines stay crisp."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.NEAREST))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def _no_paths(text: str, path: Path) -> str:
    """An ffmpeg message without the server path of the file."""
    return text.replace(str(path), path.name).replace(str(path.resolve()), path.name)
