"""Samplers for the wan engine: Wan's flow-match Euler (the SVI authors' sampler) and UniPC.

Upstream SVI (1.0 and 2.0 Pro) samples with DiffSynth's `FlowMatchScheduler(shift=5, sigma_min=0,
extra_one_step=True)`: for n steps

    sigmas     = linspace(1, 0, n + 1)[:-1]
    sigmas     = shift · σ / (1 + (shift − 1) · σ)
    timesteps  = sigmas · 1000
    x_{i+1}    = x_i + (σ_{i+1} − σ_i) · v_i          (σ_n = 0)

`WanFlowMatchEulerScheduler` is diffusers' FlowMatchEulerDiscreteScheduler (static shift, no dynamic
shifting) fed exactly those unshifted sigmas, so it reproduces that schedule step for step; with
shift 5 and 4 steps it gives 1000, 937.5, 833.3, 625 — the schedule step-distill (Lightning /
lightx2v) LoRAs are trained for. UniPC in flow mode stays available ("unipc") for comparison.
"""

from __future__ import annotations

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

SCHEDULERS = ("euler", "unipc")


class WanFlowMatchEulerScheduler(FlowMatchEulerDiscreteScheduler):
    """Flow-match Euler with Wan's step spacing: n steps use sigmas linspace(1, 0, n + 1)[:-1], then the shift.

    That is how the Wan authors, DiffSynth (SVI) and lightx2v sample. diffusers' own
    FlowMatchEulerDiscreteScheduler spaces timesteps between the shifted sigma_max and sigma_min
    instead (1000, 909.7, 717.3, 24.4 for 4 steps), which wrecks a 4-step distill.
    Explicit `sigmas` or `timesteps` pass through unchanged.
    """

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        if sigmas is None and timesteps is None and num_inference_steps:
            sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1].tolist()
        super().set_timesteps(num_inference_steps=num_inference_steps, device=device, sigmas=sigmas, mu=mu,
                              timesteps=timesteps)


def make_scheduler(kind: str, config, flow_shift: float):
    """The sampler a preset names, from a scheduler config, with Wan's step spacing.

    "euler": `WanFlowMatchEulerScheduler` (4 steps at shift 5 → timesteps 1000, 937.5, 833.3, 625;
        static shift, whatever the config says about dynamic shifting).
    "unipc": UniPC in flow mode (4 steps at shift 5 → 999, 937, 833, 625).
    """
    if kind == "euler":
        return WanFlowMatchEulerScheduler.from_config(config, shift=flow_shift, use_dynamic_shifting=False)
    if kind == "unipc":
        return UniPCMultistepScheduler.from_config(config, flow_shift=flow_shift)
    raise ValueError(f"unknown scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}.")
