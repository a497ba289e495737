"""Bench the memory of opening references: concurrent uploads of a 40 MP float TIFF.

    python bench/bench_reference_memory.py [--uploads 8] [--megapixels 40] [--rounds 3]

Writes a float32 ('F' mode) TIFF of the given size (values 0..1, with a NaN row), then,
per round, starts a fresh Python process that runs `--uploads` calls of
`reference.load_reference` at once in threads (what the Gradio server does with that many
concurrent uploads) while a thread samples the process's RSS every 5 ms. Each round is
run twice side by side: as shipped (at most reference.LARGE_DECODES_AT_ONCE large decodes
at a time) and with that bound lifted (every upload decodes at once). Prints, per round
and as medians: the peak RSS over idle (RSS just before the uploads) and the RSS over idle
once the results are dropped. Target: the peak stays under ~2 GB over idle and memory
returns afterwards.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svi_studio import reference  # noqa: E402

MB = 1024**2
TARGET_PEAK_MB = 2048


def write_float_tiff(path: Path, megapixels: float) -> tuple[int, int]:
    """A float32 TIFF of about `megapixels` (4:3), a smooth ramp in 0..1 with a NaN row; written in one go."""
    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    width = int(megapixels * 1e6 // height)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)
    pixels = np.broadcast_to(ramp, (height, width)).copy()
    pixels[height // 2] = np.nan
    Image.fromarray(pixels).save(path, format="TIFF")
    del pixels
    return width, height


class PeakSampler:
    """Samples this process's RSS in a thread until stopped; `peak` is the largest seen."""

    def __init__(self, interval: float = 0.005):
        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def one_round(path: Path, uploads: int) -> tuple[float, float, float]:
    """(peak over idle MB, after over idle MB, seconds) for `uploads` concurrent load_reference calls."""
    gc.collect()
    idle = psutil.Process().memory_info().rss
    results: list = [None] * uploads
    errors: list[BaseException] = []

    def upload(slot: int) -> None:
        try:
            image, _ = reference.load_reference(path)
            results[slot] = image.size
        except BaseException as error:  # reported below; the bench must not hide a failure
            errors.append(error)

    started = time.perf_counter()
    with PeakSampler() as sampler:
        threads = [threading.Thread(target=upload, args=(slot,)) for slot in range(uploads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    assert all(results), "every upload returns a picture"
    gc.collect()
    after = psutil.Process().memory_info().rss
    return (sampler.peak - idle) / MB, (after - idle) / MB, seconds


def child(path: Path, uploads: int, bounded: bool) -> None:
    """One round in this (fresh) process; prints its figures as JSON."""
    if not bounded:
        reference._LARGE_DECODES = threading.BoundedSemaphore(uploads)
    peak, after, seconds = one_round(path, uploads)
    print(json.dumps({"peak": peak, "after": after, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--megapixels", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "BOUNDED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.uploads, args.child[1] == "1")
        return

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reference-float.tif"
        width, height = write_float_tiff(path, args.megapixels)
        print(f"{args.uploads} concurrent load_reference calls of a {width}x{height} float32 TIFF "
              f"({width * height / 1e6:.1f} MP, {path.stat().st_size / MB:.0f} MB file), one fresh process per round")
        figures: dict[str, list[dict]] = {"as shipped": [], "unbounded": []}
        for round_index in range(args.rounds):
            for name, bounded in (("as shipped", True), ("unbounded", False)):
                result = subprocess.run([sys.executable, __file__, "--uploads", str(args.uploads),
                                         "--child", str(path), "1" if bounded else "0"],
                                        capture_output=True, text=True, check=True, env=os.environ.copy())
                figure = json.loads(result.stdout.strip().splitlines()[-1])
                figures[name].append(figure)
                print(f"  round {round_index + 1}, {name:10}: peak RSS over idle {figure['peak']:6.0f} MB, "
                      f"after {figure['after']:5.0f} MB, {figure['seconds']:.1f} s")
        for name, rows in figures.items():
            peak = statistics.median(row["peak"] for row in rows)
            after = statistics.median(row["after"] for row in rows)
            verdict = "OK" if peak < TARGET_PEAK_MB else "OVER TARGET"
            print(f"{name:10}: median peak RSS over idle {peak:6.0f} MB (target < {TARGET_PEAK_MB} MB: {verdict}), "
                  f"median RSS after, over idle {after:5.0f} MB")


if __name__ == "__main__":
    main()
