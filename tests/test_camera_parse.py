"""Camera direction from prompts, and the pose maths of the draft engine (no images here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svi_studio.engines.camera import (
    ZOOM_MAX,
    CameraMove,
    MoveSpec,
    TakeVariation,
    clamp_pose,
    crop_box,
    ease_in,
    parse_camera,
    plan_camera,
)


def move_names(prompt: str) -> set[str]:
    return {move.name for move in parse_camera(prompt).moves}


def speed_of(prompt: str, name: str) -> float:
    return next(move.speed for move in parse_camera(prompt).moves if move.name == name)


# -- single moves ----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, expected", [
    ("push in", "push-in"),
    ("The camera pushes in on her face", "push-in"),
    ("zoom in", "push-in"),
    ("Zooming into the window", "push-in"),
    ("close-up of an old sailor", "push-in"),
    ("a closeup of hands", "push-in"),
    ("dolly in toward the door", "push-in"),
    ("pull back", "pull-back"),
    ("the camera pulls back to reveal the city", "pull-back"),
    ("zoom out", "pull-back"),
    ("wide shot of the valley", "pull-back"),
    ("dolly out", "pull-back"),
    ("pan left", "pan-left"),
    ("camera pans slowly to the right", "pan-right"),
    ("panning leftwards across the skyline", "pan-left"),
    ("tilt up to the sky", "tilt-up"),
    ("tilting down to the street", "tilt-down"),
    ("truck left past the shelves", "truck-left"),
    ("trucks right", "truck-right"),
    ("dolly left", "truck-left"),
    ("crane up over the crowd", "pedestal-up"),
    ("PAN LEFT", "pan-left"),
    ("Push-In", "push-in"),
])
def test_each_camera_word_is_read(prompt, expected):
    move = parse_camera(prompt)
    assert move_names(prompt) == {expected}
    assert not move.fallback and not move.static


def test_directions_point_the_right_way():
    """(ln zoom, centre x, centre y) rates: left/up are negative, push-in positive."""
    expectations = {"push in": (1, 0, 0), "pull back": (-1, 0, 0), "pan left": (0, -1, 0), "pan right": (0, 1, 0),
                    "tilt up": (0, 0, -1), "tilt down": (0, 0, 1), "truck left": (0, -1, 0), "truck right": (0, 1, 0)}
    for prompt, signs in expectations.items():
        assert tuple(np.sign(parse_camera(prompt).velocity_per_second())) == signs, prompt


# -- combinations and modifiers --------------------------------------------------------------


def test_moves_combine():
    move = parse_camera("slow push in and pan left")
    assert [m.name for m in move.moves] == ["push-in", "pan-left"]
    assert move.moves[0].speed < 1.0 and move.moves[1].speed == 1.0
    assert move.summary == "slow push-in + pan left"
    velocity = move.velocity_per_second()
    assert velocity[0] > 0 and velocity[1] < 0 and velocity[2] == 0


def test_three_moves_and_punctuation():
    assert move_names("Pull back, pan right; then tilt up!") == {"pull-back", "pan-right", "tilt-up"}


def test_speed_modifiers_order():
    speeds = [speed_of(p, "pan-left") for p in
              ("very slow pan left", "slowly pan left", "pan left", "quickly pan left", "very fast pan left")]
    assert speeds == sorted(speeds) and len(set(speeds)) == 5
    assert speed_of("the camera gently pushes in", "push-in") < 1.0
    assert speed_of("crash zoom in", "push-in") > 1.5


def test_modifier_binds_to_nearest_move():
    move = parse_camera("pan left quickly while we slowly push in")
    assert speed_of("pan left quickly while we slowly push in", "pan-left") > 1.0
    assert speed_of("pan left quickly while we slowly push in", "push-in") < 1.0
    assert "fast pan left" in move.summary and "slow push-in" in move.summary


def test_slow_motion_is_not_a_camera_speed():
    assert speed_of("slow motion, pan left", "pan-left") == 1.0


def test_negation_drops_a_move():
    assert move_names("no zoom, just a slow pan right") == {"pan-right"}
    assert move_names("the camera does not tilt; it pans left") == {"pan-left"}


def test_unknown_wording_falls_back_to_gentle_push_in():
    for prompt in ("a cat asleep on a sofa", "", "frying pan on the stove", "slowly the sun sets"):
        move = parse_camera(prompt)
        assert move.fallback, prompt
        assert [m.name for m in move.moves] == ["push-in"] and move.moves[0].speed < 1.0
        assert "gentle push-in" in move.summary


def test_static_words():
    for prompt in ("static shot of a lake", "Locked-off camera, a man waits", "still camera", "tripod shot",
                   "no camera movement at all"):
        move = parse_camera(prompt)
        assert move.static and not move.moves and not move.fallback, prompt
        assert not move.velocity_per_second().any()
        assert "static" in move.summary


def test_named_moves_win_over_static():
    move = parse_camera("static shot, then pan left")
    assert not move.static and move_names("static shot, then pan left") == {"pan-left"}


def test_handheld_flag():
    assert parse_camera("handheld shot, push in").handheld
    assert parse_camera("hand-held").handheld and not parse_camera("hand-held").fallback


# -- robustness ------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [
    "", "   ", "\n\n\t", "🎬🎥🚀", "“Push in” — 'pan left' «tilt up»", "push\nin", "ＰＵＳＨ ＩＮ",
    "x" * 5000, "pan " * 500, "zoom", "left", "in", "\x00\x01", "镜头缓慢推进", "don't", "pan left" + "!" * 100,
])
def test_odd_prompts_do_not_crash(prompt):
    move = parse_camera(prompt)
    assert move.summary
    json.dumps(move.to_dict())


def test_real_newlines_and_fullwidth_letters():
    assert move_names("push\nin") == {"push-in"}
    assert move_names("ＰＵＳＨ ＩＮ") == {"push-in"}
    assert move_names('the camera "pans left"\nand then tilts up.') == {"pan-left", "tilt-up"}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses(prompt):
    move = parse_camera(prompt)
    assert move.moves or move.static or move.handheld
    assert np.isfinite(move.velocity_per_second()).all()
    json.dumps(move.to_dict())


# -- pose maths ------------------------------------------------------------------------------


def test_ease_in_shape():
    u = np.linspace(0, 1, 101)
    for shape in (1.6, 2.0, 2.8):
        values = ease_in(u, shape)
        assert values[0] == 0 and values[-1] == 1 and np.all(np.diff(values) >= 0)
        assert values[1] < 0.01  # starts with (near) zero slope
    assert ease_in(np.array([1.5]), 2.0)[0] == 1.0


@settings(max_examples=200, deadline=None)
@given(st.floats(0.1, 5), st.floats(-1, 2), st.floats(-1, 2))
def test_clamped_pose_crop_lies_inside_the_image(zoom, cx, cy):
    pose = clamp_pose(np.array([zoom, cx, cy]))
    assert 1.0 <= pose[0] <= ZOOM_MAX
    for width, height in ((1040, 600), (161, 643), (643, 161)):
        left, top, right, bottom = crop_box(pose, width, height)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height


def test_clamp_keeps_a_valid_pose():
    pose = np.array([1.3, 0.45, 0.6])
    assert np.array_equal(clamp_pose(pose), pose)


PROMPTS = ["push in", "pull back", "very fast pan left", "very fast pan right", "fast tilt up", "fast tilt down",
           "fast truck left and crane up", "fast pull back and pan right", "handheld", "static", "a cat"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_plans_stay_inside_the_image_and_chain(prompt):
    move = parse_camera(prompt)
    pose, velocity = None, None
    for clip in range(4):  # a chain: every clip continues the last one
        plan = plan_camera(move, TakeVariation.from_seed(clip, move), 81, 16, pose, velocity)
        zoom = plan.poses[:, 0]
        half = 0.5 / zoom
        assert np.all(zoom >= 1.0) and np.all(zoom <= ZOOM_MAX)
        assert np.all(plan.poses[:, 1] >= half - 1e-12) and np.all(plan.poses[:, 1] <= 1 - half + 1e-12)
        assert np.all(plan.poses[:, 2] >= half - 1e-12) and np.all(plan.poses[:, 2] <= 1 - half + 1e-12)
        if pose is not None:
            assert np.array_equal(plan.poses[0], pose)
        pose, velocity = plan.poses[-1], plan.end_velocity


def test_plan_velocity_is_continuous_across_clips():
    first_move, second_move = parse_camera("pan left"), parse_camera("tilt up")
    first = plan_camera(first_move, TakeVariation.from_seed(1, first_move), 81, 16)
    second = plan_camera(second_move, TakeVariation.from_seed(2, second_move), 81, 16,
                         first.poses[-1], first.end_velocity)
    log_first = np.column_stack([np.log(first.poses[:, 0]), first.poses[:, 1:]])
    log_second = np.column_stack([np.log(second.poses[:, 0]), second.poses[:, 1:]])
    last_step, next_step = log_first[-1] - log_first[-2], log_second[1] - log_second[0]
    assert np.allclose(first.end_velocity, last_step, atol=1e-12)
    assert np.linalg.norm(next_step - last_step) < 0.1 * np.linalg.norm(last_step)


def test_first_pan_starts_zoomed_in_for_room():
    move = parse_camera("pan left")
    plan = plan_camera(move, TakeVariation.from_seed(0, move), 81, 16)
    assert 1.1 <= plan.poses[0, 0] <= 1.4
    assert plan.poses[0, 1] > 0.5 > plan.poses[-1, 1]  # starts right of centre, ends left of it
    assert not plan.limited


def test_a_pan_with_no_room_left_adds_a_push_in():
    move = parse_camera("pan left")
    edge_pose = np.array([1.2, 0.5 / 1.2, 0.5])  # window already at the left edge
    plan = plan_camera(move, TakeVariation.from_seed(0, move), 81, 16, edge_pose, np.zeros(3))
    assert plan.room_zoom and plan.poses[-1, 0] > 1.2 and plan.poses[-1, 1] < edge_pose[1]


def test_pull_back_at_full_frame_reports_limited():
    move = parse_camera("pull back")
    plan = plan_camera(move, TakeVariation.from_seed(0, move), 81, 16, np.array([1.0, 0.5, 0.5]), np.zeros(3))
    assert plan.limited and np.all(plan.poses[:, 0] >= 1.0)


def test_static_plan_does_not_move():
    move = parse_camera("static")
    plan = plan_camera(move, TakeVariation.from_seed(5, move), 81, 16)
    assert np.array_equal(plan.poses, np.repeat(plan.poses[:1], 81, axis=0))


def test_seed_variation_is_deterministic_and_varies():
    move = CameraMove(moves=(MoveSpec("pan-left"),))
    same = [TakeVariation.from_seed(7, move).to_dict() for _ in range(2)]
    assert same[0] == same[1]
    assert TakeVariation.from_seed(8, move).to_dict() != same[0]
    TakeVariation.from_seed(2**64 - 1, move)  # the largest seed the app allows


@pytest.mark.parametrize("prompt, summary", [
    ("the camera slowly pulling back from a close-up", "slow pull-back"),
    ("starting wide, the camera pushes in", "push-in"),
    ("pan left from a close up of the paws", "pan left"),
])
def test_framing_the_shot_starts_from_is_not_a_move(prompt, summary):
    assert parse_camera(prompt).summary == summary
