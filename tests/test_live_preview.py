"""Live preview: the latent → RGB projection (shape, linearity, a hand computation, colours back
through the factors' pseudo-inverse), x0 from a post-step callback, the time budget, and the
previews the tiny wan engine and the draft engine hand out while the clip renders unchanged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from svi_studio.engines.draft import CHUNK_FRAMES, DraftEngine
from svi_studio.engines.live_preview import (
    WAN21_LATENT_RGB_BIAS,
    WAN21_LATENT_RGB_FACTORS,
    LivePreview,
    LivePreviewer,
    PreviewingStepCallback,
    latents_to_rgb,
    predicted_x0,
    project_latents,
    strip_indices,
)
from svi_studio.engines.request import ClipRequest
from svi_studio.engines.schedulers import WanFlowMatchEulerScheduler
from svi_studio.engines.wan import tiny_settings

FACTORS = torch.tensor(WAN21_LATENT_RGB_FACTORS, dtype=torch.float64)  # (16, 3)
BIAS = torch.tensor(WAN21_LATENT_RGB_BIAS, dtype=torch.float64)


# -- the projection --------------------------------------------------------------------------


def test_projection_shape_dtype_range_and_upscale():
    latents = torch.randn(1, 16, 5, 6, 7, generator=torch.Generator().manual_seed(0)) * 4  # far outside [-1, 1]
    frames = latents_to_rgb(latents)
    assert frames.shape == (5, 6, 7, 3) and frames.dtype == np.uint8
    assert frames.min() == 0 and frames.max() == 255  # clamped, not wrapped
    big = latents_to_rgb(latents, upscale=8)
    assert big.shape == (5, 48, 56, 3)
    assert np.array_equal(big[:, ::8, ::8], frames) and np.array_equal(big[:, 7::8, 7::8], frames)  # nearest


def test_projection_refuses_latents_of_another_model():
    with pytest.raises(ValueError, match="16"):
        latents_to_rgb(torch.zeros(1, 4, 2, 3, 3))  # an SD-style 4-channel latent


def test_projection_is_affine_in_the_latent():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 4, 4, generator=gen), torch.randn(16, 3, 4, 4, generator=gen)
    bias = BIAS.float()
    linear = lambda z: project_latents(z) - bias  # noqa: E731
    assert torch.allclose(linear(2.5 * x - 0.75 * y), 2.5 * linear(x) - 0.75 * linear(y), atol=1e-5)
    assert torch.allclose(project_latents(torch.zeros(16, 1, 1, 1)).reshape(3), bias)


def test_projection_matches_a_hand_computation():
    latents = torch.zeros(1, 16, 2, 2, 3)
    latents[0, 2, 0, 0, 0] = 1.0           # frame 0, pixel (0, 0): channel 2 only
    latents[0, 6, 1, 1, 2] = -1.5          # frame 1, pixel (1, 2): channel 6
    latents[0, 14, 1, 1, 2] = 0.5          # … plus channel 14
    frames = latents_to_rgb(latents)

    def by_hand(rgb):  # clamp to [-1, 1], map to 0..255, per channel
        return [round((min(1.0, max(-1.0, value)) + 1) * 127.5) for value in rgb]

    bias = list(WAN21_LATENT_RGB_BIAS)
    pixel_a = [bias[i] + 1.0 * WAN21_LATENT_RGB_FACTORS[2][i] for i in range(3)]
    pixel_b = [bias[i] - 1.5 * WAN21_LATENT_RGB_FACTORS[6][i] + 0.5 * WAN21_LATENT_RGB_FACTORS[14][i] for i in range(3)]
    assert frames[0, 0, 0].tolist() == by_hand(pixel_a)
    assert frames[1, 1, 2].tolist() == by_hand(pixel_b)
    assert frames[0, 1, 1].tolist() == by_hand(bias)  # a zero latent is the bias colour


@pytest.mark.parametrize("colour", [(230, 120, 30), (20, 60, 200), (128, 128, 128), (250, 240, 230)])
def test_solid_colour_latent_from_the_pseudo_inverse_projects_back(colour):
    target = torch.tensor(colour, dtype=torch.float64) / 127.5 - 1.0          # in [-1, 1]
    z = (target - BIAS) @ torch.linalg.pinv(FACTORS)                           # (16,): z · F + b = target
    latents = z.float().reshape(1, 16, 1, 1, 1).expand(1, 16, 3, 4, 5)
    frames = latents_to_rgb(latents)
    assert np.abs(frames.astype(int) - np.array(colour)).max() <= 1


def test_strip_spreads_over_the_clip_and_keeps_its_ends():
    assert strip_indices(21, 4) == [0, 7, 13, 20]
    assert strip_indices(3, 4) == [0, 1, 2]
    assert strip_indices(21, None) == list(range(21))
    assert strip_indices(21, 1) == [10]


# -- x0 from a step callback -----------------------------------------------------------------


def test_post_step_x0_equals_pre_step_x0_for_the_euler_sampler():
    """The callback only sees x after the step; x' − σ'·v must equal x_t − σ_t·v (module docstring)."""
    scheduler = WanFlowMatchEulerScheduler(shift=5.0)
    scheduler.set_timesteps(4)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 3, 4, 4, generator=gen)
    for t in scheduler.timesteps:
        v = torch.randn(x.shape, generator=gen)
        sigma_before = float(scheduler.sigmas[scheduler.step_index or 0])
        x0_before = predicted_x0(x, v, sigma_before)
        x = scheduler.step(v, t, x, return_dict=False)[0]
        x0_after = predicted_x0(x, v, scheduler.sigmas[scheduler.step_index])
        assert torch.allclose(x0_after, x0_before, atol=1e-5)
    assert float(scheduler.sigmas[scheduler.step_index]) == 0.0  # after the last step x0 is x itself


# -- the time budget -------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_skips_previews_while_they_cost_more_than_their_share():
    clock = FakeClock()
    got: list[LivePreview] = []

    def slow_sink(preview):  # each preview costs 1 s
        got.append(preview)
        clock.now += 1.0

    previewer = LivePreviewer(slow_sink, budget=0.25, clock=clock)
    make = lambda: LivePreview(0, 0, np.zeros((1, 1, 1, 3), np.uint8), [0], "frames")  # noqa: E731
    shown = []
    for step in range(1, 13):
        clock.now += 1.0  # each sampling step costs 1 s
        shown.append(previewer.offer(step, 12, make))
    assert sum(shown) == previewer.emitted == len(got)
    assert previewer.skipped == 12 - previewer.emitted > 0
    assert previewer.spent <= 0.25 * clock.now + 1.0  # at most one preview over the share
    assert shown[0]  # the first step always gets one


def test_every_n_steps_and_the_last():
    previewer = LivePreviewer(lambda preview: None, every=3, budget=None)
    make = lambda: LivePreview(0, 0, np.zeros((1, 1, 1, 3), np.uint8), [0], "frames")  # noqa: E731
    assert [step for step in range(1, 8) if previewer.offer(step, 7, make)] == [3, 6, 7]


# -- engines ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
def test_tiny_engine_previews_every_step_and_leaves_the_clip_bit_identical(tiny_engine, reference_image):
    settings = tiny_settings(tiny_engine, steps=3, num_frames=13)
    anchor = tiny_engine.encode_anchor(reference_image, settings)
    steps_seen: list[tuple[int, int]] = []
    previews: list[LivePreview] = []
    callback = PreviewingStepCallback(on_preview=previews.append, on_step=lambda s, n: steps_seen.append((s, n)),
                                      budget=None, strip=None)
    with_preview = tiny_engine.generate_clip(ClipRequest(anchor, None, "a red fox runs", "", 5, settings), on_step=callback)
    plain = tiny_engine.generate_clip(ClipRequest(anchor, None, "a red fox runs", "", 5, settings))

    assert steps_seen == [(1, 3), (2, 3), (3, 3)]  # the plain on_step still gets every step
    assert [(p.step, p.total_steps, p.source) for p in previews] == [(1, 3, "x0"), (2, 3, "x0"), (3, 3, "x0")]
    latent_frames, height, width = plain.latents.shape[2:]
    for preview in previews:
        assert preview.frames.shape == (latent_frames, height, width, 3) and preview.frames.dtype == np.uint8
        assert preview.frame_indices == [4 * k for k in range(latent_frames)]
    assert not np.array_equal(previews[0].frames, previews[-1].frames)  # it changes as the clip forms
    # after the last step σ = 0: the last preview is exactly the projection of the clip's latents
    assert np.array_equal(previews[-1].frames, latents_to_rgb(plain.latents))
    assert np.array_equal(with_preview.frames, plain.frames)
    assert torch.equal(with_preview.latents, plain.latents)
    assert torch.equal(with_preview.motion_out.tensors["motion_latents"], plain.motion_out.tensors["motion_latents"])


def test_draft_previews_are_the_clips_own_frames(reference_image):
    engine = DraftEngine(caption=False, tag=False)
    settings = replace(engine.default_settings(), width=128, height=80, num_frames=33)
    anchor = engine.encode_anchor(reference_image, settings)
    previews: list[LivePreview] = []
    callback = PreviewingStepCallback(on_preview=previews.append, budget=None, strip=3)
    clip = engine.generate_clip(ClipRequest(anchor, None, "slow push in", "", 4, settings), on_step=callback)
    plain = engine.generate_clip(ClipRequest(anchor, None, "slow push in", "", 4, settings))

    chunks = -(-settings.num_frames // CHUNK_FRAMES)
    assert [p.step for p in previews] == list(range(1, chunks + 1))
    assert previews[0].frame_indices == [0, 4, 7]  # the first chunk: frames 0..7
    assert previews[-1].frame_indices == [0, 16, 32]
    for preview in previews:
        assert preview.source == "frames"
        assert np.array_equal(preview.frames, clip.frames[preview.frame_indices])
    assert np.array_equal(clip.frames, plain.frames)


def test_a_plain_on_step_gets_no_previewer():
    assert LivePreviewer.for_callback(lambda step, total: None) is None
    assert LivePreviewer.for_callback(None) is None
