"""The stitching rule: which frames of each clip make it into the film.

Preview and export both call `kept_range` / `stitch`, so the film a user watches
in the app is frame for frame the film they export.

SVI 2.0 Pro: every clip after the first re-creates the anchor frame and the
previous clip's motion tail in its first 1 + 4m frames; those are dropped.
Pixel modes (SVI Film / Shot on Wan2.1): a clip's last N frames are re-created by
the next clip's first N (its conditioning frames), so every clip but the last
drops its last N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class StitchRule:
    """drop_head: frames dropped from the start of every clip but the first.
    drop_tail: frames dropped from the end of every clip but the last."""

    drop_head: int = 0
    drop_tail: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"drop_head": self.drop_head, "drop_tail": self.drop_tail}


def svi_pro_rule(num_motion_latents: int) -> StitchRule:
    return StitchRule(drop_head=1 + 4 * num_motion_latents)


def pixel_rule(num_motion_frames: int) -> StitchRule:
    return StitchRule(drop_tail=num_motion_frames)


def kept_range(index: int, count: int, num_frames: int, rule: StitchRule) -> tuple[int, int]:
    """[start, end) of the frames of clip `index` (of `count`) that the film keeps."""
    start = rule.drop_head if index > 0 else 0
    end = num_frames - rule.drop_tail if index < count - 1 else num_frames
    if end <= start:
        raise ValueError(f"clip {index + 1} has {num_frames} frames, too few for {rule}")
    return start, end


def film_frame_count(frame_counts: Sequence[int], rule: StitchRule) -> int:
    return sum(end - start for start, end in (kept_range(i, len(frame_counts), n, rule) for i, n in enumerate(frame_counts)))


def stitch(clips: Sequence[np.ndarray], rule: StitchRule) -> np.ndarray:
    """Concatenate clips (each T×H×W×3 uint8) into one film, dropping re-created frames."""
    if not clips:
        raise ValueError("nothing to stitch: no clips")
    parts = []
    for index, frames in enumerate(clips):
        start, end = kept_range(index, len(clips), len(frames), rule)
        parts.append(frames[start:end])
    return np.concatenate(parts, axis=0)


def film_timeline(frame_counts: Sequence[int], rule: StitchRule, fps: float) -> list[dict[str, float]]:
    """Per clip: first and last film frame and the seconds it covers in the film."""
    from .timeline import film_positions

    kept = [end - start for start, end in (kept_range(i, len(frame_counts), n, rule) for i, n in enumerate(frame_counts))]
    return [{"first_frame": first, "frames": length, "start_s": round(first / fps, 4),
             "end_s": round((first + length) / fps, 4)}
            for first, length in zip(film_positions(kept), kept)]
