"""Director benchmarks on the tiny engine (CPU). Prints medians and ratios measured in one run.

    python bench/bench_director.py [--repeats 3]

1. time to the first clip event / time for the whole 4-shot render   (target <= 0.35)
2. regenerating shot 2 of 4 / generating one clip                      (target <= 1.2)
   and regenerating / the re-roll's own generate+write (what the path adds around the engine)
3. peak RSS rendering 8 shots / rendering 2 shots, each in a fresh process (target <= 1.15)
4. export seconds per second of output video
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PROMPTS = ["a kitten on a windowsill", "it jumps down", "it meets a dog", "they run off together",
           "sunset over the garden", "the dog sleeps", "the kitten climbs a tree", "night falls"]

RSS_WORKER = r"""
import json, resource, sys, tempfile
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
from conftest import make_reference
from svi_studio.director import Director
from svi_studio.engines import load_engine
shots = int(sys.argv[2])
director = Director.create(tempfile.mkdtemp() + "/p", load_engine("tiny"), reference=make_reference(),
                           prompts=[f"shot {i}" for i in range(shots)])
list(director.render())
print(json.dumps({"shots": shots, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from conftest import make_reference
    from svi_studio.director import Director
    from svi_studio.engines import load_engine

    engine = load_engine("tiny")
    reference = make_reference()
    settings = engine.default_settings()
    print(f"tiny engine, {settings.num_frames} frames/clip, {settings.steps} steps; reference fitted per project\n")

    first_ratio, regen_ratio, regen_overhead, export_rate, whole_times = [], [], [], [], []
    for repeat in range(args.repeats):
        folder = Path(tempfile.mkdtemp()) / "film"
        director = Director.create(folder, engine, reference=reference, prompts=PROMPTS[:4])
        start = time.perf_counter()
        first = None
        clip_times = []
        for event in director.render():
            if event.kind == "clip":
                now = time.perf_counter()
                first = first if first is not None else now - start
                clip_times.append(event.timings["generate_s"] + event.timings["write_s"])
        whole = time.perf_counter() - start
        whole_times.append(whole)
        first_ratio.append(first / whole)

        one_clip = statistics.median(clip_times)
        start = time.perf_counter()
        events = list(director.regenerate(1))
        regen_s = time.perf_counter() - start
        regen_ratio.append(regen_s / one_clip)
        # The same re-roll against its own clip's generate+write: what the regenerate path adds
        # around the engine, free of the clip-to-clip noise of a shared CPU.
        own = events[0].timings
        regen_overhead.append(regen_s / (own["generate_s"] + own["write_s"]))

        start = time.perf_counter()
        timeline = director.export(folder.parent / "film.mp4")
        export_rate.append((time.perf_counter() - start) / timeline["seconds"])

    rss = {}
    for shots in (2, 8):
        samples = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", RSS_WORKER, str(ROOT), str(shots)],
                                 capture_output=True, text=True, check=True)
            samples.append(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])
        rss[shots] = statistics.median(samples)

    rows = [
        ("first clip / whole 4-shot render", statistics.median(first_ratio), "<= 0.35"),
        ("regenerate shot 2 of 4 / one clip", statistics.median(regen_ratio), "<= 1.2"),
        ("regenerate / its own clip's generate+write", statistics.median(regen_overhead), "(path overhead)"),
        ("peak RSS 8 shots / 2 shots", rss[8] / rss[2], "<= 1.15"),
        ("export s per s of video", statistics.median(export_rate), "(lower is better)"),
    ]
    print(f"{'measure':44} {'median':>8}  target")
    for name, value, target in rows:
        print(f"{name:44} {value:8.3f}  {target}")
    print(f"\nwhole 4-shot render median {statistics.median(whole_times):.2f}s; peak RSS 2 shots {rss[2]:.0f} MB, "
          f"8 shots {rss[8]:.0f} MB (medians of {args.repeats})")


if __name__ == "__main__":
    main()
