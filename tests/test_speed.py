"""The speed switchboard (engines/speed.py) on the tiny engines: each switch off is bit-identical to an
engine built without it, each switch on runs and stays within its stated tolerance, and what
cannot run here is refused with a message that says why.

Tolerances are on the clip's denoised latents, relative to their standard deviation (~1.1): the tiny
models are random, so an approximation that is harmless on a trained model can move them a lot.
    int8 weight-only            mean |Δ| < 1 % of std
    first-block cache 0.05      mean |Δ| < 5 %        (4 steps, one transformer)
    MagCache 0.06, flat ratios  mean |Δ| < 5 %
    TaylorSeer (lite)           mean |Δ| < 20 %       (it forecasts the whole transformer output)
    compile (aot_eager), VAE tiling below the tile size, attention "native": exactly equal
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from svi_studio.engines import load_engine
from svi_studio.engines.loras import LoraError, LoraSpec
from svi_studio.engines.presets import PresetError, load_preset
from svi_studio.engines.request import ClipRequest
from svi_studio.engines.speed import SWITCHES, SpeedError, SpeedOptions, parse_cache
from svi_studio.engines.wan import load_wan_engine, tiny_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFF = {"attention": "native", "compile": None, "cache": None, "quantize": None, "vae_tiling": False, "fuse_loras": False}


def render(engine, reference_image, steps: int = 2, weights: dict | None = None):
    settings = tiny_settings(engine, num_frames=9, steps=steps).merged({"lora_weights": weights or {}})
    anchor = engine.encode_anchor(reference_image, settings)
    return engine.generate_clip(ClipRequest(anchor, None, "rain on the sea", "", 5, settings))


@pytest.fixture(scope="module")
def baselines(reference_image):
    """Clips of engines built without any speed switch: (name, steps) → Clip."""
    return {(name, steps): render(load_engine(name), reference_image, steps)
            for name, steps in (("tiny", 2), ("tiny-film", 2), ("tiny-film", 4))}


def relative_change(clip, base) -> float:
    return float((clip.latents - base.latents).abs().mean() / base.latents.std())


# -- off --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "tiny-film"])
def test_every_switch_off_is_bit_identical(reference_image, baselines, name):
    engine = load_engine(name, speed=OFF)
    assert engine.speed.options.is_off and "speed" not in engine.describe()
    clip = render(engine, reference_image)
    base = baselines[(name, 2)]
    assert torch.equal(clip.latents, base.latents) and (clip.frames == base.frames).all()


# -- on: runs, within tolerance ----------------------------------------------------------------


@pytest.mark.parametrize("speed, tolerance, steps", [
    ({"quantize": "int8"}, 0.01, 2),
    ({"cache": "fbc:0.05"}, 0.05, 4),
    ({"cache": "magcache:0.06", "mag_ratios": [1.0, 1.0, 1.0, 1.0]}, 0.05, 4),
    ({"cache": "taylorseer:2"}, 0.20, 4),
], ids=["int8", "fbc", "magcache", "taylorseer"])
def test_switch_on_runs_within_tolerance(reference_image, baselines, speed, tolerance, steps):
    engine = load_engine("tiny-film", speed=speed)
    clip = render(engine, reference_image, steps)
    change = relative_change(clip, baselines[("tiny-film", steps)])
    assert 0 < change < tolerance, f"{speed}: mean |Δ| = {change:.2%} of std"
    assert engine.describe()["speed"] == engine.speed.describe()
    again = render(engine, reference_image, steps)  # cache state does not leak from one clip into the next
    assert torch.equal(again.latents, clip.latents)


def test_magcache_calibration_skips_nothing_and_rearms_per_step_count(reference_image, baselines, capsys):
    engine = load_engine("tiny-film", speed={"cache": "magcache:calibrate"})
    assert torch.equal(render(engine, reference_image, 4).latents, baselines[("tiny-film", 4)].latents)
    assert "mag_ratios" in capsys.readouterr().out  # diffusers prints the ratios to copy into the preset
    assert torch.equal(render(engine, reference_image, 2).latents, baselines[("tiny-film", 2)].latents)


def test_a_cancelled_clip_leaves_no_cache_state_behind(reference_image):
    from svi_studio.engines.base import Cancelled

    engine = load_engine("tiny-film", speed={"cache": "fbc:0.05"})
    first = render(engine, reference_image, 4)

    class CancelAtStep2:
        calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 3

    settings = tiny_settings(engine, num_frames=9, steps=4)
    anchor = engine.encode_anchor(reference_image, settings)
    with pytest.raises(Cancelled):
        engine.generate_clip(ClipRequest(anchor, None, "another prompt", "", 9, settings), cancel=CancelAtStep2())
    assert torch.equal(render(engine, reference_image, 4).latents, first.latents)


def test_regional_compile_runs_and_matches(reference_image, baselines):
    """compile_repeated_blocks with the aot_eager backend (no C++ toolchain needed): the same numbers.
    The inductor backend (the default of --compile) is what the GPU bench measures."""
    engine = load_engine("tiny-film", speed={"compile": "aot_eager"})
    clip = render(engine, reference_image)
    torch.testing.assert_close(clip.latents, baselines[("tiny-film", 2)].latents, atol=1e-5, rtol=1e-5)


def test_vae_tiling_on(reference_image, baselines):
    """At the tiny size the frames fit one tile (256 px), so tiling changes nothing; with small tiles
    the decoder runs tile by tile and the blended frames stay close to the untiled decode."""
    engine = load_engine("tiny-film", speed={"vae_tiling": True})
    assert engine.pipe.vae.use_tiling
    clip = render(engine, reference_image)
    base = baselines[("tiny-film", 2)]
    assert (clip.frames == base.frames).all()
    engine.pipe.vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32,
                                  tile_sample_stride_height=16, tile_sample_stride_width=16)
    tiled = engine.pipe.decode_normalised(base.latents)[0].numpy().astype(float)
    assert abs(tiled - base.frames.astype(float)).mean() < 8.0  # of 255


def test_fused_loras_switch_matches_unfused(tmp_path, reference_image):
    sd = {f"blocks.{b}.self_attn.{m}.lora_{ab}.default.weight": torch.randn(4, 24) * 0.3 if ab == "A" else torch.randn(24, 4) * 0.3
          for b in (0, 1) for m in "qkvo" for ab in "AB"}
    path = tmp_path / "style.safetensors"
    save_file(sd, str(path))
    spec = LoraSpec(name="style", path=str(path), weight=0.7)
    fused = load_engine("tiny", speed={"fuse_loras": True}, extra_loras=[spec])
    plain = load_engine("tiny", extra_loras=[spec])
    assert fused.loras.fuse and fused.loras._fused
    torch.testing.assert_close(render(fused, reference_image).latents, render(plain, reference_image).latents,
                               atol=1e-4, rtol=1e-4)


def test_int8_with_loras_before_and_after_quantizing(tmp_path, reference_image):
    """Preset LoRAs (loaded before quantizing) and a style LoRA uploaded later both run over int8 layers."""
    sd = {f"blocks.{b}.ffn.{i}.lora_{ab}.default.weight": torch.randn(4, (24, 32)[i // 2]) * 0.3 if ab == "A"
          else torch.randn((32, 24)[i // 2], 4) * 0.3 for b in (0, 1) for i in (0, 2) for ab in "AB"}
    path = tmp_path / "style.safetensors"
    save_file(sd, str(path))
    spec = LoraSpec(name="style", path=str(path))
    plain = render(load_engine("tiny", extra_loras=[spec]), reference_image, weights={"style": 1.0})
    before = load_engine("tiny", speed={"quantize": "int8"}, extra_loras=[spec])
    after = load_engine("tiny", speed={"quantize": "int8"})
    after.loras.add(spec)
    for engine in (before, after):
        clip = render(engine, reference_image, weights={"style": 1.0})
        assert relative_change(clip, plain) < 0.01
    # a full weight delta cannot go into packed int8 weights
    delta = tmp_path / "delta.safetensors"
    save_file({"diffusion_model.blocks.0.ffn.0.diff": torch.zeros(32, 24)}, str(delta))
    with pytest.raises(LoraError, match="quantized"):
        after.loras.add(LoraSpec(name="delta", path=str(delta)))


# -- refused, with the reason -----------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("speed, fragment", [
    ({"quantize": "fp8"}, "compute capability 8.9"),
    ({"attention": "flash"}, "needs a CUDA GPU"),
    ({"attention": "sage"}, "needs a CUDA GPU"),
])
def test_cuda_only_switches_are_refused_on_cpu(speed, fragment):
    with pytest.raises(SpeedError, match=fragment):
        load_engine("tiny", speed=speed)


@pytest.mark.parametrize("speed, fragment", [
    ({"cache": "magcache:calibrate"}, "two experts"),  # tiny is Wan2.2: two experts
    ({"cache": "fastcache"}, "unknown"),
    ({"cache": "fbc:3"}, "between 0 and 1"),
    ({"cache": "taylorseer:0.5"}, "whole number"),
    ({"attention": "turbo"}, "unknown"),
    ({"quantize": "int4"}, "int8, fp8"),
    ({"quantize": "int8", "fuse_loras": True}, "do not go together"),
    ({"turbo": True}, "unknown speed switch"),
])
def test_unusable_switches_are_refused(speed, fragment):
    with pytest.raises(SpeedError, match=fragment):
        load_engine("tiny", speed=speed)


def test_magcache_without_ratios_says_how_to_get_them():
    with pytest.raises(SpeedError, match="magcache:calibrate, then put the printed ratios"):
        load_engine("tiny-film", speed={"cache": "magcache"})


def test_preset_speed_is_on_by_default_and_flags_override_it(tmp_path, reference_image):
    preset = load_preset("tiny-film", {"speed": {"cache": "fbc:0.05", "vae_tiling": True}})
    engine = load_wan_engine(preset)
    assert engine.speed.options == SpeedOptions(cache="fbc:0.05", vae_tiling=True)
    overridden = load_wan_engine(preset, speed={"cache": "off", "vae_tiling": False})
    assert overridden.speed.options.is_off
    with pytest.raises(PresetError, match="speed: cache"):
        load_preset("tiny", {"speed": {"cache": "sometimes"}})


def test_every_switch_is_documented():
    assert set(SWITCHES) == {"attention", "compile", "cache", "quantize", "vae_tiling", "fuse_loras"}
    assert all(values and len(effect) > 40 for values, effect in SWITCHES.values())
    assert parse_cache("fbc") == ("fbc", None) and parse_cache("taylorseer:4") == ("taylorseer", 4)


# -- the command line ---------------------------------------------------------------------------


def test_cli_speed_flags(tmp_path, reference_image, capsys):
    import json

    from svi_studio.cli import main

    reference = tmp_path / "ref.png"
    reference_image.save(reference)
    base = ["render", "--reference", str(reference), "--prompt", "waves", "--engine", "tiny-film",
            "--set", "steps=2", "--set", "num_frames=9", "--json"]
    assert main(base + ["--project-dir", str(tmp_path / "p"), "--cache", "fbc:0.05", "--vae-tiling"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    engine = next(line["engine"] for line in lines if "engine" in line)
    assert engine["speed"]["cache"] == "fbc:0.05" and engine["speed"]["vae_tiling"] is True
    if not torch.cuda.is_available():
        assert main(base + ["--project-dir", str(tmp_path / "q"), "--quantize", "fp8"]) == 1
        assert "compute capability 8.9" in json.loads(capsys.readouterr().out.splitlines()[-1])["error"]
    draft = ["render", "--reference", str(reference), "--prompt", "waves", "--engine", "draft", "--cache", "fbc"]
    assert main(draft + ["--project-dir", str(tmp_path / "d")]) == 1
    assert "wan engines only" in capsys.readouterr().err


# -- the app's Speed panel ------------------------------------------------------------------------


def test_speed_panel_shows_each_switch_state_and_effect():
    import gradio as gr

    from svi_studio.ui.speed_panel import speed_panel, speed_table

    engine = load_engine("tiny-film", speed={"cache": "fbc:0.05", "vae_tiling": True})
    table = speed_table(engine)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == set(SWITCHES)
    assert "**fbc:0.05**" in rows["cache"] and "**on**" in rows["vae_tiling"] and "**off**" in rows["quantize"]
    assert "**native**" in rows["attention"] and "--quantize int8|fp8" in rows["quantize"]
    with gr.Blocks() as wan_app:
        speed_panel(engine)
    with gr.Blocks() as draft_app:
        speed_panel(load_engine("draft"))
    ids = lambda app: {getattr(block, "elem_id", None) for block in app.blocks.values()}  # noqa: E731
    assert "speed-table" in ids(wan_app) and "speed-table" not in ids(draft_app)
