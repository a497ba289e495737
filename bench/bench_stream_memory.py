"""Bench the memory of export and preview: a film of 2 shots vs one of 12, side by side.

    python bench/bench_stream_memory.py [--runs 3] [--width 832] [--height 480] [--frames 81]

Renders two draft films (2 and 12 shots, same settings), then for each film and each of
export and preview starts a fresh Python process that opens the project without an
engine, notes its RSS (idle), and writes the film while a thread samples RSS every 5 ms.
Prints the median peak RSS over idle per film and action, and the ratio 12 shots / 2
shots (target ≈ 1: frames are streamed, so memory does not grow with the film's length).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_reference_memory import PeakSampler  # noqa: E402  (bench/ is on sys.path: this script's folder)

MB = 1024**2


def render(root: Path, shots: int, width: int, height: int, frames: int) -> None:
    from bench_draft import bench_reference
    from svi_studio.director import Director
    from svi_studio.engines.draft import DraftEngine

    prompts = ["slow push in", "pan left", "tilt up, pull back"] * ((shots + 2) // 3)
    director = Director.create(root, DraftEngine(), reference=bench_reference(), prompts=prompts[:shots],
                               settings={"width": width, "height": height, "num_frames": frames})
    list(director.render())


def child(root: Path, action: str) -> None:
    """One measurement in this (fresh) process; prints its figures as JSON."""
    from svi_studio.director import Director

    director = Director.open(root, None)
    idle = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with PeakSampler() as sampler:
        if action == "export":
            frames = director.export(root.parent / f"{root.name}-film.mp4")["frames"]
        else:
            director.preview(root.parent / f"{root.name}-preview.mp4")
            frames = sum(segment.end - segment.start for segment in director.film_segments(strict=False))
    seconds = time.perf_counter() - started
    peak = sampler.peak
    print(json.dumps({"peak": (peak - idle) / MB, "idle": idle / MB, "seconds": seconds, "frames": frames}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "ACTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return

    with tempfile.TemporaryDirectory() as folder:
        films = {}
        for shots in (2, 12):
            films[shots] = Path(folder) / f"film-{shots}"
            started = time.perf_counter()
            render(films[shots], shots, args.width, args.height, args.frames)
            print(f"rendered {shots} draft shots of {args.frames} frames at {args.width}x{args.height} "
                  f"in {time.perf_counter() - started:.0f} s")
        results: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.runs):  # interleaved, so both films see the same machine load
            for action in ("export", "preview"):
                for shots, root in films.items():
                    out = subprocess.run([sys.executable, __file__, "--child", str(root), action],
                                         capture_output=True, text=True, check=True)
                    results.setdefault((action, shots), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
        for action in ("export", "preview"):
            peaks = {shots: statistics.median(r["peak"] for r in results[(action, shots)]) for shots in films}
            for shots in films:
                rows = results[(action, shots)]
                print(f"{action:7} {shots:2} shots ({rows[0]['frames']:4} frames): median peak RSS over idle "
                      f"{peaks[shots]:6.1f} MB (idle {statistics.median(r['idle'] for r in rows):.0f} MB), "
                      f"median {statistics.median(r['seconds'] for r in rows):.1f} s")
            print(f"{action:7} ratio 12 shots / 2 shots: {peaks[12] / max(peaks[2], 0.1):.2f} (target ~1)")


if __name__ == "__main__":
    main()
