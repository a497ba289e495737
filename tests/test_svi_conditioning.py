"""SVI conditioning as the transformer sees it.

Every check reads the tensors at the transformer's input (forward pre-hooks on
`transformer` / `transformer_2`) and compares them with values computed here from the
clips' own outputs, never by calling the engine's condition helpers again.

hidden_states at the transformer input: (B, 36, T', h, w) = [noise 16 | mask 4 | condition 16].
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

from svi_studio.engines import load_engine
from svi_studio.engines.presets import load_preset
from svi_studio.engines.wan import load_wan_engine, make_scheduler, tiny_settings
from svi_studio.engines.request import ClipRequest

FRAMES = 21  # 6 latent frames: room for anchor + 3 motion latents + zeros


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextmanager
def transformer_inputs(pipe):
    """Yield a list that fills with one dict per transformer call:
    {"expert": "transformer" | "transformer_2", "hidden": (B, 36, T', h, w), "timestep": (B,), "image": CLIP embeds or None}."""
    calls, handles = [], []
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is None:
            continue

        def hook(mod, args, kwargs, _name=name):
            image = kwargs.get("encoder_hidden_states_image")
            calls.append({"expert": _name, "hidden": kwargs["hidden_states"].detach().clone(),
                          "timestep": kwargs["timestep"].detach().clone(),
                          "image": None if image is None else image.detach().clone()})

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def clip_inputs(pipe):
    """Yield a list of the pixel_values (1, 3, 32, 32) the CLIP image encoder receives."""
    seen = []
    handle = pipe.image_encoder.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["pixel_values"].detach().clone()), with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def split(hidden):
    """(noise (B,16,T',h,w), mask (B,4,T',h,w), condition (B,16,T',h,w))."""
    assert hidden.shape[1] == 36, hidden.shape
    return hidden[:, :16], hidden[:, 16:20], hidden[:, 20:]


def assert_first_frame_mask(mask):
    assert torch.equal(mask[:, :, 0], torch.ones_like(mask[:, :, 0]))
    assert torch.equal(mask[:, :, 1:], torch.zeros_like(mask[:, :, 1:]))


def assert_same_condition_everywhere(calls):
    """Both experts (and every step) see one and the same mask + condition."""
    experts = {call["expert"] for call in calls}
    assert experts == {"transformer", "transformer_2"}, experts
    first = calls[0]["hidden"][:, 16:]
    for call in calls[1:]:
        assert torch.equal(call["hidden"][:, 16:], first), f"{call['expert']} saw another condition"


def pixel_video(frames: torch.Tensor, padding: torch.Tensor | None, num_frames: int) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] + padding (3, H, W) or zeros → (1, 3, num_frames, H, W)."""
    pad = num_frames - frames.shape[0]
    tail = torch.zeros(pad, *frames.shape[1:]) if padding is None else padding.unsqueeze(0).repeat(pad, 1, 1, 1)
    return torch.cat([frames, tail]).permute(1, 0, 2, 3).unsqueeze(0)


def uint8_to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# -- SVI 2.0 Pro (latent mode) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pro_clip1(tiny_engine, reference_image):
    """(settings, anchor, clip 1, the transformer calls of clip 1)."""
    settings = tiny_settings(tiny_engine, num_frames=FRAMES)
    anchor = tiny_engine.encode_anchor(reference_image, settings)
    with transformer_inputs(tiny_engine.pipe) as calls:
        clip = tiny_engine.generate_clip(ClipRequest(anchor, None, "a red fox runs", "", 11, settings))
    return settings, anchor, clip, calls


def test_anchor_latent_is_normalised_vae_latent_of_reference(tiny_engine, pro_clip1):
    _, anchor, _, _ = pro_clip1
    pipe = tiny_engine.pipe
    pixels = torch.from_numpy(np.array(anchor.image)).permute(2, 0, 1).float() / 127.5 - 1.0
    raw = pipe.vae.encode(pixels[None, :, None]).latent_dist.mode()
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
    expected = (raw - mean) / std
    assert anchor.tensors["anchor_latent"].shape == (1, 16, 1, 8, 14)
    torch.testing.assert_close(anchor.tensors["anchor_latent"], expected, atol=1e-4, rtol=1e-4)


def test_pro_clip1_condition_is_anchor_then_zeros(pro_clip1):
    settings, anchor, clip, calls = pro_clip1
    assert calls, "the transformer was never called"
    assert clip.latents.shape == (1, 16, 6, 8, 14)
    for call in calls:
        noise, mask, condition = split(call["hidden"])
        assert condition.shape == (1, 16, 6, 8, 14)
        assert torch.equal(condition[:, :, :1], anchor.tensors["anchor_latent"])
        assert torch.equal(condition[:, :, 1:], torch.zeros_like(condition[:, :, 1:]))
        assert_first_frame_mask(mask)
    assert_same_condition_everywhere(calls)


def test_pro_first_step_noise_is_the_seeded_gaussian(pro_clip1):
    """The noise channels of step 1 are randn(seed) exactly as diffusers draws them."""
    _, _, clip, calls = pro_clip1
    expected = torch.randn(clip.latents.shape, generator=torch.Generator("cpu").manual_seed(11))
    assert torch.equal(split(calls[0]["hidden"])[0], expected)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_pro_clip2_condition_is_anchor_motion_tail_zeros(tiny_engine, pro_clip1, m):
    settings, anchor, clip1, _ = pro_clip1
    settings = tiny_settings(tiny_engine, num_frames=FRAMES, num_motion_latents=m)
    with transformer_inputs(tiny_engine.pipe) as calls:
        clip2 = tiny_engine.generate_clip(ClipRequest(anchor, clip1.motion_out, "a red fox runs", "", 12, settings))
    assert calls
    tail = clip1.latents[:, :, -m:]  # the previous clip's denoised, normalised latents
    for call in calls:
        _, mask, condition = split(call["hidden"])
        assert torch.equal(condition[:, :, :1], anchor.tensors["anchor_latent"]), "frame 0 is not the anchor"
        assert torch.equal(condition[:, :, 1:1 + m], tail), f"frames 1..{m} are not clip 1's last {m} latents"
        rest = condition[:, :, 1 + m:]
        assert rest.shape[2] == 6 - 1 - m
        assert torch.equal(rest, torch.zeros_like(rest))
        assert_first_frame_mask(mask)
    assert_same_condition_everywhere(calls)
    # the outgoing motion state holds this clip's own tail, not the incoming one
    assert torch.equal(clip2.motion_out.tensors["motion_latents"], clip2.latents[:, :, -3:])


def test_pro_motion_from_another_engine_kind_is_refused(tiny_engine, pro_clip1):
    from svi_studio.engines import EngineError
    from svi_studio.motion import PIXEL_TAIL, MotionState

    settings, anchor, _, _ = pro_clip1
    foreign = MotionState(PIXEL_TAIL, {"motion_frames": torch.zeros(5, 64, 112, 3, dtype=torch.uint8)})
    with pytest.raises(EngineError):
        tiny_engine.generate_clip(ClipRequest(anchor, foreign, "x", "", 1, settings))


# -- SVI Film / Shot (pixel mode, with CLIP) --------------------------------------------------


@pytest.mark.parametrize("preset, count", [("tiny-film", 5), ("tiny-shot", 1)])
def test_pixel_mode_condition_and_clip_input(reference_image, preset, count):
    engine = load_engine(preset)
    pipe = engine.pipe
    settings = tiny_settings(engine, num_frames=FRAMES)
    anchor = engine.encode_anchor(reference_image, settings)
    reference = uint8_to_unit(np.asarray(anchor.image)[None])[0]  # (3, H, W), built here, not by the engine
    padding = reference if preset == "tiny-shot" else None

    with transformer_inputs(pipe) as calls1, clip_inputs(pipe) as clip_seen1:
        clip1 = engine.generate_clip(ClipRequest(anchor, None, "a lighthouse at dusk", "", 3, settings))
    with transformer_inputs(pipe) as calls2, clip_inputs(pipe) as clip_seen2:
        clip2 = engine.generate_clip(ClipRequest(anchor, clip1.motion_out, "a lighthouse at dusk", "", 4, settings))
    assert calls1 and calls2 and clip2.frames.shape == (FRAMES, 64, 112, 3)

    # the motion state holds clip 1's last decoded frames as uint8
    held = clip1.motion_out.tensors["motion_frames"]
    assert held.dtype == torch.uint8
    assert np.array_equal(held[-count:].numpy(), clip1.frames[-count:])

    # clip 1: [reference] + padding; clip 2: [clip 1's last N frames] + padding, VAE-encoded as a whole
    expected1 = pipe.encode_normalised(pixel_video(reference[None], padding, FRAMES))
    expected2 = pipe.encode_normalised(pixel_video(uint8_to_unit(clip1.frames[-count:]), padding, FRAMES))
    for calls, expected in ((calls1, expected1), (calls2, expected2)):
        for call in calls:
            _, mask, condition = split(call["hidden"])
            torch.testing.assert_close(condition, expected, atol=1e-4, rtol=1e-4)
            assert_first_frame_mask(mask)
            assert call["image"] is not None and call["image"].shape[-1] == 4  # CLIP embeds reach the transformer
    # the wrong padding would be far off: the check above can tell zeros from the reference
    wrong = pipe.encode_normalised(pixel_video(uint8_to_unit(clip1.frames[-count:]),
                                               None if padding is not None else reference, FRAMES))
    assert (wrong - expected2).abs().max() > 1e-2

    # CLIP sees the first conditioning frame: the reference, then clip 1's frame -N
    def processed(image):
        return pipe.image_processor(images=image, return_tensors="pt").pixel_values

    assert len(clip_seen1) == 1 and len(clip_seen2) == 1
    torch.testing.assert_close(clip_seen1[0], processed(anchor.image), atol=1e-5, rtol=0)
    torch.testing.assert_close(clip_seen2[0], processed(Image.fromarray(clip1.frames[-count])), atol=1e-5, rtol=0)
    other = clip1.frames[-1] if count > 1 else clip1.frames[-2]
    assert not torch.allclose(clip_seen2[0], processed(Image.fromarray(other)), atol=1e-5)


# -- seeds ------------------------------------------------------------------------------------


def test_same_seed_same_clip_other_seed_other_clip(tiny_engine, reference_image):
    settings = tiny_settings(tiny_engine, num_frames=17)
    anchor = tiny_engine.encode_anchor(reference_image, settings)
    a = tiny_engine.generate_clip(ClipRequest(anchor, None, "waves", "", 2024, settings))
    b = tiny_engine.generate_clip(ClipRequest(anchor, None, "waves", "", 2024, settings))
    c = tiny_engine.generate_clip(ClipRequest(anchor, None, "waves", "", 2025, settings))
    assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents, b.latents)
    assert a.motion_out.equals(b.motion_out)
    assert not torch.equal(a.latents, c.latents) and not np.array_equal(a.frames, c.frames)
    # continuing from equal motion with equal seeds is deterministic too
    a2 = tiny_engine.generate_clip(ClipRequest(anchor, a.motion_out, "waves", "", 7, settings))
    b2 = tiny_engine.generate_clip(ClipRequest(anchor, b.motion_out, "waves", "", 7, settings))
    assert torch.equal(a2.latents, b2.latents)
    # the largest seed validate_seed allows is usable
    top = tiny_engine.generate_clip(ClipRequest(anchor, None, "waves", "", 2**64 - 1, settings))
    assert top.frames.shape == (17, 64, 112, 3)


# -- sampler: Wan step spacing and the expert switch ------------------------------------------


def test_euler_four_steps_use_wan_spacing():
    """4 steps at shift 5 → timesteps 1000, 937.5, 833.3, 625 (sigmas 1, .75, .5, .25 before the shift)."""
    from svi_studio.engines.tiny import tiny_pipeline

    for kind, expected in (("euler", [1000.0, 937.5, 833.333, 625.0]), ("unipc", [999, 937, 833, 625])):
        scheduler = make_scheduler(kind, tiny_pipeline("wan2.2").scheduler.config, 5.0)
        scheduler.set_timesteps(4)
        assert np.allclose(scheduler.timesteps.float().numpy(), expected, atol=1e-2), (kind, scheduler.timesteps)


def test_two_experts_switch_at_boundary(reference_image):
    """Lightning-style run: steps with t >= 875 go to `transformer` (high noise), the rest to `transformer_2`."""
    engine = load_wan_engine(load_preset("tiny", {"scheduler": "euler"}))
    settings = tiny_settings(engine, num_frames=9, steps=4, flow_shift=5.0, boundary_ratio=0.875)
    anchor = engine.encode_anchor(reference_image, settings)
    with transformer_inputs(engine.pipe) as calls:
        engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, settings))
    seen = [(call["expert"], round(float(call["timestep"][0]), 1)) for call in calls]
    assert seen == [("transformer", 1000.0), ("transformer", 937.5), ("transformer_2", 833.3), ("transformer_2", 625.0)]
    # a flow shift change between clips keeps Wan's spacing
    with transformer_inputs(engine.pipe) as calls:
        engine.generate_clip(ClipRequest(anchor, None, "x", "", 1, tiny_settings(engine, num_frames=9, steps=4, flow_shift=1.0)))
    assert [round(float(c["timestep"][0]), 1) for c in calls] == [1000.0, 750.0, 500.0, 250.0]


# -- the real loader, offline: a diffusers folder saved from the tiny components ---------------


@pytest.mark.parametrize("layout, mode", [("wan2.1", "film"), ("wan2.2", "pro")])
def test_loader_keeps_vae_and_clip_float32_and_bf16_clips_run(tmp_path, reference_image, layout, mode):
    """load_pipeline on a local diffusers folder (the hub path minus the download): transformer(s) in
    the preset's bf16, VAE and CLIP in float32, and a clip renders across those dtypes."""
    from svi_studio.engines.tiny import tiny_pipeline

    tiny_pipeline(layout).save_pretrained(tmp_path)
    preset = load_preset("tiny", {"id": f"local-{layout}", "base_model": str(tmp_path), "svi_mode": mode,
                                  "dtype": "bfloat16", "offload": "none", "scheduler": "euler"})
    engine = load_wan_engine(preset, device="cpu")
    pipe = engine.pipe
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    if layout == "wan2.1":
        assert pipe.image_encoder.dtype == torch.float32
    else:
        assert pipe.image_encoder is None and pipe.transformer_2.dtype == torch.bfloat16
    settings = tiny_settings(engine, num_frames=9, steps=2)
    anchor = engine.encode_anchor(reference_image, settings)
    with transformer_inputs(pipe) as calls:
        clip = engine.generate_clip(ClipRequest(anchor, None, "snow", "", 1, settings))
    assert clip.frames.shape == (9, 64, 112, 3) and clip.latents.dtype == torch.float32
    assert all(call["hidden"].dtype == torch.bfloat16 for call in calls)
    if mode == "pro":
        condition = split(calls[0]["hidden"])[2]
        assert torch.equal(condition[:, :, :1], anchor.tensors["anchor_latent"].to(torch.bfloat16))
