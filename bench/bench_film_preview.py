"""Film preview update time at 24 shots vs 2 shots, old path and new path side by side (draft engine, CPU).

    python bench/bench_film_preview.py [--repeats 5] [--frames 81] [--width 416 --height 240]

old: export.export_film(quality="preview") — the whole film decoded and re-encoded on every update.
new: film_preview.FilmPreview — cached per-take segments joined by stream copy.

Measured per film length (2 and 24 shots, every clip the draft engine's real 81 frames):
  update after a clip landed   the last shot's take is new (one segment to prepare)
  update after a take selection  the last shot's previous take selected again (cached segment)
  update after a move           the last shot moved one place earlier
  update after a one-shot change  one shot re-rolled (only its segment prepared; counted)
Prints medians of --repeats and the 24-shot / 2-shot ratios (target <= 1.5 for the new path).
Also the floor of any stream-copy join: ffmpeg copying the same frames' packets to nowhere
(`count_frames` on the assembled preview), which grows with the film as the join does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


UPDATES = ("clip landed", "take selected", "shot moved", "one-shot change")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()

    from conftest import make_reference
    from svi_studio.director import Director
    from svi_studio.engines import load_engine
    from svi_studio.export import ExportOptions, export_film
    from svi_studio.film_preview import FilmPreview, count_frames

    engine = load_engine("draft")
    reference = make_reference()
    settings = {"width": args.width, "height": args.height, "num_frames": args.frames, "fps": 16}
    print(f"draft engine, {args.width}x{args.height}, {args.frames} frames/clip, medians of {args.repeats}\n")

    def old_path(director: Director, out: Path) -> None:
        segments = director.film_segments(strict=False)
        export_film(segments, director._export_frames(segments), out,
                    ExportOptions(quality="preview", write_timeline=False))

    def new_path(director: Director, out: Path) -> FilmPreview:
        cache = FilmPreview(director.root)
        segments = director.film_segments(strict=False)
        cache.write(segments, director._export_frames(segments), out,
                    keep_takes=[take for shot in director.project.shots for take in shot.takes])
        return cache

    def timed(function, *arguments):
        start = time.perf_counter()
        result = function(*arguments)
        return time.perf_counter() - start, result

    results: dict[tuple[str, str, int], list[float]] = {}
    prepared_after_change: dict[int, list[int]] = {}
    films: dict[int, tuple[Director, Path, Path]] = {}
    for shots in (2, 24):
        folder = Path(tempfile.mkdtemp()) / "film"
        director = Director.create(folder, engine, reference=reference,
                                   prompts=[f"shot {i}, slow push in" for i in range(shots)], settings=settings)
        list(director.render())
        out_old, out_new = folder.parent / "old.mp4", folder.parent / "new.mp4"
        new_path(director, out_new)  # the cache as a session has it once the earlier clips landed
        films[shots] = (director, out_old, out_new)
    # The two films are measured in alternation, repeat by repeat, so that a busy spell of this
    # shared machine falls on both sides of the ratio alike.
    for _ in range(args.repeats):
        for shots, (director, out_old, out_new) in films.items():
            # 1. A clip landed: the last shot has a new take.
            list(director.regenerate(shots - 1, seed=int(time.time_ns() % 2**31)))
            results.setdefault(("clip landed", "old", shots), []).append(timed(old_path, director, out_old)[0])
            results.setdefault(("clip landed", "new", shots), []).append(timed(new_path, director, out_new)[0])
            # 2. A structure edit: the last shot's previous take selected again (its segment is cached).
            last = director.project.shots[-1]
            director.select_take(shots - 1, last.takes[-2])
            results.setdefault(("take selected", "old", shots), []).append(timed(old_path, director, out_old)[0])
            results.setdefault(("take selected", "new", shots), []).append(timed(new_path, director, out_new)[0])
            # 3. A structure edit: the last shot moves one place earlier. At 2 shots that changes the
            # opening shot, so both segments are prepared again; at 24 shots none is.
            director.move_shot(shots - 1, shots - 2)
            results.setdefault(("shot moved", "old", shots), []).append(timed(old_path, director, out_old)[0])
            results.setdefault(("shot moved", "new", shots), []).append(timed(new_path, director, out_new)[0])
            # 4. One shot re-rolled in the middle of the film.
            list(director.regenerate(shots // 2, seed=int(time.time_ns() % 2**31)))
            results.setdefault(("one-shot change", "old", shots), []).append(timed(old_path, director, out_old)[0])
            seconds, cache = timed(new_path, director, out_new)
            results.setdefault(("one-shot change", "new", shots), []).append(seconds)
            prepared_after_change.setdefault(shots, []).append(len(cache.prepared))
            # 5. The floor: one ffmpeg run stream-copying the film's packets, with no output file.
            results.setdefault(("copy floor", "new", shots), []).append(timed(count_frames, out_new)[0])
    for director, _, out_new in films.values():
        expected = sum(segment.end - segment.start for segment in director.film_segments())
        assert count_frames(out_new) == expected, "the assembled preview lost frames"

    print(f"{'update':18} {'path':4} {'2 shots s':>10} {'24 shots s':>11} {'24/2':>7}  target")
    for update in UPDATES:
        for path in ("old", "new"):
            two = statistics.median(results[(update, path, 2)])
            many = statistics.median(results[(update, path, 24)])
            target = "<= 1.5" if path == "new" else ""
            print(f"{update:18} {path:4} {two:10.3f} {many:11.3f} {many / two:7.2f}  {target}")
    floor = {shots: statistics.median(results[("copy floor", "new", shots)]) for shots in (2, 24)}
    print(f"{'copy floor':18} {'':4} {floor[2]:10.3f} {floor[24]:11.3f} {floor[24] / floor[2]:7.2f}  "
          "(ffmpeg -c copy of the same packets to null)")
    for update in UPDATES:
        for shots in (2, 24):
            old = statistics.median(results[(update, "old", shots)])
            new = statistics.median(results[(update, "new", shots)])
            print(f"new / old, {update}, {shots} shots: {new / old:.3f}")
    print(f"segments prepared after a one-shot change: {prepared_after_change}")


if __name__ == "__main__":
    main()
