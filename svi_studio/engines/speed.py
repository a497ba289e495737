"""The speed switchboard: diffusers' own speed-ups, switched per preset, CLI flag or app start.

Every switch is off unless the preset's `"speed"` object or a CLI flag turns it on; off leaves the
pipeline exactly as it was (bit-identical output). `apply_speed` applies a `SpeedOptions` to a
loaded pipeline, after its LoRAs are loaded, in this order:

    1. quantize   torchao weight-only quantization of the transformer blocks' linears
                  ("int8": any device, also the CPU tests; "fp8": CUDA compute capability 8.9+)
    2. attention  `transformer.set_attention_backend(name)` (native, flash, sage, …)
    3. vae tiling `vae.enable_tiling()` (decode/encode large frames in overlapping tiles)
    4. cache      `transformer.enable_cache(...)`: first-block cache, MagCache or TaylorSeer
    5. compile    `transformer.compile_repeated_blocks()`: each Wan block compiled once (regional)

Fused LoRAs are the LoRA stack's own switch (`LoraStack.fuse`), set from the same options.
`Speed.before_clip` runs before every clip: it drops cache state a cancelled clip left behind and
re-arms MagCache for the clip's step count. SWITCHES documents each switch's expected effect (the
CLI help, the app's Speed panel and the README all read it).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from ..errors import UserError

logger = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("native", "flash", "sage", "flex", "_native_cudnn", "_native_flash", "xformers")
CACHES = ("fbc", "magcache", "taylorseer")
QUANTIZATIONS = ("int8", "fp8")
FBC_THRESHOLD = 0.05
MAGCACHE_THRESHOLD = 0.06
TAYLORSEER_INTERVAL = 5

# name → (values, expected effect). Expected, not measured here: bench/gpu_clip.py --matrix measures them.
SWITCHES: dict[str, tuple[str, str]] = {
    "attention": ("native | flash | sage | flex | _native_cudnn | _native_flash | xformers",
                  "flash / sage: faster attention kernels on CUDA (flash-attn >= 2.6.3, sageattention >= 2.1.1, "
                  "neither on PyPI for every platform); attention is most of a 480p Wan step, so up to ~1.5-2x per "
                  "step with sage. CPU: native only."),
    "compile": ("off | inductor (or another torch.compile backend)",
                "regional torch.compile of the 40 Wan blocks: ~1.2-1.5x per step on H100/H200 after a warm-up "
                "clip that compiles (tens of seconds). Not on ZeroGPU Spaces (torch.compile is forbidden there)."),
    "cache": ("off | fbc[:threshold] | magcache[:threshold|calibrate] | taylorseer[:interval]",
              f"skips transformer blocks on steps that change little: fbc (first-block cache, threshold "
              f"{FBC_THRESHOLD}), MagCache (needs Wan ratios in the preset's speed.mag_ratios, or 'calibrate' to "
              f"print them; one transformer only), TaylorSeer (lite mode: after 3 full steps, runs the blocks every "
              f"{TAYLORSEER_INTERVAL}th step and forecasts the output in between). ~1.5-3x on 40-50 step sampling; little to skip with 4-step distill LoRAs. Changes the "
              "output slightly (approximation)."),
    "quantize": ("off | int8 | fp8",
                 "torchao weight-only quantization of the transformer blocks: int8 halves the bf16 weights "
                 "(memory; speed depends on kernels, runs on CPU too); fp8 halves memory and is faster on GPUs with "
                 "fp8 tensor cores (compute capability 8.9+: L4, RTX 4090, H100, H200). Slight output change."),
    "vae_tiling": ("off | on",
                   "decodes and encodes in overlapping tiles: much lower peak VAE memory at 720p and above, "
                   "slightly slower; frames within the first tile size (256 px) are unchanged."),
    "fuse_loras": ("off | on",
                   "merges the active LoRA weights into the transformer: removes the per-layer LoRA matmuls "
                   "(a few % per step with several LoRAs); changing a LoRA weight between clips unfuses and "
                   "refuses first (slower when weights change every clip). Not together with quantize."),
}


class SpeedError(UserError, ValueError):
    """A speed switch that cannot be used here; the message says why and what to do instead."""


@dataclass(frozen=True)
class SpeedOptions:
    """The switches (see SWITCHES). None / "native" / False mean off.

    cache: "fbc", "fbc:0.08", "magcache", "magcache:0.06", "magcache:calibrate", "taylorseer", "taylorseer:4".
    mag_ratios: MagCache's per-step magnitude ratios for this model (preset only; long lists).
    """

    attention: str = "native"
    compile: str | None = None
    cache: str | None = None
    quantize: str | None = None
    vae_tiling: bool = False
    fuse_loras: bool = False
    mag_ratios: tuple[float, ...] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SpeedOptions":
        """Options from a preset's "speed" object or CLI flags, validated; unknown names are refused."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpeedError(f"unknown speed switch {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**{k: v for k, v in data.items() if v is not None}).validated()

    def merged(self, overrides: dict[str, Any] | None) -> "SpeedOptions":
        """These options with the switches in `overrides` (None values: keep this one's)."""
        changes = {k: v for k, v in (overrides or {}).items() if v is not None}
        return SpeedOptions.from_dict({**asdict(self), **changes})

    def validated(self) -> "SpeedOptions":
        if self.attention not in ATTENTION_BACKENDS:
            raise SpeedError(f"attention backend {self.attention!r} is unknown; choose one of {', '.join(ATTENTION_BACKENDS)}.")
        if self.quantize in ("", "off", "none"):
            return replace(self, quantize=None).validated()
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise SpeedError(f"quantize must be one of {', '.join(QUANTIZATIONS)} (or off), got {self.quantize!r}.")
        if self.compile in ("", "off", "none", False):
            return replace(self, compile=None).validated()
        if self.compile is True:
            return replace(self, compile="inductor").validated()
        if self.cache in ("", "off", "none"):
            return replace(self, cache=None).validated()
        if self.cache is not None:
            parse_cache(self.cache)
        if self.quantize and self.fuse_loras:
            raise SpeedError("fused LoRAs and quantization do not go together: fusing writes into the weights that "
                             "quantization packs. Turn one of them off.")
        if self.mag_ratios is not None and not isinstance(self.mag_ratios, tuple):
            return replace(self, mag_ratios=tuple(float(r) for r in self.mag_ratios)).validated()
        return self

    @property
    def is_off(self) -> bool:
        return self == SpeedOptions(mag_ratios=self.mag_ratios)

    def describe(self) -> dict[str, Any]:
        """The switches as shown to users and stored with takes (mag_ratios summarised)."""
        data = asdict(self)
        data["mag_ratios"] = None if self.mag_ratios is None else f"{len(self.mag_ratios)} values"
        return data


def parse_cache(spec: str) -> tuple[str, float | str | None]:
    """'fbc:0.08' → ("fbc", 0.08); 'magcache:calibrate' → ("magcache", "calibrate"); 'taylorseer' → ("taylorseer", None)."""
    kind, _, value = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind not in CACHES:
        raise SpeedError(f"cache {spec!r} is unknown; use fbc[:threshold], magcache[:threshold|calibrate] or "
                         "taylorseer[:interval].")
    if not value:
        return kind, None
    if kind == "magcache" and value == "calibrate":
        return kind, value
    try:
        number = float(value)
    except ValueError:
        raise SpeedError(f"cache {spec!r}: {value!r} is not a number.") from None
    if kind == "taylorseer":
        if number < 1 or number != int(number):
            raise SpeedError(f"cache {spec!r}: the TaylorSeer interval is a whole number of steps, 1 or more.")
        return kind, int(number)
    if not 0 < number < 1:
        raise SpeedError(f"cache {spec!r}: the threshold must be between 0 and 1 (e.g. 0.05).")
    return kind, number


def transformers_of(pipe) -> list[torch.nn.Module]:
    """The pipeline's transformer(s): one on Wan2.1, the two experts on Wan2.2."""
    return [t for t in (pipe.transformer, getattr(pipe, "transformer_2", None)) if t is not None]


def _device_of(pipe) -> torch.device:
    from diffusers.utils.torch_utils import get_module_execution_device

    return torch.device(get_module_execution_device(pipe.transformer))


# -- the switches -----------------------------------------------------------------------------


def quantize_transformers(pipe, kind: str, loras=None) -> None:
    """torchao weight-only quantization of every linear in the transformer blocks (the 14B of a 14B model).

    Embeddings, the output projection and LoRA matrices stay in their dtype. LoRAs already loaded keep
    working as PEFT adapters over the quantized layers; full weight deltas (`diff` keys) cannot be
    added to packed weights, so such a LoRA is refused.
    """
    try:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        raise SpeedError("quantization needs torchao (pip install 'torchao>=0.15').") from None
    if kind == "fp8":
        if not torch.cuda.is_available():
            raise SpeedError("fp8 weight-only quantization needs a CUDA GPU with compute capability 8.9+ "
                             "(L4, RTX 4090, H100, H200); this machine has none. Use int8, or no quantization.")
        capability = torch.cuda.get_device_capability()
        if capability < (8, 9):
            raise SpeedError(f"fp8 weight-only quantization needs compute capability 8.9+; this GPU has "
                             f"{capability[0]}.{capability[1]}. Use int8, or no quantization.")
    if loras is not None:
        for name, deltas in loras._deltas.items():
            if any(parameter == "weight" and module.startswith("blocks.") for _, module, parameter in deltas):
                raise SpeedError(f"LoRA {name} adds full weight deltas (diff keys) to the transformer blocks, which "
                                 "cannot be added to quantized weights. Turn quantization off for this LoRA.")
    config = Int8WeightOnlyConfig() if kind == "int8" else Float8WeightOnlyConfig()

    def block_linear(module: torch.nn.Module, name: str) -> bool:
        return isinstance(module, torch.nn.Linear) and name.startswith("blocks.") and "lora_" not in name

    for transformer in transformers_of(pipe):
        quantize_(transformer, config, filter_fn=block_linear)


def set_attention(pipe, backend: str) -> None:
    if backend == "native":
        return  # diffusers' default dispatch: nothing to change
    if _device_of(pipe).type != "cuda" and backend not in ("flex",):
        raise SpeedError(f"attention backend {backend!r} needs a CUDA GPU; on this machine use native.")
    for transformer in transformers_of(pipe):
        try:
            transformer.set_attention_backend(backend)
        except (ImportError, RuntimeError, ValueError) as error:
            raise SpeedError(f"attention backend {backend!r} is not usable here ({str(error).splitlines()[0][:160]}). "
                             "Install its package (flash-attn >= 2.6.3, sageattention >= 2.1.1) or use native.") from None


def cache_config(options: SpeedOptions, steps: int):
    """The diffusers cache config for options.cache at `steps` denoising steps."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    kind, value = parse_cache(options.cache)
    if kind == "fbc":
        return FirstBlockCacheConfig(threshold=FBC_THRESHOLD if value is None else value)
    if kind == "taylorseer":
        # Wan's module names match none of diffusers' default TaylorSeer patterns (they would hook nothing):
        # lite mode skips the blocks and forecasts the output projection on the steps it predicts.
        return TaylorSeerCacheConfig(cache_interval=TAYLORSEER_INTERVAL if value is None else value, use_lite_mode=True)
    if value == "calibrate":
        return MagCacheConfig(calibrate=True, num_inference_steps=steps)
    if options.mag_ratios is None:
        raise SpeedError("MagCache needs this model's magnitude ratios: run one clip with cache magcache:calibrate, "
                         "then put the printed ratios in the preset's speed.mag_ratios. Or use fbc.")
    return MagCacheConfig(threshold=MAGCACHE_THRESHOLD if value is None else value, num_inference_steps=steps,
                          mag_ratios=list(options.mag_ratios))


def enable_cache(pipe, options: SpeedOptions, steps: int) -> None:
    transformers = transformers_of(pipe)
    if parse_cache(options.cache)[0] == "magcache" and len(transformers) > 1:
        raise SpeedError("MagCache counts the steps of one transformer; Wan2.2's two experts each see part of them. "
                         "Use fbc or taylorseer on Wan2.2.")
    for transformer in transformers:
        if transformer.is_cache_enabled:
            transformer.disable_cache()
        transformer.enable_cache(cache_config(options, steps))


def compile_blocks(pipe, backend: str, fullgraph: bool = True) -> None:
    for transformer in transformers_of(pipe):
        transformer.compile_repeated_blocks(fullgraph=fullgraph, backend=backend)


# -- the switchboard --------------------------------------------------------------------------


class Speed:
    """The switches applied to one pipeline, and what they need before each clip."""

    def __init__(self, pipe, options: SpeedOptions, cache_steps: int | None = None):
        self.pipe = pipe
        self.options = options
        self._cache_steps = cache_steps

    def before_clip(self, steps: int) -> None:
        """Drop cache state a cancelled clip may have left; re-arm MagCache for this clip's step count."""
        if self.options.cache is None:
            return
        if parse_cache(self.options.cache)[0] == "magcache" and steps != self._cache_steps:
            enable_cache(self.pipe, self.options, steps)
            self._cache_steps = steps
        for transformer in transformers_of(self.pipe):
            transformer._reset_stateful_cache()

    def describe(self) -> dict[str, Any]:
        return self.options.describe()


def apply_speed(pipe, options: SpeedOptions | dict | None, loras=None, steps: int = 50) -> Speed:
    """Apply the switches to a loaded pipeline (LoRAs already loaded into `loras`); returns the `Speed`.

    Raises SpeedError, leaving the earlier switches applied, when a switch cannot run here.
    `steps`: the preset's step count, for MagCache's ratio table (re-armed per clip by before_clip).
    """
    if not isinstance(options, SpeedOptions):
        options = SpeedOptions.from_dict(options)
    # 1. Weights: quantize (never together with fused LoRAs, see SpeedOptions.validated).
    if loras is not None and options.fuse_loras and not loras.fuse:
        loras.fuse = True
        loras._current = None
        loras.set_weights({})
    if options.quantize:
        quantize_transformers(pipe, options.quantize, loras)
    # 2. Kernels and memory.
    set_attention(pipe, options.attention)
    if options.vae_tiling:
        pipe.vae.enable_tiling()
    # 3. Step caching, then compile last: it traces the blocks as the hooks above left them.
    cache_steps = None
    if options.cache is not None:
        enable_cache(pipe, options, steps)
        cache_steps = steps
    if options.compile:
        compile_blocks(pipe, options.compile, fullgraph=options.cache is None)
    return Speed(pipe, options, cache_steps)
