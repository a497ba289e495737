"""Where a clip's time goes on the tiny engine (CPU): inside the transformer(s) or outside.

    python bench/bench_tiny_engine.py [--preset tiny] [--runs 5] [--frames 81] [--threads N]

Each measured run is one SVI cycle: encode the anchor, then render a clip that continues from the
previous clip's motion state (the clip k > 1 path), 81 frames at the preset's size. Time is split by
timers around the modules the pipeline calls (forward hooks on the transformers, text encoder and
CLIP; wrappers around VAE encode/decode and the condition builder). Nested regions count once:
a VAE encode inside the condition builder is booked as VAE, not as conditioning.

`RegionTimer` and `instrument` are reused by bench/gpu_clip.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402
from svi_studio.engines.request import ClipRequest

INSIDE = ("transformer",)
ROWS = ("transformer", "VAE decode", "VAE anchor encode", "VAE condition encode", "text encoding",
        "CLIP image encoding", "conditioning", "other")


class RegionTimer:
    """Exclusive wall time per named region: time spent in a nested region is taken off its parent.

    sync: called at every region edge (torch.cuda.synchronize on a GPU, so kernels are booked
    where they run, not where they were queued).
    """

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync or (lambda: None)
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [name, start, time spent in children]

    def reset(self) -> None:
        self.totals.clear()
        self._stack.clear()

    @property
    def current(self) -> str | None:
        return self._stack[-1][0] if self._stack else None

    def enter(self, name: str) -> None:
        self.sync()
        self._stack.append([name, time.perf_counter(), 0.0])

    def exit(self) -> None:
        self.sync()
        name, start, children = self._stack.pop()
        elapsed = time.perf_counter() - start
        self.totals[name] += elapsed - children
        if self._stack:
            self._stack[-1][2] += elapsed

    @contextmanager
    def region(self, name: str):
        self.enter(name)
        try:
            yield
        finally:
            self.exit()

    def wrap(self, owner, attribute: str, name: str | Callable[[], str]) -> None:
        """Time every call of owner.attribute (patched on the instance)."""
        function = getattr(owner, attribute)

        def timed(*args, **kwargs):
            with self.region(name() if callable(name) else name):
                return function(*args, **kwargs)

        setattr(owner, attribute, timed)

    def hook(self, module: torch.nn.Module, name: str) -> None:
        """Time every forward of `module` with forward (pre-)hooks."""
        module.register_forward_pre_hook(lambda mod, args: self.enter(name))
        module.register_forward_hook(lambda mod, args, output: self.exit())


def instrument(engine, timer: RegionTimer) -> None:
    """Put timers around everything a clip runs through (see ROWS)."""
    pipe = engine.pipe
    for attribute in ("transformer", "transformer_2"):
        if getattr(pipe, attribute, None) is not None:
            timer.hook(getattr(pipe, attribute), "transformer")
    timer.hook(pipe.text_encoder, "text encoding")
    if getattr(pipe, "image_encoder", None) is not None:
        timer.hook(pipe.image_encoder, "CLIP image encoding")
    timer.wrap(pipe.vae, "decode", "VAE decode")
    timer.wrap(pipe.vae, "encode",
               lambda: "VAE anchor encode" if timer.current == "anchor" else "VAE condition encode")
    timer.wrap(pipe, "prepare_latents", "conditioning")
    timer.wrap(engine, "encode_anchor", "anchor")  # its own non-VAE work (resize, preprocess) lands in "other"


def table(runs: list[dict[str, float]], steps: int) -> str:
    """Mean seconds and share of the clip per row, plus the inside/outside split."""
    mean = {row: statistics.fmean(run.get(row, 0.0) for run in runs) for row in ROWS}
    total = statistics.fmean(run["total"] for run in runs)
    lines = [f"{'region':<24}{'mean s':>10}{'share':>9}"]
    for row in ROWS:
        if mean[row] > 0:
            lines.append(f"{row:<24}{mean[row]:>10.3f}{mean[row] / total:>9.1%}")
    inside = sum(mean[row] for row in INSIDE)
    lines.append(f"{'inside transformer(s)':<24}{inside:>10.3f}{inside / total:>9.1%}")
    lines.append(f"{'outside':<24}{total - inside:>10.3f}{(total - inside) / total:>9.1%}")
    lines.append(f"{'transformer s/step':<24}{inside / steps:>10.3f}")
    return "\n".join(lines)


def collect(timer: RegionTimer, total: float) -> dict[str, float]:
    """One run's rows; 'other' is whatever no timer claimed (scheduler, copies, PIL, Python)."""
    run: dict[str, float] = defaultdict(float)
    for name, seconds in timer.totals.items():
        run["other" if name in ("generate", "anchor") else name] += seconds
    run["total"] = total
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="tiny (SVI Pro, two experts), tiny-film or tiny-shot")
    parser.add_argument("--runs", type=int, default=5, help="measured clips (the median is reported)")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from svi_studio.engines import load_engine
    from svi_studio.engines.wan import tiny_settings
    from tests.conftest import make_reference

    engine = load_engine(args.preset)
    settings = tiny_settings(engine, num_frames=args.frames)
    timer = RegionTimer()
    instrument(engine, timer)
    reference = make_reference()

    def cycle(motion, seed):
        with timer.region("generate"):
            anchor = engine.encode_anchor(reference, settings)
            return engine.generate_clip(ClipRequest(anchor, motion, "a paper boat drifts down a gutter", "", seed, settings))

    clip = cycle(None, 0)  # warm-up, and the motion state the measured clips continue from
    runs = []
    for index in range(args.runs):
        timer.reset()
        start = time.perf_counter()
        clip = cycle(clip.motion_out, index + 1)
        runs.append(collect(timer, time.perf_counter() - start))

    totals = sorted(run["total"] for run in runs)
    print(f"tiny engine bench: preset {engine.preset_id} ({engine.svi_mode}), {settings.num_frames} frames at "
          f"{settings.width}x{settings.height}, {settings.steps} steps, guidance {settings.guidance}, "
          f"CPU, {torch.get_num_threads()} threads, {args.runs} runs")
    print(f"seconds per clip: median {statistics.median(totals):.3f} (min {totals[0]:.3f}, max {totals[-1]:.3f})")
    print(table(runs, settings.steps))
    print(explain(runs))


def explain(runs: list[dict[str, float]]) -> str:
    """One line: how big the outside share is and what it is made of."""
    total = statistics.fmean(run["total"] for run in runs)
    outside = {row: statistics.fmean(run.get(row, 0.0) for run in runs) / total for row in ROWS if row not in INSIDE}
    top = ", ".join(f"{row} {share:.0%}" for row, share in sorted(outside.items(), key=lambda kv: -kv[1])[:3])
    return (f"outside the transformer(s) = {sum(outside.values()):.0%} of the clip (largest: {top}): VAE work, "
            "UMT5 text encoding, building the condition, scheduler steps and copies. For these tiny models the VAE "
            "and text encoder dominate; at full size (a 14B transformer run once per step) the transformer does.")


if __name__ == "__main__":
    main()
