"""LoRA files as people have them: every key format and every module kind, checked weight by weight.

Each test writes a LoRA at the tiny engines' sizes (svi_studio.engines.tiny: 2 blocks, inner dim 24,
ffn 32, text 32 → 24, time 256 → 24 → 144, head 24 → 64; the Wan2.1 layout adds the image
projections k_img / v_img (24 → 24) and img_emb (4 → 4 → 24)) and checks the transformer's
effective parameters against the formula: W + weight · scale · B·A for a low-rank pair (scale =
alpha / rank where the format has an alpha), p + weight · delta for `diff` / `diff_b` / `diff_m`.
The name table here is written out independently of the loader's.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save, save_file

from svi_studio.engines import load_engine
from svi_studio.engines.loras import LoraError, LoraSpec, base_layer, read_lora_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK = 4
# (original Wan name, diffusers name, in, out) of every linear a Wan LoRA can carry, per block and global.
BLOCK_LINEARS = [(f"self_attn.{o}", f"attn1.{d}", 24, 24) for o, d in zip("qkvo", ["to_q", "to_k", "to_v", "to_out.0"])]
BLOCK_LINEARS += [(f"cross_attn.{o}", f"attn2.{d}", 24, 24) for o, d in zip("qkvo", ["to_q", "to_k", "to_v", "to_out.0"])]
BLOCK_LINEARS += [("ffn.0", "ffn.net.0.proj", 24, 32), ("ffn.2", "ffn.net.2", 32, 24)]
IMAGE_LINEARS = [("cross_attn.k_img", "attn2.add_k_proj", 24, 24), ("cross_attn.v_img", "attn2.add_v_proj", 24, 24)]
GLOBAL_LINEARS = [
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1", 32, 24),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2", 24, 24),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1", 256, 24),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2", 24, 24),
    ("time_projection.1", "condition_embedder.time_proj", 24, 144),
    ("head.head", "proj_out", 24, 64),
]
GLOBAL_IMAGE_LINEARS = [("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj", 4, 4),
                        ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2", 4, 24)]
FORMATS = ("diffsynth", "pipe_dit", "wan", "kohya", "diffusers", "diffusers_bare")


def linears(i2v: bool) -> list[tuple[str, str, int, int]]:
    out = []
    for block in (0, 1):
        for original, diffusers, fan_in, fan_out in BLOCK_LINEARS + (IMAGE_LINEARS if i2v else []):
            out.append((f"blocks.{block}.{original}", f"blocks.{block}.{diffusers}", fan_in, fan_out))
    return out + GLOBAL_LINEARS + (GLOBAL_IMAGE_LINEARS if i2v else [])


def pairs(seed: int, modules) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """{(original name, diffusers name): (A (RANK, in), B (out, RANK))}, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return {(o, d): (torch.randn(RANK, i, generator=generator) * 0.3, torch.randn(n, RANK, generator=generator) * 0.3)
            for o, d, i, n in modules}


def kohya_name(original: str) -> str:
    return "lora_unet_" + original.replace(".", "_")


def write_pairs(fmt: str, mats, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The low-rank pairs in one key format (alpha only where the format has one)."""
    sd = {}
    for (original, diffusers), (a, b) in mats.items():
        if fmt in ("diffsynth", "pipe_dit"):
            base = ("pipe.dit." if fmt == "pipe_dit" else "") + original
            sd[f"{base}.lora_A.default.weight"], sd[f"{base}.lora_B.default.weight"] = a, b
        elif fmt in ("wan", "kohya"):
            base = f"diffusion_model.{original}" if fmt == "wan" else kohya_name(original)
            sd[f"{base}.lora_down.weight"], sd[f"{base}.lora_up.weight"] = a, b
            if alpha is not None:
                sd[f"{base}.alpha"] = torch.tensor(alpha)
        else:
            base = ("transformer." if fmt == "diffusers" else "") + diffusers
            sd[f"{base}.lora_A.weight"], sd[f"{base}.lora_B.weight"] = a, b
    return sd


def write(tmp_path: Path, name: str, sd: dict) -> str:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def snapshot(transformer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in transformer.named_parameters()}


def effective(transformer, module: str, parameter: str = "weight") -> torch.Tensor:
    return getattr(base_layer(transformer.get_submodule(module)), parameter).detach()


def assert_pairs_fused(transformer, before, mats, scale: float):
    for (original, diffusers), (a, b) in mats.items():
        expected = before[f"{diffusers}.weight"] + scale * (b @ a)
        torch.testing.assert_close(effective(transformer, diffusers), expected, atol=1e-5, rtol=1e-5,
                                   msg=lambda m: f"{original} → {diffusers}: {m}")


# -- every format, every module kind ----------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reaches_every_module_kind(tmp_path, fmt):
    """On the Wan2.1 layout (tiny-film: k_img/v_img, img_emb): fused weights = W + weight · (alpha/rank) · B·A."""
    engine = load_engine("tiny-film", fuse_loras=True)
    transformer = engine.pipe.transformer
    before = snapshot(transformer)
    mats = pairs(seed=1, modules=linears(i2v=True))
    alpha = RANK / 2 if fmt in ("wan", "kohya") else None
    note = engine.loras.add(LoraSpec(name="all", path=write(tmp_path, f"{fmt}.safetensors", write_pairs(fmt, mats, alpha)),
                                     weight=0.8))
    assert note is None  # every key applied
    assert engine.loras.applied["all"] == len(mats) == 2 * 12 + 8
    scale = 0.8 * (0.5 if alpha else 1.0)
    assert_pairs_fused(transformer, before, mats, scale)
    engine.loras.set_weights({"all": 0.0})  # unfused, then nothing fused: the base weights, up to unfuse rounding
    for name, value in snapshot(transformer).items():
        if "lora_" not in name:
            torch.testing.assert_close(value, before[name.replace(".base_layer", "")], atol=1e-6, rtol=0)


LIGHTX2V_DELTAS = {  # original key → (diffusers parameter, shape)
    "blocks.{b}.norm3.diff": ("blocks.{b}.norm2.weight", (24,)),
    "blocks.{b}.norm3.diff_b": ("blocks.{b}.norm2.bias", (24,)),
    "blocks.{b}.self_attn.norm_q.diff": ("blocks.{b}.attn1.norm_q.weight", (24,)),
    "blocks.{b}.self_attn.norm_k.diff": ("blocks.{b}.attn1.norm_k.weight", (24,)),
    "blocks.{b}.cross_attn.norm_q.diff": ("blocks.{b}.attn2.norm_q.weight", (24,)),
    "blocks.{b}.cross_attn.norm_k_img.diff": ("blocks.{b}.attn2.norm_added_k.weight", (24,)),
    "blocks.{b}.diff_m": ("blocks.{b}.scale_shift_table", (1, 6, 24)),
    "blocks.{b}.ffn.0.diff": ("blocks.{b}.ffn.net.0.proj.weight", (32, 24)),  # a full weight delta next to its pair
}
GLOBAL_DELTAS = {
    "head.diff_m": ("scale_shift_table", (1, 2, 24)),
    "patch_embedding.diff": ("patch_embedding.weight", (24, 36, 1, 2, 2)),
    "patch_embedding.diff_b": ("patch_embedding.bias", (24,)),
    "img_emb.proj.0.diff": ("condition_embedder.image_embedder.norm1.weight", (4,)),
    "img_emb.proj.4.diff_b": ("condition_embedder.image_embedder.norm2.bias", (24,)),
}


def lightx2v_file(seed: int, i2v: bool):
    """A lightx2v/Lightning-style distill file: lora_down/up + alpha on the linears, diff_b on every linear's
    bias, diff on norms / a linear / the patch embedding, diff_m on the modulation tables.
    Returns (state dict, pairs, {diffusers parameter: delta})."""
    modules = linears(i2v)
    mats = pairs(seed, modules)
    sd = {f"diffusion_model.{k}": v for k, v in write_pairs("diffsynth", mats).items()}
    sd = {k.replace(".lora_A.default.", ".lora_down.").replace(".lora_B.default.", ".lora_up."): v for k, v in sd.items()}
    generator = torch.Generator().manual_seed(seed + 100)
    deltas = {}
    for original, diffusers, _, fan_out in modules:
        delta = torch.randn(fan_out, generator=generator) * 0.1
        sd[f"diffusion_model.{original}.diff_b"], deltas[f"{diffusers}.bias"] = delta, delta
    table = [(k.format(b=b), p.format(b=b), s) for b in (0, 1) for k, (p, s) in LIGHTX2V_DELTAS.items()]
    table += [(k, p, s) for k, (p, s) in GLOBAL_DELTAS.items()]
    for original, parameter, shape in table:
        if not i2v and ("img" in original):
            continue
        delta = torch.randn(*shape, generator=generator) * 0.1
        sd[f"diffusion_model.{original}"], deltas[parameter] = delta, delta
    return sd, mats, deltas


def test_lightx2v_diff_diff_b_diff_m_apply_scale_and_come_off(tmp_path):
    engine = load_engine("tiny-film")
    transformer = engine.pipe.transformer
    before = snapshot(transformer)
    sd, mats, deltas = lightx2v_file(seed=2, i2v=True)
    assert engine.loras.add(LoraSpec(name="lightning", role="speed", path=write(tmp_path, "l.safetensors", sd))) is None

    # 1. Deltas: p + weight · delta, for every kind (norm, modulation, bias, full weight, conv).
    for weight in (1.0, 0.5):
        engine.loras.set_weights({"lightning": weight})
        for parameter, delta in deltas.items():
            module, _, name = parameter.rpartition(".")
            torch.testing.assert_close(effective(transformer, module, name), before[parameter] + weight * delta,
                                       atol=1e-6, rtol=1e-6, msg=lambda m: f"{parameter}: {m}")
    # 2. The forward pass sees pairs and deltas together: compare with a copy merged by hand.
    merged = copy.deepcopy(load_engine("tiny-film").pipe.transformer)
    with torch.no_grad():
        for (_, diffusers), (a, b) in mats.items():
            merged.get_submodule(diffusers).weight += 0.5 * (b @ a)
        for parameter, delta in deltas.items():
            merged.get_parameter(parameter).add_(0.5 * delta)
    inputs = fixed_inputs(transformer)
    with torch.no_grad():
        torch.testing.assert_close(transformer(**inputs, return_dict=False)[0], merged(**inputs, return_dict=False)[0],
                                   atol=2e-5, rtol=1e-4)
    # 3. Weight 0, then removal, give the base parameters back bit for bit.
    engine.loras.set_weights({"lightning": 0.0})
    for parameter in deltas:
        module, _, name = parameter.rpartition(".")
        assert torch.equal(effective(transformer, module, name), before[parameter]), parameter
    engine.loras.set_weights({"lightning": 1.0})
    engine.loras.remove("lightning")
    after = {k.replace(".base_layer", ""): v for k, v in snapshot(transformer).items() if "lora_" not in k}
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def fixed_inputs(transformer) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    inputs = {"hidden_states": torch.randn(1, 36, 2, 8, 8, generator=generator), "timestep": torch.tensor([700.0]),
              "encoder_hidden_states": torch.randn(1, 6, 32, generator=generator)}
    if transformer.config.image_dim is not None:
        inputs["encoder_hidden_states_image"] = torch.randn(1, 5, transformer.config.image_dim, generator=generator)
    return inputs


def test_lightx2v_file_fused_on_the_low_noise_expert(tmp_path):
    """Wan2.2 (two experts): a Lightning low-noise file fused; the high-noise expert stays untouched."""
    engine = load_engine("tiny", fuse_loras=True)
    low, high = engine.pipe.transformer_2, engine.pipe.transformer
    before_low, before_high = snapshot(low), snapshot(high)
    sd, mats, deltas = lightx2v_file(seed=3, i2v=False)
    engine.loras.add(LoraSpec(name="speed_low", target="low", role="speed", path=write(tmp_path, "low.safetensors", sd)))
    assert_pairs_fused(low, before_low, {k: v for k, v in mats.items() if not k[0].endswith("ffn.0")}, 1.0)
    for parameter, delta in deltas.items():
        module, _, name = parameter.rpartition(".")
        expected = before_low[parameter] + delta
        if parameter.endswith("ffn.net.0.proj.weight"):  # the weight delta and the pair on one layer
            a, b = mats[(parameter.split(".ffn")[0] + ".ffn.0", parameter.rsplit(".weight", 1)[0])]
            expected = expected + b @ a
        torch.testing.assert_close(effective(low, module, name), expected, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(p, before_high[n]) for n, p in snapshot(high).items())


# -- keys without a target ----------------------------------------------------------------------


def test_wan21_i2v_lora_on_wan22_loads_what_applies_and_counts_the_rest(tmp_path):
    engine = load_engine("tiny")
    transformer = engine.pipe.transformer
    before = snapshot(transformer)
    i2v = pairs(seed=4, modules=linears(i2v=True))
    sd = write_pairs("wan", i2v, alpha=float(RANK))
    sd["diffusion_model.blocks.0.cross_attn.norm_k_img.diff"] = torch.full((24,), 0.1)
    note = engine.loras.add(LoraSpec(name="i2v", target="high", path=write(tmp_path, "wan21_i2v.safetensors", sd)))
    # k_img/v_img: 2 blocks × 2 layers × (down, up, alpha); img_emb.proj.1/3 × 3; norm_k_img diff: 19 keys.
    assert note is not None and note.startswith("wan21_i2v.safetensors: 19 of ") and f"of {len(sd)} keys" in note, note
    assert "Wan2.1" in note and "k_img" in note
    assert engine.loras.notes["i2v"] == note
    applies = {k: v for k, v in i2v.items() if "img" not in k[0]}
    assert engine.loras.applied["i2v"] == len(applies)
    assert_pairs_fused_or_active(engine, transformer, before, applies)


def assert_pairs_fused_or_active(engine, transformer, before, mats):
    """Unfused adapters: the merged weights PEFT would fuse; check by fusing a copy."""
    fused = copy.deepcopy(transformer)
    fused.fuse_lora()
    assert_pairs_fused(fused, before, mats, 1.0)


def test_every_key_is_applied_or_counted(tmp_path):
    engine = load_engine("tiny")
    sd = write_pairs("diffsynth", pairs(seed=5, modules=linears(i2v=False)))
    sd["blocks.0.self_attn.q.dora_scale"] = torch.ones(1, 24)  # DoRA magnitude: not supported
    sd["some_other_model.layer.weight"] = torch.ones(3)
    sd["blocks.0.alpha"] = torch.tensor(4.0)  # an alpha with no matrices
    sd["blocks.0.norm1.diff"] = torch.ones(24)  # Wan's norm1 has no parameters
    note = engine.loras.add(LoraSpec(name="mixed", path=write(tmp_path, "mixed.safetensors", sd)))
    assert note.startswith(f"mixed.safetensors: 4 of {len(sd)} keys have no target"), note
    for fragment in ("dora_scale", "some_other_model", "an alpha without its matrices", "has no weight"):
        assert fragment in note, note


def test_a_file_where_nothing_applies_is_refused(tmp_path):
    engine = load_engine("tiny")
    only_image = write_pairs("wan", pairs(seed=6, modules=[m for m in linears(i2v=True) if "img" in m[0]]))
    with pytest.raises(LoraError, match=r"image_only\.safetensors: no key .* change nothing"):
        engine.loras.add(LoraSpec(name="img", path=write(tmp_path, "image_only.safetensors", only_image)))
    assert not engine.loras.specs and not getattr(engine.pipe.transformer, "peft_config", None)


def test_a_partial_delta_of_the_wrong_size_is_refused(tmp_path):
    engine = load_engine("tiny")
    sd, _, _ = lightx2v_file(seed=7, i2v=False)
    sd["diffusion_model.blocks.1.diff_m"] = torch.zeros(1, 6, 48)
    with pytest.raises(LoraError, match="different model size"):
        engine.loras.add(LoraSpec(name="big", path=write(tmp_path, "big.safetensors", sd)))
    assert not engine.loras.specs


# -- reading: never refuse a valid file for its first bytes ------------------------------------


def safetensors_with_header_start(start: bytes) -> bytes:
    """A valid safetensors file whose 8-byte little-endian header length begins with `start`
    (metadata padding moves the header length; safetensors pads it to a multiple of 8)."""
    tensors = {"blocks.0.self_attn.q.lora_A.default.weight": torch.ones(RANK, 24),
               "blocks.0.self_attn.q.lora_B.default.weight": torch.ones(24, RANK)}
    modulus = 256 ** len(start)
    target = int.from_bytes(start, "little")
    length = int.from_bytes(save(tensors, metadata={"pad": ""})[:8], "little")
    needed = (target - length) % modulus  # extra header bytes, roughly one per padding character
    for pad in range(max(0, needed - 16), needed + 16):
        data = save(tensors, metadata={"pad": "x" * pad})
        if data.startswith(start):
            return data
    raise AssertionError("no padding gave that header start")


@pytest.mark.parametrize("start", [b"\x80", b"PK"])
def test_valid_file_whose_header_length_looks_like_pickle_or_zip_loads(tmp_path, start):
    data = safetensors_with_header_start(start)
    path = tmp_path / "valid.safetensors"
    path.write_bytes(data)
    assert path.read_bytes()[: len(start)] == start
    assert set(read_lora_file(path)) == {"blocks.0.self_attn.q.lora_A.default.weight",
                                         "blocks.0.self_attn.q.lora_B.default.weight"}
    engine = load_engine("tiny")
    engine.loras.add(LoraSpec(name="ok", path=str(path)))
    assert engine.loras.applied["ok"] == 2


def test_diffusers_lora_bias_is_a_bias_delta(tmp_path):
    """diffusers saves PEFT `lora_bias` as `…lora_B.bias`: output += weight · (B·A·x + b), i.e. bias += weight · b."""
    engine = load_engine("tiny-film")
    transformer = engine.pipe.transformer
    before = snapshot(transformer)
    mats = pairs(seed=8, modules=[m for m in linears(i2v=True) if m[0].startswith("blocks.1.")])
    sd = write_pairs("diffusers", mats)
    biases = {d: torch.randn(n) * 0.1 for _, d, _, n in linears(i2v=True) if d.startswith("blocks.1.")}
    sd.update({f"transformer.{d}.lora_B.bias": b for d, b in biases.items()})
    assert engine.loras.add(LoraSpec(name="b", path=write(tmp_path, "bias.safetensors", sd), weight=0.5)) is None
    for module, bias in biases.items():
        torch.testing.assert_close(effective(transformer, module, "bias"), before[f"{module}.bias"] + 0.5 * bias)
    assert_pairs_fused_or_active(engine, transformer, before, {k: (a, 0.5 * b) for k, (a, b) in mats.items()})
