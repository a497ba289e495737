"""The film timeline: where each shot's kept frames sit in the film, in frames and seconds.

This is the one place that computes cuts and film times. The stitching rule
(stitching.kept_range) says which frames of one clip the film keeps; this module
lays the kept spans end to end:

    film_positions   first film frame of each span (crossfades overlap neighbours)
    cut_segments     the selected takes → FilmSegments (what preview and export cut)
    planned_spans    (start_s, end_s) each shot will cover with the current settings
    clip_origins     the film frame each shot's clip frame 0 stands for (cuts a film-long
                     pose video into shots; re-created frames map onto the same film frames)
    segment_seconds  (start_s, end_s) of one segment in the film

Status, the page, the CLI and export all read their numbers from here, so a shot's
seconds on a card are the seconds of the exported file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .project.model import Take
from .stitching import StitchRule, kept_range


@dataclass
class FilmSegment:
    """The kept frames [start, end) of one selected take, in film order."""

    shot_index: int
    shot_id: str
    take: Take
    start: int
    end: int
    film_start: int  # index of this segment's first frame in the film

    @property
    def length(self) -> int:
        return self.end - self.start


def film_positions(lengths: Sequence[int], overlap: int = 0) -> list[int]:
    """The first film frame of each of consecutive spans of `lengths` frames, when every
    cut overlaps the span before it by `overlap` frames (a crossfade)."""
    positions, cursor = [], 0
    for position, length in enumerate(lengths):
        positions.append(cursor)
        cursor += length - (overlap if position < len(lengths) - 1 else 0)
    return positions


def cut_segments(chosen: Sequence[tuple[int, str, Take]]) -> list[FilmSegment]:
    """(shot index, shot id, selected take) in film order → the segments the film is cut from.

    Each take is cut with the stitching rule it was rendered under; the first kept take
    keeps its head and the last its tail."""
    spans = [kept_range(position, len(chosen), take.num_frames, StitchRule(**take.stitch_rule))
             for position, (_, _, take) in enumerate(chosen)]
    starts = film_positions([end - start for start, end in spans])
    return [FilmSegment(index, shot_id, take, start, end, film_start)
            for (index, shot_id, take), (start, end), film_start in zip(chosen, spans, starts)]


def planned_spans(count: int, num_frames: int, rule: StitchRule, fps: float) -> list[tuple[float, float]]:
    """(start, end) seconds each of `count` shots will cover once rendered at `num_frames` under `rule`."""
    spans = [kept_range(index, count, num_frames, rule) for index in range(count)]
    starts = film_positions([end - start for start, end in spans])
    return [(round(first / fps, 3), round((first + end - start) / fps, 3)) for first, (start, end) in zip(starts, spans)]


def clip_origins(count: int, num_frames: int, rule: StitchRule) -> list[int]:
    """For each of `count` clips of `num_frames` under `rule`: the film frame its frame 0 stands
    for. A clip whose head re-creates the previous clip's tail starts before its first kept frame."""
    spans = [kept_range(index, count, num_frames, rule) for index in range(count)]
    starts = film_positions([end - start for start, end in spans])
    return [first - start for first, (start, _) in zip(starts, spans)]


def segment_seconds(segment: FilmSegment, fps: float, digits: int = 3) -> tuple[float, float]:
    """(start, end) seconds of a segment in the film."""
    return round(segment.film_start / fps, digits), round((segment.film_start + segment.length) / fps, digits)


def plan_cuts(segments: Sequence[FilmSegment], fade_frames: int) -> list[dict]:
    """Film position of each segment once crossfades overlap neighbours by `fade_frames`:
    [{"segment", "film_first", "length"}]."""
    starts = film_positions([segment.length for segment in segments], fade_frames)
    return [{"segment": segment, "film_first": first, "length": segment.length}
            for segment, first in zip(segments, starts)]
