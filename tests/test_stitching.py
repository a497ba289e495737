"""The stitching rule on synthetic clips whose pixels say which clip and frame they are.

A synthetic frame (2, 2, 3) uint8 holds [clip index, frame index, 7] in every pixel, so the
stitched film can be checked frame by frame by content, not only by length.
"""

from __future__ import annotations

import numpy as np
import pytest

from svi_studio.engines import load_engine
from svi_studio.engines.wan import tiny_settings
from svi_studio.stitching import StitchRule, film_frame_count, film_timeline, kept_range, pixel_rule, stitch, svi_pro_rule


def synthetic_clip(clip: int, frames: int = 81) -> np.ndarray:
    """(frames, 2, 2, 3) uint8; pixel = [clip, frame, 7]."""
    out = np.zeros((frames, 2, 2, 3), dtype=np.uint8)
    out[..., 0] = clip
    out[..., 1] = np.arange(frames)[:, None, None]
    out[..., 2] = 7
    return out


def labels(film: np.ndarray) -> list[tuple[int, int]]:
    """[(clip, frame)] read back from a stitched film."""
    assert (film[..., 2] == 7).all()
    return [(int(f[0, 0, 0]), int(f[0, 0, 1])) for f in film]


@pytest.mark.parametrize("m, total", [(1, 233), (2, 225), (3, 217)])
def test_svi_pro_drops_anchor_and_motion_frames_of_later_clips(m, total):
    rule = svi_pro_rule(m)
    assert rule == StitchRule(drop_head=1 + 4 * m, drop_tail=0)
    film = stitch([synthetic_clip(i) for i in range(3)], rule)
    assert len(film) == total == 81 + 2 * (80 - 4 * m)
    expected = [(0, f) for f in range(81)] + [(c, f) for c in (1, 2) for f in range(1 + 4 * m, 81)]
    assert labels(film) == expected
    assert film_frame_count([81, 81, 81], rule) == total


@pytest.mark.parametrize("n, total", [(5, 233), (1, 241)])
def test_pixel_modes_drop_the_tail_the_next_clip_recreates(n, total):
    rule = pixel_rule(n)
    film = stitch([synthetic_clip(i) for i in range(3)], rule)
    assert len(film) == total
    expected = [(c, f) for c in (0, 1) for f in range(81 - n)] + [(2, f) for f in range(81)]
    assert labels(film) == expected


@pytest.mark.parametrize("preset, total", [("tiny", 233), ("tiny-film", 233), ("tiny-shot", 241)])
def test_engines_use_the_right_rule(preset, total):
    engine = load_engine(preset)
    settings = tiny_settings(engine, num_motion_latents=1)
    rule = engine.stitch_rule(settings)
    assert len(stitch([synthetic_clip(i) for i in range(3)], rule)) == total
    if preset == "tiny":
        assert engine.stitch_rule(tiny_settings(engine, num_motion_latents=2)) == svi_pro_rule(2)


def test_single_clip_is_kept_whole_and_clip_lengths_may_differ():
    for rule in (svi_pro_rule(1), pixel_rule(5), pixel_rule(1)):
        assert labels(stitch([synthetic_clip(4)], rule)) == [(4, f) for f in range(81)]
    rule = svi_pro_rule(1)
    film = stitch([synthetic_clip(0, 41), synthetic_clip(1, 81), synthetic_clip(2, 21)], rule)
    assert labels(film) == [(0, f) for f in range(41)] + [(1, f) for f in range(5, 81)] + [(2, f) for f in range(5, 21)]
    assert film_frame_count([41, 81, 21], rule) == len(film) == 41 + 76 + 16


def test_film_timeline_matches_the_stitched_film():
    for rule, counts in ((svi_pro_rule(1), [81, 81, 81]), (pixel_rule(5), [81, 81, 81]), (pixel_rule(1), [81, 41, 81])):
        timeline = film_timeline(counts, rule, fps=16)
        film = stitch([synthetic_clip(i, n) for i, n in enumerate(counts)], rule)
        assert sum(entry["frames"] for entry in timeline) == len(film) == film_frame_count(counts, rule)
        cursor = 0
        for index, entry in enumerate(timeline):
            assert entry["first_frame"] == cursor
            assert entry["start_s"] == pytest.approx(cursor / 16, abs=1e-4)
            assert entry["end_s"] == pytest.approx((cursor + entry["frames"]) / 16, abs=1e-4)
            assert {c for c, _ in labels(film[cursor:cursor + entry["frames"]])} == {index}
            start, end = kept_range(index, len(counts), counts[index], rule)
            assert labels(film[cursor:cursor + entry["frames"]])[0] == (index, start)
            cursor += entry["frames"]
    pro = film_timeline([81, 81, 81], svi_pro_rule(1), fps=16)
    assert [e["frames"] for e in pro] == [81, 76, 76] and pro[-1]["end_s"] == pytest.approx(233 / 16)


def test_too_short_clips_and_empty_films_are_refused():
    with pytest.raises(ValueError):
        kept_range(1, 3, 5, svi_pro_rule(1))  # 5 frames, 5 dropped from the head
    with pytest.raises(ValueError):
        stitch([], svi_pro_rule(1))
    assert svi_pro_rule(1).to_dict() == {"drop_head": 5, "drop_tail": 0}


@pytest.mark.parametrize("frames", [3, 9, 16, 17, 40])
def test_seam_score_of_a_steady_move_is_one_step_whatever_the_clip_length(frames):
    """A pan that goes on across the cut scores ~1 (an ordinary frame step), also for clips shorter
    than the score's 16-frame window (which once compared each such frame with itself and flagged
    every cut of a short shot)."""
    from svi_studio.seams import SEAM_WARN, seam_score

    ramp = 2 * np.arange(32 + 2 * frames + 2)  # a smooth strip: a one-pixel step changes each pixel by 2
    strip = np.broadcast_to(ramp[None, :, None], (32, ramp.size, 3)).astype(np.uint8)
    pan = np.stack([strip[:, i:i + 32] for i in range(2 * frames)])  # one pixel per frame
    before, after = pan[:frames], pan[frames:]
    assert 0.9 <= seam_score(before, after) <= 1.1
    jump = after + 16  # the same move, 8 steps further on
    assert seam_score(before, jump) > SEAM_WARN
