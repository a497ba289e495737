"""One full-size SVI Film clip on a GPU: a Wan2.1-I2V-14B-shaped transformer with random bf16 weights.

    python bench/gpu_clip.py              # CUDA: 81 frames at 832x480, 4 steps, guidance 1
    python bench/gpu_clip.py --matrix     # the same clip once per speed-switch combination (baseline,
                                          # cache, compile, fp8, all): s/clip, s/step, peak memory, ratio
    python bench/gpu_clip.py --tiny       # the same code path with tiny components on the CPU
                                          # (also what runs when there is no CUDA device)

The clip goes through the real engine code (WanEngine → SVIWanImageToVideoPipeline, SVI Film pixel
mode): the 81-frame condition video is VAE-encoded, CLIP encodes the first conditioning frame, the
transformer runs 4 steps, the full-size VAE decodes all 81 frames. Components:

- transformer: WanTransformer3DModel with the Wan2.1-I2V-14B config (16.4 B parameters), built on the
  meta device and materialised on the GPU in bf16 (float32 where diffusers keeps it: rope, time
  embedder, modulation tables, affine norms), weights N(0, 0.02).
- VAE: AutoencoderKLWan() (the full-size default config), float32, random weights.
- text side: stand-ins of the real widths but not the real depth — a 1-layer UMT5 encoder with
  d_model 4096 (umt5-xxl has 24 layers) and a 2-layer CLIP ViT of width 1280 (ViT-H/14 has 32), random
  weights, the tiny character tokenizer. Their time is therefore understated; the output says so.

Prints seconds per clip, seconds per denoising step, peak GPU memory and where the time went.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: E402
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed  # noqa: E402

from bench_tiny_engine import RegionTimer, instrument, table  # noqa: E402
from svi_studio.engines.request import ClipRequest

# Wan-AI/Wan2.1-I2V-14B-480P-Diffusers transformer/config.json
WAN21_I2V_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024,
)


def keeps_fp32(model: torch.nn.Module, parameter_name: str) -> bool:
    """Whether from_pretrained(torch_dtype=bf16) would leave this parameter in float32
    (diffusers matches _keep_in_fp32_modules against the dotted name's components)."""
    parts = parameter_name.split(".")
    return any(pattern in parts for pattern in (getattr(model, "_keep_in_fp32_modules", None) or ()))


@torch.no_grad()
def cast_like_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Parameters to `dtype`, except float32 for the model's _keep_in_fp32_modules (free on the meta device)."""
    for module_name, module in model.named_modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is None:
                continue
            full_name = f"{module_name}.{name}" if module_name else name
            target = torch.float32 if keeps_fp32(model, full_name) else dtype
            module._parameters[name] = torch.nn.Parameter(parameter.to(target), requires_grad=False)
    return model


@torch.no_grad()
def materialise(model: torch.nn.Module, device: str, dtype: torch.dtype, std: float = 0.02, seed: int = 0):
    """Turn a meta-device model into real tensors on `device`, allocating each weight once, in its final dtype.

    Parameters become `dtype` (see cast_like_pretrained), then weights (matrices, convolutions,
    modulation tables) are drawn N(0, std), biases set to 0 and 1-D scales (norm weights) to 1.
    Buffers are not parameters: `to_empty` leaves them as garbage, so the rope tables are
    recomputed; any other buffer is an error rather than silent garbage.
    """
    cast_like_pretrained(model, dtype)
    model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            parameter.zero_()
        elif parameter.dim() == 1:
            parameter.fill_(1.0)
        else:
            parameter.normal_(0.0, std, generator=generator)
    recomputed = set()
    for module_name, module in model.named_modules():
        if isinstance(module, WanRotaryPosEmbed):
            fresh = WanRotaryPosEmbed(module.attention_head_dim, module.patch_size, module.max_seq_len)
            for name, buffer in fresh.named_buffers():
                getattr(module, name).copy_(buffer)
                recomputed.add(f"{module_name}.{name}")
    unknown = [name for name, _ in model.named_buffers() if name not in recomputed]
    if unknown:
        raise RuntimeError(f"materialise() does not know how to fill the buffers {unknown}")
    return model.eval()


def build_transformer(device: str, dtype: torch.dtype = torch.bfloat16, config: dict | None = None):
    """The Wan2.1-I2V-14B-shaped transformer on `device` ("meta" leaves it unmaterialised)."""
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**(config or WAN21_I2V_14B))
    if device == "meta":  # shapes and dtypes only (tests run the full-size wiring this way)
        return cast_like_pretrained(transformer, dtype).eval()
    return materialise(transformer, device, dtype)


def build_pipeline(device: str, tiny: bool):
    """(SVIWanImageToVideoPipeline with every component on `device`, a line describing the components)."""
    from svi_studio.engines.svi_pipeline import SVIWanImageToVideoPipeline
    from svi_studio.engines.tiny import CLIPImageProcessor, tiny_pipeline, tiny_tokenizer
    from svi_studio.engines.wan import make_scheduler

    if tiny:
        pipe = tiny_pipeline("wan2.1").to(device)
        return pipe, "tiny random components from svi_studio.engines.tiny (2-block transformer, tiny VAE/UMT5/CLIP)"

    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    tokenizer = tiny_tokenizer()
    with torch.device(device):
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=4096, d_kv=64, d_ff=10240, num_layers=1, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128,
            feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        )).to(torch.bfloat16).eval()
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=2, num_attention_heads=16,
            image_size=224, patch_size=14, hidden_act="gelu",
        )).eval()  # float32, as diffusers' Wan I2V docs load it
        vae = AutoencoderKLWan().eval()  # the full-size Wan VAE config, float32
    transformer = build_transformer(device)
    pipe = SVIWanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        vae=vae, transformer=transformer,
        scheduler=make_scheduler("unipc", {"num_train_timesteps": 1000, "prediction_type": "flow_prediction",
                                           "use_flow_sigmas": True}, 5.0),
    )
    described = ("Wan2.1-I2V-14B-shaped transformer (random bf16), full-size AutoencoderKLWan (random fp32); "
                 "text side = stand-ins: 1-layer UMT5 d_model 4096 (real: 24 layers) and 2-layer CLIP ViT width 1280 "
                 "(real: 32 layers), random weights, tiny tokenizer - their time is understated")
    return pipe, described


def random_lora(pipe, rank: int, folder: str) -> str:
    """A random rank-`rank` LoRA over every attention/FFN linear, in the SVI (DiffSynth) key format, bf16."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(1)
    state = {}
    for index, block in enumerate(pipe.transformer.blocks):
        modules = {"self_attn.q": block.attn1.to_q, "self_attn.k": block.attn1.to_k, "self_attn.v": block.attn1.to_v,
                   "self_attn.o": block.attn1.to_out[0], "cross_attn.q": block.attn2.to_q,
                   "cross_attn.k": block.attn2.to_k, "cross_attn.v": block.attn2.to_v,
                   "cross_attn.o": block.attn2.to_out[0], "ffn.0": block.ffn.net[0].proj, "ffn.2": block.ffn.net[2]}
        for name, linear in modules.items():
            out_features, in_features = linear.weight.shape
            state[f"blocks.{index}.{name}.lora_A.default.weight"] = (
                torch.randn(rank, in_features, generator=generator) * 0.01).to(torch.bfloat16)
            state[f"blocks.{index}.{name}.lora_B.default.weight"] = (
                torch.randn(out_features, rank, generator=generator) * 0.01).to(torch.bfloat16)
    path = os.path.join(folder, f"random_rank{rank}.safetensors")
    save_file(state, path)
    return path


# --matrix: one row per switch combination, measured in this one process (see engines/speed.py).
# fp8 quantizes the weights in place and cannot be undone, so its rows come last.
MATRIX = (
    ("baseline", {}),
    ("cache", {"cache": "fbc:0.05"}),
    ("compile", {"compile": "inductor"}),
    ("fp8", {"quantize": "fp8"}),
    ("all", {"quantize": "fp8", "compile": "inductor", "cache": "fbc:0.05"}),
)


def skip_reason(options: dict, cuda: bool) -> str | None:
    """Why a combination does not run here (None: it runs)."""
    if options.get("quantize") == "fp8":
        if not cuda:
            return "fp8 weight-only needs a CUDA GPU with compute capability 8.9+"
        if torch.cuda.get_device_capability() < (8, 9):
            return f"fp8 weight-only needs compute capability 8.9+, this GPU has {torch.cuda.get_device_capability()}"
    if options.get("compile") and not cuda:
        return "inductor compile of the blocks on the CPU says nothing about the GPU and takes minutes"
    return None


def switch_on(engine, options: dict, steps: int) -> None:
    """Turn the combination's switches on for the engine's pipeline (quantization stays once done)."""
    from svi_studio.engines import speed

    pipe = engine.pipe
    if options.get("quantize") and not getattr(pipe, "_bench_quantized", False):
        speed.quantize_transformers(pipe, options["quantize"])
        pipe._bench_quantized = True
    switches = speed.SpeedOptions.from_dict({k: v for k, v in options.items() if k != "quantize"})
    if switches.cache:
        speed.enable_cache(pipe, switches, steps)
    if switches.compile:
        speed.compile_blocks(pipe, switches.compile, fullgraph=switches.cache is None)
    engine.speed = speed.Speed(pipe, switches, steps if switches.cache else None)


def switch_off(engine) -> None:
    """Undo cache and compile (not quantization) so the next combination starts from the plain model."""
    for transformer in (engine.pipe.transformer, getattr(engine.pipe, "transformer_2", None)):
        if transformer is None:
            continue
        if transformer.is_cache_enabled:
            transformer.disable_cache()
        for block in transformer.blocks:
            block._compiled_call_impl = None
    torch._dynamo.reset()
    engine.speed = None


def measure(engine, anchor, settings, prompt: str, clips: int, warmup_steps: int, timer, cuda: bool) -> dict:
    """Warm up, then render `clips` clips in a chain: per-clip region times, s/clip median, s/step, peak memory."""
    if warmup_steps:
        engine.generate_clip(ClipRequest(anchor, None, prompt, "", 0, replace(settings, steps=warmup_steps)))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    runs, motion, clip = [], None, None
    for index in range(clips):
        timer.reset()
        start = time.perf_counter()
        with timer.region("generate"):
            clip = engine.generate_clip(ClipRequest(anchor, motion, prompt, "", index + 1, settings))
        total = time.perf_counter() - start
        runs.append({**{("other" if k == "generate" else k): v for k, v in timer.totals.items()}, "total": total})
        motion = clip.motion_out
    transformer_s = statistics.fmean(run.get("transformer", 0.0) for run in runs)
    if cuda:
        peak = (f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
                f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peak = f"n/a on CPU (process peak RSS {peak_gib:.2f} GiB)"
    return {"runs": runs, "clip": clip, "s_clip": statistics.median(run["total"] for run in runs),
            "s_step": transformer_s / settings.steps, "peak": peak, "peak_gib": peak_gib}


def matrix_table(rows: list[tuple[str, dict | str]], device: str) -> str:
    """One line per combination: s/clip, s/step, peak memory and the time ratio to the baseline row."""
    base = next((r for name, r in rows if name == "baseline" and isinstance(r, dict)), None)
    memory = "peak GiB" if device == "cuda" else "peak RSS GiB"
    lines = [f"{'combination':<12}{'s/clip':>10}{'s/step':>10}{memory:>14}{'time vs baseline':>18}"]
    for name, result in rows:
        if isinstance(result, str):
            lines.append(f"{name:<12}  skipped: {result}")
            continue
        ratio = result["s_clip"] / base["s_clip"] if base else float("nan")
        lines.append(f"{name:<12}{result['s_clip']:>10.3f}{result['s_step']:>10.3f}{result['peak_gib']:>14.2f}"
                     f"{ratio:>17.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny components on the CPU (automatic without CUDA)")
    parser.add_argument("--matrix", action="store_true",
                        help="one row per speed-switch combination (" + ", ".join(name for name, _ in MATRIX) + ")")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--width", type=int, default=None, help="default 832 (tiny: 112)")
    parser.add_argument("--height", type=int, default=None, help="default 480 (tiny: 64)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--clips", type=int, default=None, help="measured clips (default 1 on CUDA, 3 tiny)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="steps of an untimed warm-up clip at the same size (default 1 on CUDA, 0 tiny; 0 = none)")
    parser.add_argument("--lora-rank", type=int, default=0, help="also load a random SVI-format LoRA of this rank")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.tiny
    tiny = not cuda
    device = "cuda" if cuda else "cpu"
    if tiny and not args.tiny:
        print("no CUDA device: running the tiny configuration on the CPU")
    width = args.width or (112 if tiny else 832)
    height = args.height or (64 if tiny else 480)
    clips = args.clips or (1 if cuda else 3)
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if cuda else 0)

    from svi_studio.engines.presets import load_preset
    from svi_studio.engines.wan import WanEngine
    from svi_studio.settings import normalise_settings

    sync = torch.cuda.synchronize if cuda else None
    started = time.perf_counter()
    pipe, described = build_pipeline(device, tiny)
    preset = replace(load_preset("tiny-film" if tiny else "wan2.1-svi-film"), loras=(), offload="none")
    engine = WanEngine(pipe, preset)
    if args.lora_rank:
        from svi_studio.engines.loras import LoraSpec

        folder = tempfile.mkdtemp(prefix="gpu_clip_lora_")
        engine.loras.add(LoraSpec(name="svi_random", role="svi", path=random_lora(pipe, args.lora_rank, folder)))
    if sync:
        sync()
    build_s = time.perf_counter() - started

    settings, _ = normalise_settings({**engine.default_settings().to_dict(), "num_frames": args.frames,
                                      "width": width, "height": height, "steps": args.steps, "guidance": 1.0,
                                      "lora_weights": {}})
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    reference = Image.fromarray(np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1),
                                          np.full_like(x, 96)], axis=-1).astype(np.uint8))
    anchor = engine.encode_anchor(reference, settings)
    prompt = "a lighthouse keeper climbs the spiral stairs at dusk"
    timer = RegionTimer(sync)
    instrument(engine, timer)
    header = (f"gpu_clip bench on {torch.cuda.get_device_name() if cuda else 'CPU (tiny)'}: SVI Film clip, "
              f"{settings.num_frames} frames at {settings.width}x{settings.height}, {settings.steps} steps, guidance "
              f"{settings.guidance}, {clips} measured clip(s), warm-up {warmup_steps} step(s)"
              + (f", random rank-{args.lora_rank} LoRA" if args.lora_rank else ""))
    params = sum(p.numel() for p in pipe.transformer.parameters())

    if args.matrix:
        rows: list[tuple[str, dict | str]] = []
        for name, options in MATRIX:
            reason = skip_reason(options, cuda)
            if reason:
                rows.append((name, reason))
                print(f"{name}: skipped ({reason})", flush=True)
                continue
            switch_on(engine, options, settings.steps)
            try:
                result = measure(engine, anchor, settings, prompt, clips, warmup_steps, timer, cuda)
            finally:
                switch_off(engine)
            rows.append((name, result))
            print(f"{name}: {result['s_clip']:.3f} s/clip, {result['s_step']:.3f} s/step, peak {result['peak']}",
                  flush=True)
        print(header + ", speed-switch matrix")
        print(f"components: {described}")
        print(f"build: {build_s:.1f} s, transformer parameters: {params:,}")
        print(matrix_table(rows, device))
        return

    result = measure(engine, anchor, settings, prompt, clips, warmup_steps, timer, cuda)
    print(header)
    print(f"components: {described}")
    print(f"build: {build_s:.1f} s, transformer parameters: {params:,}")
    print(f"frames out: {tuple(result['clip'].frames.shape)}, latents: {tuple(result['clip'].latents.shape)}")
    print(f"seconds per clip: {result['s_clip']:.3f}")
    print(f"seconds per step: {result['s_step']:.3f}")
    print(f"peak GPU memory: {result['peak']}")
    print(table(result["runs"], settings.steps))


if __name__ == "__main__":
    main()
