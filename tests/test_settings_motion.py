"""Settings gate (normalise_settings, validate_seed, fit_resolution) and the motion state's bit-exact storage."""

from __future__ import annotations

import math

import pytest
import torch

from svi_studio.motion import CAMERA, LATENT_TAIL, PIXEL_TAIL, MotionState
from svi_studio.settings import (
    SEED_MAX,
    ClipSettings,
    SettingsError,
    fit_resolution,
    normalise_settings,
    validate_seed,
)

BUDGET = 480 * 832


# -- normalise_settings -------------------------------------------------------------------------


@pytest.mark.parametrize("frames, expected", [(81, 81), (80, 81), (82, 81), (83, 85), (87, 89), (17, 17), (20, 21), (2, 5), (241, 241)])
def test_frames_round_to_4k_plus_1(frames, expected):
    """Halves round up everywhere (83 → 85 frames like 87 → 89; width 40 → 48 like 56 → 64)."""
    settings, notices = normalise_settings({"num_frames": frames})
    assert settings.num_frames == expected and (settings.num_frames - 1) % 4 == 0
    assert bool(notices) == (frames != expected)


@pytest.mark.parametrize("size, expected", [(832, 832), (830, 832), (470, 464), (481, 480), (8, 16), (24, 32), (40, 48), (56, 64), (2048, 2048)])
def test_width_height_round_to_multiples_of_16(size, expected):
    settings, notices = normalise_settings({"width": size, "height": size})
    assert settings.width == settings.height == expected
    assert settings.width % 16 == 0
    assert bool(notices) == (size != expected)
    if size != expected:
        assert any("16" in notice for notice in notices)


@pytest.mark.parametrize("m, expected", [(1, 1), (2, 2), (3, 3), (0, 1), (-2, 1), (4, 3), (9, 3), (2.4, 2)])
def test_motion_latents_land_in_1_2_3_with_a_notice(m, expected):
    settings, notices = normalise_settings({"num_motion_latents": m})
    assert settings.num_motion_latents == expected
    assert bool(notices) == (m != expected)


def test_defaults_pass_without_notices_and_roundtrip():
    settings, notices = normalise_settings(ClipSettings())
    assert settings == ClipSettings() and notices == []
    custom = ClipSettings(steps=4, guidance=1.5, guidance_2=1.0, lora_weights=(("a", 0.5), ("b", 1.0)))
    again, notices = normalise_settings(custom.to_dict())
    assert again == custom and notices == []
    assert ClipSettings.from_dict(custom.to_dict()) == custom


@pytest.mark.parametrize("bad", [
    {"steps": 0}, {"steps": -3}, {"steps": 0.4},
    {"steps": float("nan")}, {"guidance": float("nan")}, {"guidance": float("inf")}, {"width": math.nan},
    {"steps": "many"}, {"guidance": "strong"}, {"num_frames": ""}, {"width": None}, {"steps": True},
    {"guidance": -0.5}, {"guidance": 20.5}, {"guidance_2": 50}, {"boundary_ratio": 1.5},
    {"num_frames": 400}, {"width": 4096}, {"fps": 0},
    {"lora_weights": {"style": 9.0}}, {"lora_weights": {"style": "high"}},
])
def test_unusable_values_are_refused(bad):
    with pytest.raises(SettingsError) as info:
        normalise_settings(bad)
    assert str(info.value)  # says what was wrong


@pytest.mark.parametrize("guidance, guidance_2", [(1.0, 1.5), (0.0, 5.0), (1, 1.01)])
def test_guidance_off_with_guidance_2_on_is_refused(guidance, guidance_2):
    """diffusers' Wan I2V pipeline turns CFG on only when guidance > 1, so guidance_2 would be dropped silently."""
    with pytest.raises(SettingsError, match=r"guidance_2 .* would be silently ignored.*guidance above 1"):
        normalise_settings({"guidance": guidance, "guidance_2": guidance_2})


@pytest.mark.parametrize("guidance, guidance_2", [(1.0, None), (1.0, 1.0), (1.0, 0.5), (1.5, 1.0), (5.0, 5.0), (1.01, 4.0)])
def test_guidance_pairs_that_mean_what_they_say_pass(guidance, guidance_2):
    settings, _ = normalise_settings({"guidance": guidance, "guidance_2": guidance_2})
    assert (settings.guidance, settings.guidance_2) == (guidance, guidance_2)


def test_guidance_edges_and_numeric_strings():
    assert normalise_settings({"guidance": 0.0})[0].guidance == 0.0
    assert normalise_settings({"guidance": 20})[0].guidance == 20.0
    assert normalise_settings({"steps": "4"})[0].steps == 4  # a CLI passes numbers as text
    assert normalise_settings({"guidance_2": None})[0].guidance_2 is None


# -- seeds --------------------------------------------------------------------------------------


def test_seed_range():
    assert SEED_MAX == 2**64 - 1
    for seed in (0, 1, 2**32, SEED_MAX):
        assert validate_seed(seed) == seed
    assert validate_seed(" 42 ") == 42 and validate_seed("18446744073709551615") == SEED_MAX
    torch.Generator().manual_seed(validate_seed(SEED_MAX))  # torch accepts the top of the range
    for bad in (-1, SEED_MAX + 1, "x", "", 1.5, True, None):
        with pytest.raises(SettingsError):
            validate_seed(bad)


# -- fit_resolution -----------------------------------------------------------------------------


@pytest.mark.parametrize("image, expected", [
    ((832, 480), (832, 480)),
    ((480, 832), (480, 832)),
    ((1920, 1080), (832, 464)),
    ((1080, 1920), (464, 832)),
    ((1280, 720), (832, 464)),
    ((1024, 1024), (624, 624)),
    ((416, 240), (832, 480)),  # a small image is scaled up to the budget
])
def test_fit_resolution(image, expected):
    width, height = fit_resolution(*image, BUDGET)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0 and width * height <= BUDGET


@pytest.mark.parametrize("image", [(3000, 2000), (2000, 3000), (640, 480), (333, 777), (5000, 100), (100, 5000), (320, 192)])
@pytest.mark.parametrize("budget", [BUDGET, 7168, 1280 * 720])
def test_fit_resolution_invariants(image, budget):
    width, height = fit_resolution(*image, budget)
    assert width % 16 == 0 and height % 16 == 0 and width * height <= budget
    aspect = min(4.0, max(0.25, image[0] / image[1]))
    if budget >= BUDGET:  # at real sizes the aspect survives the rounding to 16
        assert abs(width / height - aspect) / aspect < 0.06
        assert width * height >= 0.85 * budget
    assert fit_resolution(image[1], image[0], budget) == (height, width)  # portrait is the transpose


@pytest.mark.parametrize("size", [(144, 112), (112, 400), (208, 720), (192, 752), (1248, 704), (64, 112)])
def test_fit_resolution_keeps_an_image_that_is_exactly_the_budget(size):
    """Float error in sqrt() must not cost a step of 16 (144x112 used to come out 144x96)."""
    assert fit_resolution(*size, size[0] * size[1]) == size


def test_fit_resolution_refuses_empty_images():
    with pytest.raises(SettingsError):
        fit_resolution(0, 10, BUDGET)


# -- MotionState --------------------------------------------------------------------------------


def states():
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 16, 3, 60, 104, generator=generator)
    return [
        MotionState(LATENT_TAIL, {"motion_latents": latent}, {"height": "480", "width": "832"}),
        MotionState(LATENT_TAIL, {"motion_latents": latent.to(torch.bfloat16)}, {"dtype": "bf16"}),
        MotionState(PIXEL_TAIL, {"motion_frames": torch.randint(0, 256, (5, 64, 112, 3), dtype=torch.uint8,
                                                                 generator=generator)}, {}),
        MotionState(CAMERA, {"pose": torch.tensor([0.1, -2.0, 3.5], dtype=torch.float64),
                             "velocity": torch.tensor([1e-300, float("inf"), -0.0], dtype=torch.float64)},
                    {"note": "ünïcode ✓"}),
    ]


@pytest.mark.parametrize("index", range(4))
def test_motion_state_save_load_is_bit_exact(tmp_path, index):
    state = states()[index]
    path = tmp_path / "motion" / "shot_001.safetensors"
    state.save(path)
    loaded = MotionState.load(path)
    assert loaded.kind == state.kind and loaded.meta == state.meta
    assert loaded.tensors.keys() == state.tensors.keys()
    for name, tensor in state.tensors.items():
        got = loaded.tensors[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        assert torch.equal(got.view(torch.uint8), tensor.contiguous().view(torch.uint8)), name  # same bytes
    assert loaded.fingerprint() == state.fingerprint() and loaded.equals(state)
    assert MotionState.from_bytes(state.to_bytes()).equals(state)
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temp file


def test_fingerprint_tells_states_apart():
    a, b, pixel, camera = states()
    assert len({s.fingerprint() for s in (a, b, pixel, camera)}) == 4  # bf16 copy differs from the float32 one
    flipped = a.tensors["motion_latents"].clone()
    flipped.view(-1)[12345] = torch.nextafter(flipped.view(-1)[12345], torch.tensor(1e9))  # one ulp
    assert not MotionState(a.kind, {"motion_latents": flipped}, a.meta).equals(a)
    assert not MotionState(a.kind, a.tensors, {"height": "480"}).equals(a)
    assert not MotionState(PIXEL_TAIL, a.tensors, a.meta).equals(a)
    assert MotionState(a.kind, {"motion_latents": a.tensors["motion_latents"].clone()}, dict(a.meta)).equals(a)
    assert not a.equals(None)
    # a non-contiguous view saves and fingerprints like its contiguous copy
    view = a.tensors["motion_latents"][:, :, 1:]
    assert MotionState(a.kind, {"m": view}).fingerprint() == MotionState(a.kind, {"m": view.contiguous()}).fingerprint()
