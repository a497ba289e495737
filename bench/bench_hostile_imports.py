"""Bench hostile project imports: peak memory of the server while it refuses each one.

    python bench/bench_hostile_imports.py [--runs 3] [--keep DIR]

Builds each hostile zip (a 1 GiB big-ratio bomb, many small bombs, 150,000 empty entries,
project.json nested 100,000 deep, a 30 MiB project.json, entries whose headers declare
3.75 GiB each, a bzip2 bomb), plus a good bundle as the control, and imports each with
the function the app's "Upload project" runs (Studio.upload_project: uploads.check_zip,
then project.bundle.unbundle_project into a new session folder). A thread samples the
process's RSS with psutil every 2 ms. Every measurement runs in a fresh interpreter (so
memory an earlier case freed cannot hide a later peak); per case it prints the median over
the runs of peak RSS over the idle RSS just before the import, the median wall time, the
zip's size and what the import said (and whether a refused import left anything behind).
For comparison it also measures merely listing the 150,000-entry zip with zipfile. The target: every hostile import stays within a few hundred
MB of idle (and leaves no session or staging folder behind).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svi_studio.director import Director  # noqa: E402
from svi_studio.engines.draft import DraftEngine  # noqa: E402
from svi_studio.project.bundle import bundle_project  # noqa: E402
from svi_studio.project.model import ProjectError  # noqa: E402

TARGET_MB = 300
MiB = 1024**2


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every `interval_s`."""

    def __init__(self, interval_s: float = 0.002):
        self.process, self.interval_s = psutil.Process(), interval_s

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.idle = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def over_idle_mb(self) -> float:
        return (self.peak - self.idle) / MiB


# -- the hostile zips --------------------------------------------------------------------------

def good_bundle(folder: Path) -> tuple[Path, dict]:
    root = folder / "good-project"
    director = Director.create(root, DraftEngine(), reference=None, prompts=["one", "two"],
                               settings={"width": 64, "height": 48, "num_frames": 9})
    from PIL import Image

    director.set_reference(Image.new("RGB", (96, 64), (120, 80, 40)))
    list(director.render())
    return bundle_project(root, folder / "good.zip"), director.project.to_dict()


def with_project(path: Path, project: dict | bytes, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(path, "w", compression=compression)
    archive.writestr("project.json", project if isinstance(project, bytes) else json.dumps(project))
    return archive


def entry(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = compression
    return info


def big_ratio_bomb(path: Path, project: dict) -> Path:
    """One entry: 1 GiB of zeros, about 1 MiB packed."""
    with with_project(path, project) as archive:
        with archive.open(entry("takes/x/y/clip.mp4", zipfile.ZIP_DEFLATED), "w", force_zip64=True) as sink:
            zeros = b"\0" * (16 * MiB)
            for _ in range(64):
                sink.write(zeros)
    return path


def many_small_bombs(path: Path, project: dict) -> Path:
    """10,000 entries of 200 KiB of zeros: 1.9 GiB, each under the single-entry ratio check's 1 MiB."""
    zeros = b"\0" * (200 * 1024)
    with with_project(path, project) as archive:
        for i in range(10_000):
            archive.writestr(f"takes/x/y{i}/clip.mp4", zeros)
    return path


def many_entries(path: Path, project: dict) -> Path:
    """150,000 empty entries: a central directory zipfile would turn into 150,000 objects."""
    with with_project(path, project, zipfile.ZIP_STORED) as archive:
        for i in range(150_000):
            archive.writestr(f"takes/x/{i}/c", b"")
    return path


def nested_json(path: Path, project: dict) -> Path:
    """project.json nested 100,000 levels deep (about 200 KB)."""
    with with_project(path, b'{"schema_version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        pass
    return path


def huge_project_json(path: Path, project: dict) -> Path:
    """A 30 MiB project.json (stored): under the 32 MiB cap, so it is parsed; 30 MiB of shot notes."""
    with with_project(path, {**project, "notes": ["x" * 1000] * (30 * 1024)}, zipfile.ZIP_STORED):
        pass
    return path


def declared_huge(path: Path, project: dict) -> Path:
    """Eight small stored entries whose central-directory headers declare 3.75 GiB each."""
    with with_project(path, project, zipfile.ZIP_STORED) as archive:
        for i in range(8):
            archive.writestr(f"takes/x/y/{i}.bin", b"small")
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        if raw[at + 46: at + 46 + struct.unpack_from("<H", raw, at + 28)[0]].startswith(b"takes/"):
            struct.pack_into("<I", raw, at + 24, 0xF000_0000)
        at = raw.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(raw))
    return path


def bzip2_bomb(path: Path, project: dict) -> Path:
    """bzip2: 256 MiB of zeros in a few hundred bytes (bzip2 inflates a whole block per read)."""
    with with_project(path, project) as archive:
        with archive.open(entry("takes/x/y/clip.mp4", zipfile.ZIP_BZIP2), "w", force_zip64=True) as sink:
            for _ in range(16):
                sink.write(b"\0" * (16 * MiB))
    return path


CASES = {
    "big-ratio bomb (1 GiB)": big_ratio_bomb,
    "many small bombs (10,000 x 200 KiB)": many_small_bombs,
    "150,000 empty entries": many_entries,
    "JSON nested 100,000 deep": nested_json,
    "30 MiB project.json": huge_project_json,
    "declared 8 x 3.75 GiB": declared_huge,
    "bzip2 bomb (256 MiB)": bzip2_bomb,
}


def import_once(zip_path: Path, sessions: Path) -> dict:
    """One import in this (fresh) process, as the app runs it; its peak RSS over idle."""
    from svi_studio.ui.studio import Studio

    studio = Studio(DraftEngine(), sessions)
    before = set(sessions.rglob("*"))
    with PeakRSS() as rss:
        started = time.perf_counter()
        try:
            result = "imported: " + studio.upload_project(None, str(zip_path)).notice[:60]
        except ProjectError as error:
            result = "refused: " + str(error)[:90]
        seconds = time.perf_counter() - started
    left = sorted(str(p.relative_to(sessions))[:24] for p in set(sessions.rglob("*")) - before)
    if result.startswith("refused") and left:
        result += f"  [left behind: {', '.join(left)}]"
    return {"peak_mb": rss.over_idle_mb, "idle_mb": rss.idle / MiB, "seconds": seconds, "result": result}


def list_once(zip_path: Path) -> dict:
    """For comparison: only listing the zip with zipfile (what an import without the directory check does first)."""
    with PeakRSS() as rss:
        with zipfile.ZipFile(zip_path) as archive:
            count = len(archive.infolist())
    return {"peak_mb": rss.over_idle_mb, "idle_mb": rss.idle / MiB, "seconds": 0.0,
            "result": f"zipfile listed {count:,} entries"}


def in_fresh_process(mode: str, zip_path: Path, sessions: Path) -> dict:
    """Run one measurement in a new interpreter, so memory freed by an earlier case cannot hide a peak."""
    done = subprocess.run([sys.executable, __file__, "--one", mode, str(zip_path), str(sessions)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"peak_mb": float("nan"), "idle_mb": float("nan"), "seconds": float("nan"),
                "result": "CRASHED: " + done.stderr.strip().splitlines()[-1][:100]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="build the zips here (default: a temporary folder)")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "ZIP", "SESSIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, zip_path, sessions = args.one
        measure = import_once(Path(zip_path), Path(sessions)) if mode == "import" else list_once(Path(zip_path))
        print(json.dumps(measure))
        return

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    good, project = good_bundle(work)
    zips = {"good bundle (control)": good}
    for name, build in CASES.items():
        started = time.perf_counter()
        zips[name] = build(work / f"{build.__name__}.zip", project)
        print(f"built {name}: {zips[name].stat().st_size / MiB:.2f} MiB in {time.perf_counter() - started:.1f}s",
              flush=True)
    rows = [(name, "import", path) for name, path in zips.items()]
    rows.append(("  (zipfile only lists 150,000 entries)", "list", zips["150,000 empty entries"]))
    print(f"\neach measurement in a fresh process; median of {args.runs} runs\n")
    print(f"{'case':38} {'zip MiB':>8} {'idle MiB':>9} {'peak over idle MiB':>19} {'seconds':>8}  result")
    worst = 0.0
    for name, mode, path in rows:
        runs = [in_fresh_process(mode, path, work / "app") for _ in range(args.runs)]
        peak = statistics.median(r["peak_mb"] for r in runs)
        if mode == "import" and name != "good bundle (control)":
            worst = max(worst, peak)
        print(f"{name:38} {path.stat().st_size / MiB:8.2f} {statistics.median(r['idle_mb'] for r in runs):9.0f} "
              f"{peak:19.1f} {statistics.median(r['seconds'] for r in runs):8.3f}  {runs[-1]['result']}", flush=True)
    verdict = "OK" if worst <= TARGET_MB else "OVER"
    print(f"\nworst hostile import: {worst:.1f} MiB over idle (target <= {TARGET_MB} MiB): {verdict}")


if __name__ == "__main__":
    main()
