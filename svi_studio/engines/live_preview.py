"""Live preview of a clip while it samples: a linear latent → RGB projection, no VAE decode per step.

What the wan engines' step callback can see. diffusers' `callback_on_step_end(pipe, i, t, kwargs)`
runs after `scheduler.step`, so `kwargs["latents"]` is x at the *next* noise level σ' (normalised,
fp32, [B, 16, T', H/8, W/8]); with `"noise_pred"` in `callback_on_step_end_tensor_inputs` (our
`SVIWanImageToVideoPipeline` allows it) it also gets v, the guided flow prediction of this step, from
whichever expert ran it (Wan2.2's high- or low-noise transformer: the latents they share are one
tensor, so the two-expert case needs nothing special). The previous x is gone by then, but for
flow matching

    x0 = x − σ·v,  the same at both ends of an Euler step x' = x_t + (σ' − σ_t)·v:  x_t − σ_t·v = x' − σ'·v

so `predicted_x0(x', v, σ')` with σ' = `scheduler.sigmas[scheduler.step_index]` (the index has already
moved on) is exact for Euler (the SVI sampler) and for UniPC's first-order steps, and close for
UniPC's higher-order ones. After the last step σ' = 0, so the last preview is the clip's own
latents. Early on x' is mostly noise while x0 is already a blurry picture — the same choice as
ComfyUI, whose previews project the denoised prediction.

The projection. A Wan 2.1 VAE latent (also Wan2.2-A14B's: same VAE) maps to RGB approximately by one
linear map per pixel: rgb = z · F + b, F (16, 3), b (3,), with z the normalised latent
((raw − mean) / std, what the pipeline samples). The factors below are public facts, fitted by
the ComfyUI authors: `comfy/latent_formats.py`, class `Wan21`, `latent_rgb_factors` and
`latent_rgb_factors_bias` (github.com/comfyanonymous/ComfyUI); Wan2GP uses the same numbers. The
result is clamped to [-1, 1] and mapped to 0..255. One latent pixel stands for 8×8 pixels and one
latent frame for 4 frames (frame 0 alone), so a preview is small: upscale it for display (nearest,
×8) or let the page do it.

How engines deliver it. `on_step(step, total)` stays what it was; a caller that also wants previews
passes a `PreviewingStepCallback` as on_step (nothing else changes: no engine signature, no call
site). The engine then builds a `LivePreviewer` for the clip, which emits a `LivePreview` every
`every` steps while the previews' own time stays within `budget` of the clip's time so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

#: F (16, 3): Wan 2.1 normalised latent channel → (R, G, B) in [-1, 1]. ComfyUI latent_formats.Wan21.
WAN21_LATENT_RGB_FACTORS = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
#: b (3,): the bias of the same fit.
WAN21_LATENT_RGB_BIAS = (-0.1835, -0.0868, -0.3360)

#: what the wan engine asks the pipeline to hand its step callback.
PREVIEW_TENSOR_INPUTS = ["latents", "noise_pred"]
#: pixel frames per latent frame after the first (Wan's VAE compresses time 4×).
FRAMES_PER_LATENT = 4


# -- the projection ------------------------------------------------------------------------------


def project_latents(latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [16, T, h, w] (or [B, 16, T, h, w]: item 0) → RGB [T, h, w, 3], float32,
    unclamped (about [-1, 1]); rgb = z · F + b per latent pixel."""
    if latents.ndim == 5:
        latents = latents[0]
    if latents.ndim != 4 or latents.shape[0] != len(WAN21_LATENT_RGB_FACTORS):
        raise ValueError(f"expected Wan latents [B, 16, T, h, w] or [16, T, h, w], got {tuple(latents.shape)}")
    factors = torch.tensor(WAN21_LATENT_RGB_FACTORS, dtype=torch.float32, device=latents.device)
    bias = torch.tensor(WAN21_LATENT_RGB_BIAS, dtype=torch.float32, device=latents.device)
    return torch.einsum("cthw,cr->thwr", latents.float(), factors) + bias


def rgb_to_uint8(rgb: torch.Tensor, upscale: int = 1) -> np.ndarray:
    """RGB [T, h, w, 3] in about [-1, 1] → uint8 [T, h·upscale, w·upscale, 3] (clamped; nearest upscale)."""
    pixels = ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    if upscale > 1:
        pixels = pixels.repeat_interleave(upscale, dim=1).repeat_interleave(upscale, dim=2)
    return pixels.cpu().numpy()


def latents_to_rgb(latents: torch.Tensor, upscale: int = 1) -> np.ndarray:
    """Normalised Wan latents [B, 16, T, H/8, W/8] → uint8 frames [T, H/8·upscale, W/8·upscale, 3]
    (batch item 0). upscale=8 gives display size, nearest neighbour."""
    return rgb_to_uint8(project_latents(latents), upscale)


def predicted_x0(latents: torch.Tensor, flow: torch.Tensor, sigma: float) -> torch.Tensor:
    """The clean latents the model predicts: x0 = x − σ·v (float32, shape of `latents`).

    latents: x at noise level σ; flow: the transformer's flow prediction v (ε − x0) for it.
    In a step callback, x and σ may be the post-step ones (see the module docstring).
    """
    return latents.float() - float(sigma) * flow.float()


def strip_indices(count: int, strip: int | None) -> list[int]:
    """`strip` indices spread evenly over range(count), first and last included (all when None)."""
    if strip is None or strip >= count:
        return list(range(count))
    if strip <= 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (strip - 1)) for i in range(strip)})


def latent_to_pixel_frame(index: int) -> int:
    """The clip frame a latent frame ends at: latent 0 is frame 0, latent k covers frames 4k−3 … 4k."""
    return FRAMES_PER_LATENT * index


# -- the event and its producer --------------------------------------------------------------------


@dataclass
class LivePreview:
    """A look at the clip while it forms.

    step, total_steps: 1-based progress of the clip (as on_step gets it).
    frames: uint8 (N, h, w, 3), a small strip of the clip: for the wan engines the latent projection
        at latent size (H/8, W/8, times `upscale`), for the draft engine real frames.
    frame_indices: the clip frame each of `frames` shows (N ints).
    source: "x0" (predicted clean latents), "latents" (the noisy latents, when v was not given),
        or "frames" (the draft engine's rendered frames).
    """

    step: int
    total_steps: int
    frames: np.ndarray
    frame_indices: list[int]
    source: str


PreviewSink = Callable[[LivePreview], None]


@dataclass
class PreviewingStepCallback:
    """An on_step callback that also asks for live previews; pass it wherever an engine takes on_step.

    on_step(step, total): the plain progress callback (optional).
    on_preview(LivePreview): receives the previews.
    every: a preview every `every` steps (the last step always qualifies).
    budget: the previews' share of the clip's wall time not to exceed (0.05 = 5 %); None: no limit.
    strip: how many frames a preview holds, spread over the clip (None: every latent frame).
    upscale: nearest-neighbour factor for the wan projection (8 = pixel size).
    """

    on_preview: PreviewSink
    on_step: Callable[[int, int], None] | None = None
    every: int = 1
    budget: float | None = 0.05
    strip: int | None = 4
    upscale: int = 1

    def __call__(self, step: int, total: int) -> None:
        if self.on_step is not None:
            self.on_step(step, total)


@dataclass
class LivePreviewer:
    """Makes one clip's previews and hands them to `sink`, within the step and time budget.

    Time budget: a preview is skipped while the time spent making previews so far exceeds
    `budget` × the clip's wall time so far (measured from this object's creation), so a slow
    machine or a heavy preview never costs more than about that share of the render.
    """

    sink: PreviewSink
    every: int = 1
    budget: float | None = 0.05
    strip: int | None = 4
    upscale: int = 1
    clock: Callable[[], float] = time.perf_counter
    spent: float = field(default=0.0, init=False)  # seconds spent making previews (and in the sink)
    emitted: int = field(default=0, init=False)
    skipped: int = field(default=0, init=False)  # due previews left out to stay within the budget
    started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("every must be at least 1 step.")
        self.started = self.clock()

    @classmethod
    def for_callback(cls, on_step: Any) -> "LivePreviewer | None":
        """A previewer when `on_step` is a `PreviewingStepCallback`, else None (no previews, no cost)."""
        if not isinstance(on_step, PreviewingStepCallback):
            return None
        return cls(on_step.on_preview, every=on_step.every, budget=on_step.budget, strip=on_step.strip,
                   upscale=on_step.upscale)

    def offer(self, step: int, total: int, make: Callable[[], LivePreview]) -> bool:
        """Call make() and hand its preview to the sink if this step is due and the budget allows."""
        if step % self.every != 0 and step != total:
            return False
        began = self.clock()
        if self.budget is not None and self.spent > self.budget * (began - self.started):
            self.skipped += 1
            return False
        self.sink(make())
        self.spent += self.clock() - began
        self.emitted += 1
        return True

    def wan_step(self, pipe, step: int, total: int, callback_kwargs: dict[str, torch.Tensor]) -> bool:
        """From a diffusers step callback (after step `step`, 1-based): the x0 projection when the
        callback got "noise_pred", else the projection of the noisy latents."""

        def make() -> LivePreview:
            latents = callback_kwargs["latents"]  # [B, 16, T', h, w], x at σ' (after the step)
            picked = strip_indices(latents.shape[2], self.strip)
            index = torch.tensor(picked, device=latents.device)
            chosen = latents[:1].index_select(2, index)
            flow = callback_kwargs.get("noise_pred")
            source = "latents"
            if flow is not None:
                sigma = pipe.scheduler.sigmas[pipe.scheduler.step_index]  # σ' after the step
                chosen = predicted_x0(chosen, flow[:1].index_select(2, index.to(flow.device)), sigma)
                source = "x0"
            return LivePreview(step, total, latents_to_rgb(chosen, self.upscale),
                               [latent_to_pixel_frame(k) for k in picked], source)

        return self.offer(step, total, make)

    def frames_step(self, step: int, total: int, frames: np.ndarray, done: int) -> bool:
        """For engines that render frames directly (draft): a strip of frames[:done] (T, H, W, 3)."""

        def make() -> LivePreview:
            picked = strip_indices(done, self.strip)
            return LivePreview(step, total, frames[picked], picked, "frames")  # fancy indexing copies

        return self.offer(step, total, make)
