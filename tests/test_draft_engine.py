"""The draft engine: camera moves measured on the frames, continuity across cuts, determinism,
no borders at any allowed aspect, motion-state round trip, cancel, caption."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from svi_studio.engines import Cancelled, EngineError, load_engine
from svi_studio.engines.draft import DraftEngine
from svi_studio.motion import CAMERA, LATENT_TAIL, MotionState
from svi_studio.stitching import StitchRule
from svi_studio.engines.request import ClipRequest

WIDTH, HEIGHT = 256, 160


def textured_reference(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth, non-periodic colour texture with fine grain; every channel of every pixel in 40..244,
    so a black (border) pixel can only come from outside the image."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 6 + 2, width // 6 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    grain = rng.integers(-24, 25, size=(height, width, 3))
    values = 40 + 0.8 * np.clip(smooth + grain, 0, 255)
    return Image.fromarray(values.astype(np.uint8))


@pytest.fixture(scope="module")
def engine() -> DraftEngine:
    return DraftEngine(caption=False, tag=False)


@pytest.fixture(scope="module")
def clip_settings(engine):
    return replace(engine.default_settings(), width=WIDTH, height=HEIGHT)


@pytest.fixture(scope="module")
def anchor(engine, clip_settings):
    return engine.encode_anchor(textured_reference(480, 300), clip_settings)


def render(engine, anchor, settings, prompt, seed=0, motion_in=None, **kwargs):
    return engine.generate_clip(ClipRequest(anchor, motion_in, prompt, "", seed, settings), **kwargs)


# -- measuring motion on frames --------------------------------------------------------------


def gray(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64).mean(axis=-1)


def phase_shift(first: np.ndarray, last: np.ndarray) -> tuple[float, float]:
    """(dx, dy) in pixels that the picture content moved from `first` to `last` (phase correlation)."""
    a, b = gray(first), gray(last)
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    spectrum = np.fft.fft2((b - b.mean()) * window) * np.conj(np.fft.fft2((a - a.mean()) * window))
    correlation = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(correlation), correlation.shape)
    height, width = correlation.shape
    return float(dx - width if dx > width // 2 else dx), float(dy - height if dy > height // 2 else dy)


def estimate_zoom(first: np.ndarray, last: np.ndarray) -> float:
    """Magnification of `last` relative to `first` (>1 when the camera pushed in): the scale s
    for which the centre of `first`, cut 1/s as big and enlarged s times, best matches `last`'s centre."""
    height, width = first.shape[:2]
    crop_w, crop_h = 0.4 * width, 0.4 * height
    target = gray(last)[round(height / 2 - crop_h / 2):round(height / 2 - crop_h / 2) + round(crop_h),
                        round(width / 2 - crop_w / 2):round(width / 2 - crop_w / 2) + round(crop_w)]
    source = Image.fromarray(gray(first).astype(np.float32), mode="F")
    best_scale, best_error = 1.0, np.inf
    for scale in np.arange(0.5, 2.0, 0.005):
        box_w, box_h = crop_w / scale, crop_h / scale
        box = (width / 2 - box_w / 2, height / 2 - box_h / 2, width / 2 + box_w / 2, height / 2 + box_h / 2)
        candidate = np.asarray(source.resize(target.shape[::-1], Image.Resampling.BILINEAR, box=box))
        error = np.abs(candidate - target).mean()
        if error < best_error:
            best_scale, best_error = scale, error
    return best_scale


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def seam_score(first: np.ndarray, second: np.ndarray, drop_head: int) -> float:
    """Jump across the cut (last kept frame of `first` -> first kept frame of `second`) divided by the
    median frame-to-frame change inside the two clips' kept frames: about 1 for a continuous cut."""
    kept_second = second[drop_head:]
    inside = [mean_abs(clip[i], clip[i + 1]) for clip in (first, kept_second) for i in range(len(clip) - 1)]
    return mean_abs(first[-1], kept_second[0]) / max(float(np.median(inside)), 1e-9)


# -- the interface ---------------------------------------------------------------------------


def test_engine_identity():
    engine = load_engine("draft")
    assert isinstance(engine, DraftEngine)
    assert engine.is_draft and engine.name == "draft" and engine.preset_id == "draft"
    assert "draft" in engine.label.lower() and "svi" not in engine.label.lower()
    assert engine.describe()["is_draft"] is True
    assert engine.max_area == 480 * 832 and engine.caption and engine.tag
    settings = engine.default_settings()
    assert (settings.width, settings.height, settings.num_frames, settings.fps) == (832, 480, 81, 16)
    assert engine.stitch_rule(settings) == StitchRule(drop_head=1)
    assert not DraftEngine(caption=False).caption


def test_clip_shape_info_and_motion(engine, anchor, clip_settings):
    clip = render(engine, anchor, clip_settings, "slow push in and pan left", seed=3)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (81, HEIGHT, WIDTH, 3)
    assert clip.latents is None
    assert clip.info["draft"] is True
    assert clip.info["camera"]["summary"] == "slow push-in + pan left"
    assert [m["move"] for m in clip.info["camera"]["moves"]] == ["push-in", "pan-left"]
    json.dumps(clip.info)
    assert clip.motion_out.kind == CAMERA
    for name in ("pose", "velocity"):
        tensor = clip.motion_out.tensors[name]
        assert tensor.dtype == torch.float64 and tensor.shape == (3,)
    assert np.allclose(clip.motion_out.tensors["pose"].numpy(), clip.info["camera"]["end_pose"])


def test_anchor_keeps_a_sharper_copy(engine, clip_settings):
    anchor = engine.encode_anchor(textured_reference(900, 600), clip_settings)
    assert anchor.image.size == (WIDTH, HEIGHT)
    source = anchor.tensors["source"]
    assert source.dtype == torch.uint8 and source.shape[1] > WIDTH and source.shape[0] > HEIGHT
    assert abs(source.shape[1] / source.shape[0] - WIDTH / HEIGHT) < 0.02
    small = engine.encode_anchor(textured_reference(100, 60), clip_settings)  # smaller than the clip
    assert tuple(small.tensors["source"].shape) == (HEIGHT, WIDTH, 3)


def test_anchor_at_another_resolution_is_refused(engine, anchor, clip_settings):
    with pytest.raises(EngineError):
        render(engine, anchor, replace(clip_settings, width=WIDTH + 16), "pan left")


# -- camera words move the picture the right way ---------------------------------------------


@pytest.mark.parametrize("prompt, sign_x, sign_y", [
    ("pan left", 1, 0), ("pan right", -1, 0), ("truck left", 1, 0), ("truck right", -1, 0),
    ("tilt up", 0, 1), ("tilt down", 0, -1), ("crane up", 0, 1),
])
def test_translation_direction_on_frames(engine, anchor, clip_settings, prompt, sign_x, sign_y):
    """Pan/truck left: the window moves left, so the picture slides right (dx > 0); tilt up: it slides down."""
    clip = render(engine, anchor, clip_settings, prompt, seed=1)
    dx, dy = phase_shift(clip.frames[0], clip.frames[-1])
    for shift, sign in ((dx, sign_x), (dy, sign_y)):
        if sign:
            assert np.sign(shift) == sign and abs(shift) >= 8, (prompt, dx, dy)
        else:
            assert abs(shift) <= 3, (prompt, dx, dy)
    # and the shift is the one the planned poses predict
    plan, _ = engine.plan_camera(prompt, 1, clip_settings)
    start, end = plan.poses[0], plan.poses[-1]
    expected_dx = -(end[1] - start[1]) * start[0] * WIDTH
    expected_dy = -(end[2] - start[2]) * start[0] * HEIGHT
    assert abs(dx - expected_dx) <= 2 and abs(dy - expected_dy) <= 2


@pytest.mark.parametrize("prompt, low, high", [
    ("push in", 1.15, 1.7), ("fast zoom in", 1.3, 2.2), ("close-up", 1.15, 1.7),
    ("pull back", 0.6, 0.87), ("wide shot", 0.6, 0.87),
])
def test_zoom_direction_on_frames(engine, anchor, clip_settings, prompt, low, high):
    clip = render(engine, anchor, clip_settings, prompt, seed=2)
    measured = estimate_zoom(clip.frames[0], clip.frames[-1])
    assert low <= measured <= high, (prompt, measured)
    plan, _ = engine.plan_camera(prompt, 2, clip_settings)
    assert abs(measured - plan.poses[-1, 0] / plan.poses[0, 0]) < 0.03


def test_unknown_wording_is_a_gentle_push_in(engine, anchor, clip_settings):
    clip = render(engine, anchor, clip_settings, "a lighthouse at dusk", seed=2)
    assert clip.info["camera"]["fallback"]
    assert 1.05 < estimate_zoom(clip.frames[0], clip.frames[-1]) < 1.3


def test_static_does_not_move(engine, anchor, clip_settings):
    clip = render(engine, anchor, clip_settings, "static shot, locked-off", seed=4)
    assert phase_shift(clip.frames[0], clip.frames[-1]) == (0.0, 0.0)
    assert max(mean_abs(clip.frames[0], frame) for frame in clip.frames) < 0.5


def test_moving_clip_changes_every_frame_smoothly(engine, anchor, clip_settings):
    """No frozen frames and no jumps: after the ease-in, steps stay within a small range."""
    clip = render(engine, anchor, clip_settings, "pan right", seed=5)
    steps = np.array([mean_abs(a, b) for a, b in zip(clip.frames[:-1], clip.frames[1:])])
    cruise = steps[len(steps) // 2:]
    assert steps.min() > 0 and cruise.max() < 2.0 * np.median(cruise)


# -- continuity across cuts ------------------------------------------------------------------


@pytest.mark.parametrize("first_prompt, second_prompt", [
    ("pan left", "pan left"), ("pan left", "pan right"), ("push in", "tilt up"), ("truck right", "pull back"),
])
def test_cut_between_draft_clips_is_continuous(engine, anchor, clip_settings, first_prompt, second_prompt):
    rule = engine.stitch_rule(clip_settings)
    first = render(engine, anchor, clip_settings, first_prompt, seed=1)
    second = render(engine, anchor, clip_settings, second_prompt, seed=2, motion_in=first.motion_out)
    first_plan, _ = engine.plan_camera(first_prompt, 1, clip_settings)
    second_plan, _ = engine.plan_camera(second_prompt, 2, clip_settings, first.motion_out)

    # the second clip starts exactly where the first ended ...
    assert np.allclose(second_plan.poses[0], first_plan.poses[-1], atol=1e-6, rtol=0)
    assert mean_abs(second.frames[0], first.frames[-1]) < 0.01
    # ... and its first kept frame is one ordinary step further
    def log_pose(pose):
        return np.array([np.log(pose[0]), pose[1], pose[2]])
    last_step = log_pose(first_plan.poses[-1]) - log_pose(first_plan.poses[-2])
    next_step = log_pose(second_plan.poses[rule.drop_head]) - log_pose(second_plan.poses[0])
    assert np.linalg.norm(next_step - last_step) <= 0.1 * np.linalg.norm(last_step)
    assert 0.3 <= seam_score(first.frames, second.frames, rule.drop_head) <= 3.0


def test_a_static_shot_after_a_move_settles_smoothly(engine, anchor, clip_settings):
    """The incoming velocity fades out over the first ~12 frames, then the camera holds."""
    first = render(engine, anchor, clip_settings, "fast truck right", seed=1)
    plan, _ = engine.plan_camera("static", 2, clip_settings, first.motion_out)
    speeds = np.abs(np.diff(plan.poses[:, 1]))  # centre_x travel per frame
    incoming = first.motion_out.tensors["velocity"].numpy()[1]
    assert abs(speeds[0] - incoming) < 0.05 * incoming
    assert np.all(np.diff(speeds[:12]) <= 0) and np.all(speeds[13:] == 0)


def test_seam_score_catches_a_jump(engine, anchor, clip_settings):
    """Without the motion state the second clip starts from its own pose: a visible jump."""
    first = render(engine, anchor, clip_settings, "pan left", seed=1)
    fresh = render(engine, anchor, clip_settings, "pan left", seed=2)
    assert seam_score(first.frames, fresh.frames, 1) > 5
    fresh = render(engine, anchor, clip_settings, "tilt up", seed=2)
    assert seam_score(first.frames, fresh.frames, 1) > 5


def test_velocity_is_rescaled_to_the_next_clips_fps(engine, anchor, clip_settings):
    first = render(engine, anchor, clip_settings, "pan left", seed=1)
    plan, _ = engine.plan_camera("pan left", 2, replace(clip_settings, fps=32), first.motion_out)
    last_step = first.motion_out.tensors["velocity"].numpy()[1]
    assert abs((plan.poses[1, 1] - plan.poses[0, 1]) / last_step - 0.5) < 0.05


def test_motion_state_of_another_engine_starts_fresh(engine, anchor, clip_settings):
    foreign = MotionState(LATENT_TAIL, {"motion_latents": torch.zeros(1, 16, 1, 2, 2)})
    clip = render(engine, anchor, clip_settings, "pan left", seed=1, motion_in=foreign)
    alone = render(engine, anchor, clip_settings, "pan left", seed=1)
    assert np.array_equal(clip.frames, alone.frames)
    assert not clip.info["camera"]["continued"] and "latent_tail" in clip.info["camera"]["note"]


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_same_take_other_seed_other_take(engine, anchor, clip_settings):
    prompt = "slow push in and pan left"
    one = render(engine, anchor, clip_settings, prompt, seed=11)
    again = render(engine, anchor, clip_settings, prompt, seed=11)
    other = render(engine, anchor, clip_settings, prompt, seed=12)
    assert np.array_equal(one.frames, again.frames)
    assert one.motion_out.equals(again.motion_out)
    assert not np.array_equal(one.frames, other.frames)
    assert mean_abs(one.frames[-1], other.frames[-1]) > 1.0  # visibly different, not one pixel
    largest = render(engine, anchor, clip_settings, prompt, seed=2**64 - 1)
    assert np.array_equal(largest.frames, render(engine, anchor, clip_settings, prompt, seed=2**64 - 1).frames)


def test_continued_clip_is_deterministic(engine, anchor, clip_settings):
    first = render(engine, anchor, clip_settings, "pan right", seed=1)
    runs = [render(engine, anchor, clip_settings, "tilt down", seed=9, motion_in=first.motion_out) for _ in range(2)]
    assert np.array_equal(runs[0].frames, runs[1].frames)


# -- no borders ------------------------------------------------------------------------------

BORDER_PROMPTS = ["very fast pan left", "very fast pan right", "very fast tilt up", "very fast tilt down",
                  "fast truck left and crane down", "very fast pull back and pan right", "fast push in and tilt up",
                  "handheld shot", "a cat"]


@pytest.mark.parametrize("width, height", [(64, 256), (144, 256), (160, 160), (256, 144), (256, 64)])
def test_no_black_borders_at_any_aspect(engine, width, height):
    """Aspect 1:4, 9:16, 1:1, 16:9, 4:1; every move, chained clips and a long clip: no pixel is
    darker than the reference's darkest (40), so nothing was sampled from outside it.
    At 4 fps, 21 frames are 5 s of camera travel in 4x larger steps than at 16 fps."""
    settings = replace(engine.default_settings(), width=width, height=height, num_frames=21, fps=4)
    anchor = engine.encode_anchor(textured_reference(300, 200, seed=width), settings)
    clips = [render(engine, anchor, settings, prompt, seed=3) for prompt in BORDER_PROMPTS]
    motion = None
    for seed in range(4):  # the same strong pan again and again: the room runs out
        clip = render(engine, anchor, settings, "very fast pan left and tilt up", seed=seed, motion_in=motion)
        clips.append(clip)
        motion = clip.motion_out
    assert clips[-1].info["camera"]["limited"]
    clips.append(render(engine, anchor, replace(settings, num_frames=81), "very fast truck right", seed=1))
    for clip in clips:
        darkest = clip.frames.max(axis=-1).min()
        assert darkest > 30, (width, height, clip.info["camera"]["summary"], darkest)


# -- motion state, cancel, progress ----------------------------------------------------------


def test_motion_state_round_trip_is_bit_exact(engine, anchor, clip_settings, tmp_path):
    clip = render(engine, anchor, clip_settings, "fast pan right and push in", seed=6)
    path = tmp_path / "motion.safetensors"
    clip.motion_out.save(path)
    loaded = MotionState.load(path)
    assert loaded.kind == CAMERA and loaded.equals(clip.motion_out)
    for name in ("pose", "velocity"):
        assert loaded.tensors[name].dtype == torch.float64
        assert torch.equal(loaded.tensors[name], clip.motion_out.tensors[name])
    from_memory = render(engine, anchor, clip_settings, "tilt up", seed=7, motion_in=clip.motion_out)
    from_disk = render(engine, anchor, clip_settings, "tilt up", seed=7, motion_in=loaded)
    assert np.array_equal(from_memory.frames, from_disk.frames)


class Flag:
    def __init__(self, value: bool = False):
        self.value = value

    def is_set(self) -> bool:
        return self.value


def test_cancel_already_set_raises(engine, anchor, clip_settings):
    with pytest.raises(Cancelled):
        render(engine, anchor, clip_settings, "pan left", cancel=Flag(True))


def test_cancel_between_chunks_and_progress(engine, anchor, clip_settings):
    calls = []
    render(engine, anchor, clip_settings, "pan left", on_step=lambda i, n: calls.append((i, n)), cancel=Flag())
    total = calls[0][1]
    assert total >= 3 and calls == [(i, total) for i in range(1, total + 1)]

    flag, seen = Flag(), []

    def stop_after_first(step, total_steps):
        seen.append(step)
        flag.value = True

    with pytest.raises(Cancelled):
        render(engine, anchor, clip_settings, "pan left", on_step=stop_after_first, cancel=flag)
    assert seen == [1]


# -- caption and tag -------------------------------------------------------------------------


def test_caption_and_tag(anchor, clip_settings):
    prompt = "A long prompt about a lighthouse 🎬 at dusk,\nwith \"quotes\" and a slow pan left " * 3
    plain = DraftEngine(caption=False, tag=False)
    captioned = DraftEngine()
    clean = render(plain, anchor, clip_settings, prompt, seed=1).frames
    marked = render(captioned, anchor, clip_settings, prompt, seed=1).frames
    changed = np.abs(clean.astype(np.int16) - marked.astype(np.int16)).max(axis=(0, 3)) > 0  # (H, W)
    rows = np.nonzero(changed.any(axis=1))[0]
    bottom = rows[rows >= HEIGHT // 2]
    top = rows[rows < HEIGHT // 2]
    assert len(bottom) and bottom.min() > HEIGHT * 0.75  # the caption: a band near the bottom
    assert len(top) and top.max() < HEIGHT * 0.2 and np.nonzero(changed[top].any(axis=0))[0].max() < WIDTH * 0.4
    assert changed[bottom].any(axis=0).sum() > WIDTH * 0.5  # a long prompt spans most of the width

    captioned.caption = False  # the exporter's switch: only the DRAFT tag is left
    tag_only = render(captioned, anchor, clip_settings, prompt, seed=1).frames
    assert np.array_equal(tag_only[:, HEIGHT // 2:], clean[:, HEIGHT // 2:])
    assert not np.array_equal(tag_only, clean)
    empty = render(DraftEngine(tag=False), anchor, clip_settings, "", seed=1).frames
    assert np.array_equal(empty, render(plain, anchor, clip_settings, "", seed=1).frames)


def test_captioned_cuts_score_the_picture_not_the_changing_caption(anchor, clip_settings, tmp_path):
    """With the caption on (the app's default) each shot burns in its own prompt; the seam score
    compares only the rows above the caption band, so a continuous draft cut is not flagged."""
    from conftest import make_reference
    from svi_studio.director import Director
    from svi_studio.seams import SEAM_WARN

    captioned = DraftEngine(caption=True, tag=True)
    rows = captioned.picture_rows(HEIGHT, WIDTH)
    first_prompt = "A cat on a windowsill, slow push in"
    first = render(captioned, anchor, clip_settings, first_prompt, seed=1)
    plain = render(DraftEngine(caption=False, tag=True), anchor, clip_settings, first_prompt, seed=1)
    changed = np.any(first.frames != plain.frames, axis=(0, 2, 3))  # rows the caption touches
    assert changed.any() and not changed[rows].any()
    assert rows.stop >= HEIGHT * 3 // 4  # and the band is no taller than it needs to be

    # A smooth reference and short shots: the caption's change is large against a frame step.
    director = Director.create(tmp_path / "film", captioned, reference=make_reference(),
                               prompts=[first_prompt, "It jumps down, pan left", "The garden at dusk, tilt up"],
                               settings={"width": WIDTH, "height": HEIGHT, "num_frames": 9})
    list(director.render())
    scores = [director.store.take(shot.id, shot.selected_take).seam["score"] for shot in director.project.shots[1:]]
    assert all(score <= SEAM_WARN for score in scores), scores
    assert DraftEngine(caption=False).picture_rows(HEIGHT, WIDTH) == slice(0, HEIGHT)
