"""Seam score: how big the visual jump at a cut is, in units of an ordinary frame step.

score = MAD(last kept frame before the cut, first kept frame after it)
        / median MAD between consecutive frames inside the two clips' kept frames
(MAD: mean absolute difference of uint8 pixels). 1.0 ≈ an ordinary frame step;
a jump cut scores far higher (10 and more). Above SEAM_WARN the UI flags the cut.
"""

from __future__ import annotations

import numpy as np

SEAM_WARN = 3.0
WINDOW = 16  # frames on each side used for the typical frame step


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def tail_window(num_frames: int, drop_tail: int) -> tuple[int, int]:
    """[start, stop) of the frames seam_score reads of the clip before a cut: its last WINDOW kept frames."""
    stop = num_frames - drop_tail
    return max(0, stop - WINDOW), stop


def seam_score(before: np.ndarray, after: np.ndarray) -> float:
    """before: kept frames of the clip before the cut (T1, H, W, 3) uint8; after: of the clip after it."""
    jump = _mad(before[-1], after[0])
    tail, head = before[-WINDOW:], after[:WINDOW]  # shorter clips: all their frames
    steps = [_mad(x, y) for x, y in zip(tail[:-1], tail[1:])]
    steps += [_mad(x, y) for x, y in zip(head[:-1], head[1:])]
    typical = float(np.median(steps)) if steps else 0.0
    return round(jump / max(typical, 0.5), 3)  # 0.5: half a grey level, so still clips don't divide by ~0
