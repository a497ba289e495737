"""bench/gpu_clip.py: the tiny run prints its numbers, and the full-size build is right in shape and dtype.

No GPU here: the full-size (Wan2.1-I2V-14B) components are built on the meta device, where every
layer runs on shapes alone, so the 480x832, 81-frame wiring is checked without allocating 33 GB.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_clip.py"


@pytest.fixture(scope="module")
def gpu_clip():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("gpu_clip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(SCRIPT.parent))


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_tiny_run_prints_seconds_per_clip_step_and_memory():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--frames", "17", "--clips", "1", "--warmup-steps", "1",
         "--lora-rank", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert number(r"seconds per clip: (\d+\.\d+)", out) > 0
    assert number(r"seconds per step: (\d+\.\d+)", out) > 0
    assert re.search(r"peak GPU memory: .*\d+\.\d+ GiB", out), out
    assert "4 steps, guidance 1.0" in out and "17 frames at 112x64" in out and "rank-2 LoRA" in out
    assert "frames out: (17, 64, 112, 3)" in out
    for row in ("transformer", "VAE decode", "VAE condition encode", "text encoding", "CLIP image encoding"):
        assert re.search(rf"^{row}\s+\d+\.\d+\s+\d+\.\d%$", out, re.M), f"no {row} row:\n{out}"


def test_tiny_matrix_prints_one_row_per_switch_combination():
    """--matrix: every combination measured in one run; on the CPU compile and fp8 are skipped with the reason."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--matrix", "--frames", "9", "--clips", "1", "--warmup-steps", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-switch matrix" in out and "9 frames at 112x64, 4 steps" in out
    table = out[out.index("combination"):]
    measured = {}
    for name in ("baseline", "cache"):
        match = re.search(rf"^{name}\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)x$", table, re.M)
        assert match, f"no measured {name} row:\n{table}"
        measured[name] = [float(group) for group in match.groups()]
        assert all(value > 0 for value in measured[name])
    assert measured["baseline"][3] == 1.0
    assert abs(measured["cache"][3] - measured["cache"][0] / measured["baseline"][0]) < 0.01
    assert re.search(r"^compile\s+skipped: .*CPU", table, re.M), table
    for name in ("fp8", "all"):
        assert re.search(rf"^{name}\s+skipped: fp8 weight-only needs a CUDA GPU", table, re.M), table


def test_materialise_matches_a_normally_built_transformer(gpu_clip):
    """Meta build + materialise: final dtypes, fp32 where diffusers keeps it, real rope tables, finite output."""
    from svi_studio.engines.tiny import tiny_transformer

    reference = tiny_transformer(with_image=True, added_kv_proj_dim=24)
    config = dict(reference.config)
    model = gpu_clip.build_transformer("cpu", torch.bfloat16, config={k: v for k, v in config.items()
                                                                      if not k.startswith("_")})
    for name in ("freqs_cos", "freqs_sin"):
        assert torch.equal(getattr(model.rope, name), getattr(reference.rope, name))
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["scale_shift_table"] == torch.float32
    assert dtypes["blocks.0.norm2.weight"] == torch.float32
    assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert dtypes["blocks.0.attn1.norm_q.weight"] == torch.bfloat16  # "norm_q" is not the kept "norm1"
    assert dtypes["patch_embedding.weight"] == torch.bfloat16
    assert torch.equal(model.blocks[0].attn1.to_q.bias, torch.zeros(24, dtype=torch.bfloat16))
    assert torch.equal(model.blocks[0].attn1.norm_q.weight, torch.ones(24, dtype=torch.bfloat16))
    weight = model.blocks[1].ffn.net[2].weight.float()
    assert 0.015 < weight.std() < 0.025 and abs(weight.mean()) < 0.01
    generator = torch.Generator().manual_seed(0)
    out = model(hidden_states=torch.randn(1, 36, 2, 8, 8, generator=generator).to(torch.bfloat16),
                timestep=torch.tensor([500.0]),
                encoder_hidden_states=torch.randn(1, 6, 32, generator=generator).to(torch.bfloat16),
                encoder_hidden_states_image=torch.randn(1, 5, 4, generator=generator).to(torch.bfloat16),
                return_dict=False)[0]
    assert out.shape == (1, 16, 2, 8, 8) and torch.isfinite(out.float()).all()


def test_full_size_wiring_on_the_meta_device(gpu_clip):
    """The full-size pipeline the H100 run builds: 16.4 B parameters in bf16, and 480x832 / 81 frames
    flows through CLIP, the SVI Film condition, the transformer and the VAE decoder with the right shapes."""
    from PIL import Image

    from svi_studio.engines.svi_pipeline import PIXEL_MODE, SVICondition

    pipe, described = gpu_clip.build_pipeline("meta", tiny=False)
    transformer = pipe.transformer
    assert "stand-in" in described
    assert dict(transformer.config)["num_layers"] == 40 and transformer.config.added_kv_proj_dim == 5120
    assert abs(sum(p.numel() for p in transformer.parameters()) / 1e9 - 16.39) < 0.01
    assert transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert pipe.text_encoder.config.d_model == transformer.config.text_dim == 4096

    meta = torch.device("meta")
    image_embeds = pipe.encode_image(Image.new("RGB", (832, 480)), meta)
    assert image_embeds.shape == (1, 257, 1280)

    # the SVI Film condition at full size (9 frames keep the meta VAE loop short; the widths are what matter)
    pipe._svi_condition = SVICondition(PIXEL_MODE, motion_frames=torch.zeros(5, 3, 480, 832))
    latents, condition = pipe.prepare_latents(None, 1, 16, 480, 832, 9, torch.float32, meta, torch.Generator())
    pipe._svi_condition = None
    assert latents.shape == (1, 16, 3, 60, 104) and condition.shape == (1, 20, 3, 60, 104)

    hidden = torch.empty(1, 36, 21, 60, 104, device=meta, dtype=torch.bfloat16)  # 81 frames
    out = transformer(hidden_states=hidden, timestep=torch.tensor([999.0], device=meta),
                      encoder_hidden_states=torch.empty(1, 512, 4096, device=meta, dtype=torch.bfloat16),
                      encoder_hidden_states_image=image_embeds.to(torch.bfloat16), return_dict=False)[0]
    assert out.shape == (1, 16, 21, 60, 104)
    video = pipe.vae.decode(out[:, :, :3].float(), return_dict=False)[0]
    assert video.shape == (1, 3, 9, 480, 832)
