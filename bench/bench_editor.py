"""Editor latency on the draft engine (CPU). Prints medians measured side by side in one run.

    python bench/bench_editor.py [--repeats 7]

For a film of 3 and of 24 rendered shots:
1. server-side time of a move (↑ Up through the page handler: form sync, the move, the
   undo step, the reply's updates), the film preview being rewritten in the background;
   target well under 0.5 s whatever the film's length.
2. for comparison, the synchronous film-preview re-encode that used to sit in that reply.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def film(studio, shots: int):
    from conftest import make_reference
    from svi_studio.ui import jobs

    session = studio.registry.create()
    director = session.director
    director.set_reference(make_reference())
    director.update_settings(num_frames=21, width=320, height=192)
    director.set_shot(0, prompt="shot 1: a kitten on a windowsill")
    for number in range(2, shots + 1):
        director.add_shot(f"shot {number}: the kitten walks on")
    list(jobs.render_all(session))
    studio.view(session, "")
    return session


def time_moves(studio, session, repeats: int) -> list[float]:
    """Seconds per ↑ Up on the last shot (alternating with ↓ Down), as the page sends it."""
    times = []
    for repeat in range(repeats):
        form = tuple(session.shown.get(key) for key in studio.form_keys)
        shots = session.director.project.shots
        moving, offset = (shots[-1].id, -1) if repeat % 2 == 0 else (shots[-2].id, 1)
        revision = int(session.shown["revision"])
        started = time.perf_counter()
        outputs = studio.page(session.token, form, lambda s: studio.move_shot(s, moving, offset, revision))
        times.append(time.perf_counter() - started)
        assert "moved to position" in outputs[1]["value"], outputs[1]
        session.preview.wait()  # the background re-encode must not overlap the next timed move
    return times


def time_previews(session, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.director.preview(session.preview_path)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from svi_studio.ui import runtime
    from svi_studio.ui.studio import Studio

    engine, _ = runtime.get_engine("draft")
    studio = Studio(engine, tempfile.mkdtemp(prefix="svi-bench-editor-"), max_shots=24)
    results = {}
    for shots in (3, 24):
        session = film(studio, shots)
        moves = time_moves(studio, session, args.repeats)
        previews = time_previews(session, max(3, args.repeats // 2))
        results[shots] = {"move_reply_s": statistics.median(moves), "preview_reencode_s": statistics.median(previews)}
        print(f"{shots:>2} shots: move reply median {results[shots]['move_reply_s'] * 1000:.1f} ms "
              f"(max {max(moves) * 1000:.1f} ms); synchronous preview re-encode (the old reply path) "
              f"median {results[shots]['preview_reencode_s']:.2f} s", flush=True)
    ratio = results[24]["move_reply_s"] / results[3]["move_reply_s"]
    print(f"move reply at 24 shots / at 3 shots: {ratio:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
