"""Bench the draft engine: seconds per 81-frame clip at 480x832 on one CPU core.

    python bench/bench_draft.py [--runs 7] [--width 832] [--height 480]

Prints, per camera move, the median wall and CPU seconds per clip over the runs and the
per-frame cost. The target is a median under 1 s per clip. torch is held to one thread
and, on Linux, the process is pinned to one core; PIL's crops are single-threaded anyway.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svi_studio.engines.draft import DraftEngine  # noqa: E402
from svi_studio.engines.request import ClipRequest

TARGET_SECONDS = 1.0
PROMPTS = [
    "slow push in and pan left",  # zoom + pan, the common case
    "very fast pan right",
    "pull back to reveal the harbour, tilt up",  # a continued clip (from the clip before)
    "a lighthouse at dusk",  # no camera words: gentle push-in
]


def bench_reference(width: int = 1920, height: int = 1080, seed: int = 0) -> Image.Image:
    """A detailed 1080p reference (smooth colour noise + fine grain), larger than the clip as photos are."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 24, width // 24, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-20, 21, size=(height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="clips per move (at least 5)")
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    runs = max(5, args.runs)

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    engine = DraftEngine()  # caption and DRAFT tag on, as in the app
    settings = replace(engine.default_settings(), width=args.width, height=args.height)
    reference = bench_reference()
    started = time.perf_counter()
    anchor = engine.encode_anchor(reference, settings)
    print(f"encode_anchor: {time.perf_counter() - started:.3f} s (once per project and resolution; "
          f"sharp copy {tuple(anchor.tensors['source'].shape)})")
    print(f"{settings.num_frames} frames at {settings.height}x{settings.width}, {runs} runs per move, 1 thread")

    engine.generate_clip(ClipRequest(anchor, None, PROMPTS[0], "", 0, settings))  # warm-up
    all_medians, all_cpu_medians = [], []
    previous = None
    for prompt in PROMPTS:
        walls, cpus = [], []
        for seed in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            clip = engine.generate_clip(ClipRequest(anchor, previous, prompt, "", seed, settings))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        previous = clip.motion_out
        median = statistics.median(walls)
        all_medians.append(median)
        all_cpu_medians.append(statistics.median(cpus))
        summary, cpu = clip.info["camera"]["summary"], statistics.median(cpus)
        print(f"  {summary:<42} median {median:.3f} s/clip (cpu {cpu:.3f} s), "
              f"{1000 * median / settings.num_frames:.2f} ms/frame")
    overall = statistics.median(all_medians)
    verdict = "OK" if overall < TARGET_SECONDS else "SLOWER THAN TARGET"
    print(f"median over moves: {overall:.3f} s/clip, {1000 * overall / settings.num_frames:.2f} ms/frame "
          f"(target < {TARGET_SECONDS:.1f} s: {verdict}); CPU time {statistics.median(all_cpu_medians):.3f} s/clip "
          f"(wall exceeds CPU when other processes share the core)")


if __name__ == "__main__":
    main()
