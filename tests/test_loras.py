"""The LoRA stack on the tiny Wan transformers: every key format, weights, stacking, targeting, refusals.

The tiny transformer (svi_studio.engines.tiny): 2 blocks, inner dim 24, ffn 32, text embedded to 24;
the Wan2.1 layout adds attn2.add_k_proj / add_v_proj (original names cross_attn.k_img / v_img), 24 → 24.
Expected outputs come from merging W += B @ A by hand into a copy of the transformer, so the key
mapping (q → to_q, ffn.0 → ffn.net.0.proj, …) and the alpha scaling are checked, not just "something changed".
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from svi_studio.engines import load_engine
from svi_studio.engines.loras import LoraError, LoraSpec, LoraStack
from svi_studio.engines.wan import tiny_settings
from svi_studio.engines.request import ClipRequest

RANK = 4
FORMATS = ("diffsynth", "pipe_dit", "wan_alpha", "kohya", "diffusers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def block_modules(i2v: bool = False) -> list[tuple[str, str, int, int]]:
    """(original Wan name, diffusers name, in_features, out_features) of the LoRA-able linears of one tiny block."""
    names = ["to_q", "to_k", "to_v", "to_out.0"]
    mods = [(f"self_attn.{o}", f"attn1.{d}", 24, 24) for o, d in zip("qkvo", names)]
    mods += [(f"cross_attn.{o}", f"attn2.{d}", 24, 24) for o, d in zip("qkvo", names)]
    mods += [("ffn.0", "ffn.net.0.proj", 24, 32), ("ffn.2", "ffn.net.2", 32, 24)]
    if i2v:
        mods += [("cross_attn.k_img", "attn2.add_k_proj", 24, 24), ("cross_attn.v_img", "attn2.add_v_proj", 24, 24)]
    return mods


def lora_matrices(seed: int, i2v: bool = False, blocks=(0, 1), only=None, scale: float = 0.3):
    """{(block, original name, diffusers name): (A (RANK, in), B (out, RANK))}, random but seeded."""
    generator = torch.Generator().manual_seed(seed)
    mats = {}
    for block in blocks:
        for original, diffusers, fan_in, fan_out in block_modules(i2v):
            if only is None or original in only:
                mats[(block, original, diffusers)] = (torch.randn(RANK, fan_in, generator=generator) * scale,
                                                      torch.randn(fan_out, RANK, generator=generator) * scale)
    return mats


def lora_state_dict(fmt: str, mats, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The same LoRA in one of the key formats found in the wild (alpha only where the format has one)."""
    sd = {}
    for (block, original, diffusers), (a, b) in mats.items():
        if fmt == "diffsynth":  # SVI 2.0 Pro files: DiffSynth + PEFT, bare
            sd[f"blocks.{block}.{original}.lora_A.default.weight"] = a
            sd[f"blocks.{block}.{original}.lora_B.default.weight"] = b
        elif fmt == "pipe_dit":
            sd[f"pipe.dit.blocks.{block}.{original}.lora_A.default.weight"] = a
            sd[f"pipe.dit.blocks.{block}.{original}.lora_B.default.weight"] = b
        elif fmt == "wan_alpha":  # original Wan / ComfyUI
            base = f"diffusion_model.blocks.{block}.{original}"
            sd[f"{base}.lora_down.weight"], sd[f"{base}.lora_up.weight"] = a, b
            sd[f"{base}.alpha"] = torch.tensor(float(RANK if alpha is None else alpha))
        elif fmt == "kohya":  # Kohya / musubi-tuner
            base = f"lora_unet_blocks_{block}_{original.replace('.', '_')}"
            sd[f"{base}.lora_down.weight"], sd[f"{base}.lora_up.weight"] = a, b
            sd[f"{base}.alpha"] = torch.tensor(float(RANK if alpha is None else alpha))
        elif fmt == "diffusers":
            sd[f"transformer.blocks.{block}.{diffusers}.lora_A.weight"] = a
            sd[f"transformer.blocks.{block}.{diffusers}.lora_B.weight"] = b
        elif fmt == "diffusers_bare":
            sd[f"blocks.{block}.{diffusers}.lora_A.weight"] = a
            sd[f"blocks.{block}.{diffusers}.lora_B.weight"] = b
        else:
            raise ValueError(fmt)
    return {k: v.contiguous() for k, v in sd.items()}


def write(tmp_path: Path, name: str, sd: dict) -> str:
    path = tmp_path / name
    save_file(sd, str(path))
    return str(path)


def merged_copy(transformer, mats, scale: float = 1.0):
    """A copy of `transformer` with W += scale · B @ A merged by hand."""
    reference = copy.deepcopy(transformer)
    modules = dict(reference.named_modules())
    with torch.no_grad():
        for (block, _, diffusers), (a, b) in mats.items():
            modules[f"blocks.{block}.{diffusers}"].weight += scale * (b @ a)
    return reference


def fixed_inputs(transformer) -> dict[str, torch.Tensor]:
    """One fixed transformer input: hidden (1, 36, 2, 8, 8), timestep, text (1, 6, 32), CLIP embeds (1, 5, 4) on Wan2.1."""
    generator = torch.Generator().manual_seed(123)
    inputs = {
        "hidden_states": torch.randn(1, 36, 2, 8, 8, generator=generator),
        "timestep": torch.tensor([700.0]),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator),
    }
    if transformer.config.image_dim is not None:
        inputs["encoder_hidden_states_image"] = torch.randn(1, 5, transformer.config.image_dim, generator=generator)
    return inputs


@torch.no_grad()
def run(transformer) -> torch.Tensor:
    """The transformer's prediction (1, 16, 2, 8, 8) on the fixed input."""
    return transformer(**fixed_inputs(transformer), return_dict=False)[0]


def outputs(engine) -> dict[str, torch.Tensor]:
    return {name: run(getattr(engine.pipe, name)) for name in ("transformer", "transformer_2")
            if getattr(engine.pipe, name, None) is not None}


def no_adapters(engine) -> bool:
    return all(not getattr(getattr(engine.pipe, name), "peft_config", None)
               for name in ("transformer", "transformer_2") if getattr(engine.pipe, name, None) is not None)


# -- every key format -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS + ("diffusers_bare",))
def test_format_applies_exactly_and_weight_zero_restores_base(tmp_path, fmt):
    engine = load_engine("tiny")
    base = outputs(engine)
    mats = lora_matrices(seed=1)
    expected = {name: run(merged_copy(getattr(engine.pipe, name), mats)) for name in base}
    engine.loras.add(LoraSpec(name="style", path=write(tmp_path, f"{fmt}.safetensors", lora_state_dict(fmt, mats))))
    assert engine.loras.applied["style"] == 2 * 2 * 10  # 10 linears × 2 blocks × 2 experts
    loaded = outputs(engine)
    for name in base:
        assert not torch.allclose(loaded[name], base[name], atol=1e-4), f"{fmt} changed nothing in {name}"
        torch.testing.assert_close(loaded[name], expected[name], atol=2e-5, rtol=1e-4)
    engine.loras.set_weights({"style": 0.0})
    for name, tensor in outputs(engine).items():
        assert torch.equal(tensor, base[name]), f"weight 0 is not the base output ({fmt}, {name})"
    engine.loras.set_weights({"style": 1.0})
    for name, tensor in outputs(engine).items():
        assert torch.equal(tensor, loaded[name])


@pytest.mark.parametrize("fmt", ["wan_alpha", "kohya"])
def test_alpha_scales_by_alpha_over_rank(tmp_path, fmt):
    engine = load_engine("tiny")
    mats = lora_matrices(seed=2)
    expected = run(merged_copy(engine.pipe.transformer, mats, scale=0.5))
    engine.loras.add(LoraSpec(name="a", path=write(tmp_path, "a.safetensors", lora_state_dict(fmt, mats, alpha=RANK / 2))))
    torch.testing.assert_close(run(engine.pipe.transformer), expected, atol=2e-5, rtol=1e-4)


def test_partial_kohya_lora_loads(tmp_path):
    """A Kohya LoRA that trained only some modules of some blocks (diffusers' musubi converter raises KeyError)."""
    engine = load_engine("tiny")
    mats = lora_matrices(seed=3, blocks=(1,), only={"self_attn.q", "ffn.2"})
    expected = run(merged_copy(engine.pipe.transformer, mats))
    engine.loras.add(LoraSpec(name="part", path=write(tmp_path, "part.safetensors", lora_state_dict("kohya", mats)),
                              target="high"))
    assert engine.loras.applied["part"] == 2
    torch.testing.assert_close(run(engine.pipe.transformer), expected, atol=2e-5, rtol=1e-4)


def test_k_img_v_img_reach_the_wan21_image_projections(tmp_path):
    engine = load_engine("tiny-film")
    transformer = engine.pipe.transformer
    mats = lora_matrices(seed=4, i2v=True)
    expected = run(merged_copy(transformer, mats))
    engine.loras.add(LoraSpec(name="i2v", path=write(tmp_path, "i2v.safetensors", lora_state_dict("wan_alpha", mats))))
    assert engine.loras.applied["i2v"] == 2 * 12
    add_k = transformer.blocks[1].attn2.add_k_proj
    a, b = mats[(1, "cross_attn.k_img", "attn2.add_k_proj")]
    assert torch.equal(add_k.lora_A["i2v"].weight, a) and torch.equal(add_k.lora_B["i2v"].weight, b)
    torch.testing.assert_close(run(transformer), expected, atol=2e-5, rtol=1e-4)


# -- weights per clip, stacking, fusing --------------------------------------------------------


def test_weights_change_between_clips_without_reloading(tmp_path, reference_image, monkeypatch):
    engine = load_engine("tiny")
    settings = tiny_settings(engine, num_frames=9)
    anchor = engine.encode_anchor(reference_image, settings)
    base = engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings))
    path = write(tmp_path, "svi.safetensors", lora_state_dict("diffsynth", lora_matrices(seed=5)))
    engine.loras.add(LoraSpec(name="svi", path=path))

    def no_reload(*args, **kwargs):
        raise AssertionError("the LoRA was loaded again")

    monkeypatch.setattr(engine.pipe, "load_lora_weights", no_reload)
    clips = {w: engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings.merged({"lora_weights": {"svi": w}})))
             for w in (1.0, 0.0, 0.5)}
    assert torch.equal(clips[0.0].latents, base.latents) and (clips[0.0].frames == base.frames).all()
    assert not torch.equal(clips[1.0].latents, base.latents)
    assert not torch.equal(clips[0.5].latents, clips[1.0].latents)
    assert not torch.equal(clips[0.5].latents, base.latents)
    again = engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings.merged({"lora_weights": {"svi": 1.0}})))
    assert torch.equal(again.latents, clips[1.0].latents)
    assert clips[1.0].info["loras"][0]["file"] == "svi.safetensors"


def test_two_adapters_stack(tmp_path):
    engine = load_engine("tiny")
    mats_a, mats_b = lora_matrices(seed=6), lora_matrices(seed=7)
    engine.loras.add(LoraSpec(name="a", path=write(tmp_path, "a.safetensors", lora_state_dict("diffsynth", mats_a))))
    engine.loras.add(LoraSpec(name="b", path=write(tmp_path, "b.safetensors", lora_state_dict("diffusers", mats_b))))
    both = outputs(engine)  # loading b left a active: the stack re-activates every adapter
    engine.loras.set_weights({"a": 1.0, "b": 0.0})
    only_a = outputs(engine)
    engine.loras.set_weights({"a": 0.0, "b": 1.0})
    only_b = outputs(engine)
    for name in both:
        assert not torch.allclose(both[name], only_a[name], atol=1e-4)
        assert not torch.allclose(both[name], only_b[name], atol=1e-4)
    pristine = load_engine("tiny").pipe.transformer  # same seeded weights, no adapters
    expected = run(merged_copy(merged_copy(pristine, mats_a), mats_b))
    torch.testing.assert_close(both["transformer"], expected, atol=3e-5, rtol=1e-4)
    engine.loras.remove("a")
    engine.loras.set_weights({})
    torch.testing.assert_close(outputs(engine)["transformer"], only_b["transformer"], atol=1e-6, rtol=0)


def test_fused_matches_unfused(tmp_path, reference_image):
    path = write(tmp_path, "style.safetensors", lora_state_dict("wan_alpha", lora_matrices(seed=8)))
    spec = LoraSpec(name="style", path=path, weight=0.8)
    fused = load_engine("tiny", fuse_loras=True, extra_loras=[spec])
    plain = load_engine("tiny", extra_loras=[spec])
    settings = tiny_settings(fused, num_frames=9)
    anchor = fused.encode_anchor(reference_image, settings)
    for weights in ({}, {"style": 0.3}):
        s = settings.merged({"lora_weights": weights})
        a = fused.generate_clip(ClipRequest(anchor, None, "dust", "", 9, s))
        b = plain.generate_clip(ClipRequest(anchor, None, "dust", "", 9, s))
        torch.testing.assert_close(a.latents, b.latents, atol=1e-4, rtol=1e-4)
    assert fused.loras._fused and not plain.loras._fused


# -- Wan2.2 expert targeting ------------------------------------------------------------------


@pytest.mark.parametrize("target, changed", [("high", "transformer"), ("low", "transformer_2")])
def test_target_reaches_only_its_expert(tmp_path, target, changed):
    engine = load_engine("tiny")
    base = outputs(engine)
    engine.loras.add(LoraSpec(name="t", target=target,
                              path=write(tmp_path, "t.safetensors", lora_state_dict("diffsynth", lora_matrices(seed=9)))))
    after = outputs(engine)
    untouched = "transformer_2" if changed == "transformer" else "transformer"
    assert not torch.allclose(after[changed], base[changed], atol=1e-4)
    assert torch.equal(after[untouched], base[untouched])
    assert not getattr(getattr(engine.pipe, untouched), "peft_config", None)
    engine.loras.remove("t")
    assert torch.equal(outputs(engine)[changed], base[changed])


# -- refusals ---------------------------------------------------------------------------------


def _refused(engine, path, *fragments):
    with pytest.raises(LoraError) as info:
        engine.loras.add(LoraSpec(name="bad", path=str(path)))
    message = str(info.value)
    assert Path(path).name in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert not engine.loras.specs and no_adapters(engine)


def test_refusals_name_the_file(tmp_path):
    engine = load_engine("tiny")
    good = lora_state_dict("diffsynth", lora_matrices(seed=10))

    foreign = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(3072, 4)}
    _refused(engine, write(tmp_path, "sdxl_style.safetensors", foreign), "another model")
    flux = {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 3072),
            "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(3072, 4)}
    _refused(engine, write(tmp_path, "flux_style.safetensors", flux), "change nothing")

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not even read")
    _refused(engine, ckpt, "pickle")
    zipped = tmp_path / "zipped.safetensors"
    torch.save(good, zipped)  # torch's zip format, renamed
    _refused(engine, zipped, "pickle")
    legacy = tmp_path / "legacy.safetensors"
    legacy.write_bytes(pickle.dumps({"x": 1}, protocol=2))
    _refused(engine, legacy, "pickle")

    full = Path(write(tmp_path, "truncated.safetensors", good))
    full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    _refused(engine, full, "truncated")

    rank = dict(good)
    rank["blocks.0.self_attn.q.lora_B.default.weight"] = torch.zeros(24, RANK + 4)
    _refused(engine, write(tmp_path, "rank.safetensors", rank), "rank")
    wide = dict(good)
    wide["blocks.0.self_attn.q.lora_A.default.weight"] = torch.zeros(RANK, 48)
    _refused(engine, write(tmp_path, "wide.safetensors", wide), "different model size")
    tall = dict(good)
    tall["blocks.1.ffn.0.lora_B.default.weight"] = torch.zeros(64, RANK)
    _refused(engine, write(tmp_path, "tall.safetensors", tall), "different model size")
    lonely = {k: v for k, v in good.items() if k != "blocks.1.ffn.2.lora_B.default.weight"}
    _refused(engine, write(tmp_path, "lonely.safetensors", lonely), "partner")

    # the engine still works after all that
    path = write(tmp_path, "fine.safetensors", good)
    engine.loras.add(LoraSpec(name="fine", path=path))
    with pytest.raises(LoraError):
        engine.loras.add(LoraSpec(name="fine", path=path))  # the name is taken
    with pytest.raises(LoraError):
        engine.loras.add(LoraSpec(name="x", path=path, target="middle"))
    with pytest.raises(LoraError):
        engine.loras.set_weights({"nope": 1.0})


def test_stack_on_its_own_pipeline_describes_itself(tmp_path):
    engine = load_engine("tiny")
    stack = LoraStack(engine.pipe)
    stack.add(LoraSpec(name="s", path=write(tmp_path, "s.safetensors", lora_state_dict("kohya", lora_matrices(seed=11))),
                       target="low", weight=0.7, role="speed"))
    [entry] = stack.describe()
    assert entry == {"name": "s", "file": "s.safetensors", "target": "low", "role": "speed", "default_weight": 0.7,
                     "modules": 20}


def test_a_style_lora_only_reaches_clips_that_name_it(tmp_path, reference_image):
    """The engine is shared by every session: an uploaded style LoRA must not leak into other films."""
    engine = load_engine("tiny")
    settings = tiny_settings(engine, num_frames=9)
    anchor = engine.encode_anchor(reference_image, settings)
    base = engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings))
    path = write(tmp_path, "style.safetensors", lora_state_dict("diffsynth", lora_matrices(seed=8)))
    engine.loras.add(LoraSpec(name="someones_style", path=path, role="style"))
    other_session = engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings))
    assert torch.equal(other_session.latents, base.latents)
    owner = engine.generate_clip(ClipRequest(anchor, None, "rain", "", 5, settings.merged({"lora_weights": {"someones_style": 1.0}})))
    assert not torch.equal(owner.latents, base.latents)
