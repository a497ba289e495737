"""What a live preview costs per sampling step on the tiny engine, and why it projects instead of decoding.

    python bench/bench_live_preview.py [--preset tiny] [--runs 5] [--steps 8] [--frames 81] [--threads 1]

One run renders the same clip twice, interleaved: with a plain on_step, and with a
`PreviewingStepCallback` (a preview at every step, no time budget: the worst case). A step's time is
the time between two consecutive on_step calls (step 2 onward), so in the preview run it includes
the previous step's preview. Printed side by side:

- median step time without / with the preview, and their ratio;
- the median time of one preview itself (x0, projection, strip copy) and its share of a plain step
  (the target is < 5 %);
- for comparison, one latent frame through the tiny VAE decoder vs. through the projection.

The tiny models are tiny, so a step is short and this share is pessimistic: on the real 14B models a
step takes seconds while the projection's cost grows only with the latent size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402


def median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def timed(function, repeats: int) -> list[float]:
    durations = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        durations.append(time.perf_counter() - began)
    return durations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="tiny (SVI Pro, two experts), tiny-film or tiny-shot")
    parser.add_argument("--runs", type=int, default=5, help="clip pairs (plain, preview), interleaved")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--strip", type=int, default=4, help="frames per preview (0: every latent frame)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from svi_studio.engines import load_engine
    from svi_studio.engines.request import ClipRequest
    from svi_studio.engines.live_preview import LivePreviewer, PreviewingStepCallback, latents_to_rgb
    from tests.conftest import make_reference

    engine = load_engine(args.preset)
    settings = replace(engine.default_settings(), steps=args.steps, num_frames=args.frames)
    anchor = engine.encode_anchor(make_reference(), settings)

    # Time each preview where the engine makes it (bench-only instrumentation).
    preview_times: list[float] = []
    make_preview = LivePreviewer.wan_step

    def timed_wan_step(self, *call_args):
        began = time.perf_counter()
        emitted = make_preview(self, *call_args)
        preview_times.append(time.perf_counter() - began)
        return emitted

    LivePreviewer.wan_step = timed_wan_step

    def render(with_preview: bool, seed: int) -> tuple[list[float], torch.Tensor]:
        stamps: list[float] = []
        on_step = lambda step, total: stamps.append(time.perf_counter())  # noqa: E731
        if with_preview:
            on_step = PreviewingStepCallback(on_preview=lambda preview: None, on_step=on_step, budget=None,
                                             strip=args.strip or None)
        clip = engine.generate_clip(ClipRequest(anchor, None, "a red fox runs through snow", "", seed, settings), on_step=on_step)
        return [later - earlier for earlier, later in zip(stamps, stamps[1:])], clip.latents

    render(False, 0), render(True, 0)  # warm-up
    preview_times.clear()
    plain_steps: list[float] = []
    preview_steps: list[float] = []
    for run in range(args.runs):
        steps, latents = render(False, run)
        plain_steps += steps
        steps, _ = render(True, run)
        preview_steps += steps

    # One latent frame: VAE decode vs. projection (the decode is what a preview would cost without the factors).
    one_frame = latents[:, :, :1]
    with torch.no_grad():
        decode_times = timed(lambda: engine.pipe.decode_normalised(one_frame), 5)
    project_times = timed(lambda: latents_to_rgb(one_frame, upscale=8), 50)
    all_frames_times = timed(lambda: latents_to_rgb(latents, upscale=8), 20)

    plain, with_preview = median_ms(plain_steps), median_ms(preview_steps)
    preview = median_ms(preview_times)
    latent_shape = "×".join(str(size) for size in latents.shape[1:])
    print(f"tiny live preview bench: preset {args.preset}, {settings.width}x{settings.height}, {args.frames} frames "
          f"(latents {latent_shape}), {args.steps} steps, {args.runs} runs, {args.threads} torch thread(s), "
          f"strip {args.strip or 'all'} frames, x0 every step, no budget")
    print(f"{'':44} {'median ms':>10}")
    print(f"{'step, plain on_step':44} {plain:10.2f}")
    print(f"{'step, with live preview':44} {with_preview:10.2f}   ratio {with_preview / plain:.3f}")
    print(f"{'one preview (x0 + projection + strip)':44} {preview:10.3f}   {100 * preview / plain:.2f} % of a plain step "
          f"(target < 5 %)")
    print(f"{'projection of 1 latent frame, ×8 upscale':44} {median_ms(project_times):10.3f}")
    print(f"{'projection of all latent frames, ×8 upscale':44} {median_ms(all_frames_times):10.3f}")
    print(f"{'tiny VAE decode of 1 latent frame':44} {median_ms(decode_times):10.3f}   "
          f"{median_ms(decode_times) / median_ms(project_times):.0f}× the projection, "
          f"{100 * median_ms(decode_times) / plain:.0f} % of a plain step")


if __name__ == "__main__":
    main()
