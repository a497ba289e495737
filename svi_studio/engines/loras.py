"""The LoRA stack: SVI, speed (step-distill) and style LoRAs on one Wan pipeline.

Files are read with safetensors only (pickle formats are refused), their keys are
normalised so diffusers' Wan converter understands them, checked against the
transformer they target (diffusers only warns when nothing applies; we refuse),
then loaded with diffusers' `load_lora_weights` as named adapters. Weights are set
per expert with `set_adapters`, so they can change between clips without reloading.

Key formats handled:
    SVI / DiffSynth + PEFT  blocks.N.self_attn.q.lora_A.default.weight   (bare)
                            pipe.dit.blocks.N.…lora_A.default.weight
    original Wan            diffusion_model.blocks.N.…lora_down.weight (+ .alpha, diff_b)
    Kohya / musubi          lora_unet_blocks_N_self_attn_q.lora_down.weight (+ .alpha)
    diffusers               transformer.blocks.N.attn1.to_q.lora_A.weight (also without `transformer.`)

Kohya keys are rewritten into the original-Wan form here rather than left to diffusers'
`_convert_musubi_wan_lora_to_diffusers`: that converter pops every q/k/v/o/ffn key and an
`.alpha` of every block 0..n-1 and raises KeyError on a LoRA that trained only some modules or
blocks, while the original-Wan converter takes whatever is present (alpha optional).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from ..errors import UserError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
TARGETS = ("high", "low", "both")


class LoraError(UserError, ValueError):
    """A LoRA file that cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA in the stack.

    name: adapter name, unique in the stack (also the key of ClipSettings.lora_weights).
    path: local .safetensors file.
    target: "high" (Wan2.2 high-noise expert = `transformer`), "low" (`transformer_2`)
        or "both"; ignored on single-transformer Wan2.1.
    weight: default weight when a clip's settings name none.
    role: "svi", "speed" or "style" (for the UI and take metadata).
    """

    name: str
    path: str
    target: str = "both"
    weight: float = 1.0
    role: str = "style"


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a LoRA state dict from a .safetensors file, refusing anything else."""
    state_dict = read_safetensors(path)
    check_lora_tensors(state_dict, Path(path).name)
    return state_dict


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors weights file; pickle formats and damaged files are refused."""
    path = Path(path)
    label = path.name
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise LoraError(
            f"{label}: pickle formats ({', '.join(PICKLE_SUFFIXES)}) can run code when loaded and are refused. "
            "Convert the file to .safetensors and load that."
        )
    if path.suffix.lower() != ".safetensors":
        raise LoraError(f"{label}: a LoRA must be a .safetensors file.")
    if not path.is_file():
        raise LoraError(f"{label}: file not found at {path}.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise LoraError(f"{label}: this is a pickle/PyTorch file renamed .safetensors; it is refused. "
                        "Convert it to real safetensors.")
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise LoraError(f"{label}: not a readable safetensors file ({error}). Is it truncated? Download it again.") from None
    if not state_dict:
        raise LoraError(f"{label}: the file holds no tensors.")
    return state_dict


def check_lora_tensors(state_dict: dict[str, torch.Tensor], label: str) -> None:
    """LoraError unless every tensor is a finite floating-point LoRA matrix."""
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point():
            raise LoraError(f"{label}: {key} holds {tensor.dtype} values; a LoRA holds floating-point matrices.")
        if tensor.ndim > 2 and not (tensor.ndim in (4, 5) and all(size == 1 for size in tensor.shape[2:])):
            raise LoraError(f"{label}: {key} has shape {tuple(tensor.shape)}; a LoRA matrix is 2-D.")
        if not torch.isfinite(tensor).all():
            raise LoraError(f"{label}: {key} contains NaN or infinite values; the file is damaged.")


_BARE_WAN_PREFIXES = ("blocks.", "head.", "patch_embedding", "text_embedding", "time_embedding", "time_projection", "img_emb")
# Module names only diffusers' WanTransformer3DModel uses (the original Wan code says self_attn, ffn.0, head.head …).
_DIFFUSERS_NAMES = re.compile(r"^(blocks\.\d+\.(attn1|attn2|ffn\.net)\.|condition_embedder\.|proj_out\.)")
# Kohya / musubi module names (dots flattened to '_') → original Wan module names.
_KOHYA_MODULES = (
    (re.compile(r"^blocks_(\d+)_(self_attn|cross_attn)_(q|k|v|o|k_img|v_img)$"), r"blocks.\1.\2.\3"),
    (re.compile(r"^blocks_(\d+)_ffn_(\d+)$"), r"blocks.\1.ffn.\2"),
    (re.compile(r"^(text_embedding|time_embedding|time_projection)_(\d+)$"), r"\1.\2"),
    (re.compile(r"^head_head$"), "head.head"),
    (re.compile(r"^img_emb_proj_(\d+)$"), r"img_emb.proj.\1"),
)


def _kohya_to_wan(key: str) -> str:
    """lora_unet_blocks_3_self_attn_q.lora_down.weight → blocks.3.self_attn.q.lora_down.weight (others unchanged)."""
    module, dot, rest = key[len("lora_unet_"):].partition(".")
    for pattern, replacement in _KOHYA_MODULES:
        if pattern.match(module):
            return pattern.sub(replacement, module) + dot + rest
    return key


def normalise_lora_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rewrite every known key form into one diffusers reads without loss.

    pipe.dit.X / base_model.model.X → X;  X.lora_A.default.weight → X.lora_A.weight;
    lora_unet_blocks_N_self_attn_q.… → blocks.N.self_attn.q.…;
    bare original-Wan names (blocks.N.self_attn.q…) → diffusion_model.…;
    bare diffusers names (blocks.N.attn1.to_q…) → transformer.…
    `diffusion_model.` and `transformer.` keys pass unchanged; unknown keys too (check_applies judges them).
    """
    out = {}
    for key, value in state_dict.items():
        new = key
        for prefix in ("pipe.dit.", "model.diffusion_model.", "base_model.model.", "dit."):
            if new.startswith(prefix):
                new = new[len(prefix):]
                if prefix == "model.diffusion_model.":
                    new = "diffusion_model." + new
        new = re.sub(r"\.(lora_[AB]|lora_down|lora_up)\.default\.", r".\1.", new)
        if new.startswith("lora_unet_"):
            new = _kohya_to_wan(new)
        if _DIFFUSERS_NAMES.match(new):
            new = "transformer." + new
        elif new.startswith(_BARE_WAN_PREFIXES):
            new = "diffusion_model." + new
        out[new] = value
    return out


def _convert(pipe, state_dict: dict[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """diffusers' own conversion to `transformer.…lora_A/B.weight` keys.

    Only the `diffusion_model.` part goes through diffusers' converter (it strips that prefix from
    every key it is given, so nothing else may ride along); `transformer.` keys are already in
    diffusers' form. Anything else is foreign and left out (check_applies refuses a file where
    nothing is left).
    """
    wan = {k: v for k, v in state_dict.items() if k.startswith("diffusion_model.")}
    converted = {k: v for k, v in state_dict.items() if k.startswith("transformer.")}
    if wan:
        try:
            result = pipe.lora_state_dict(dict(wan))
        except (ValueError, KeyError, IndexError, RuntimeError) as error:
            raise LoraError(f"{label}: diffusers could not read these LoRA keys ({error}). {sample_keys(state_dict)}") from None
        converted.update(result[0] if isinstance(result, tuple) else result)
    if not converted:
        raise LoraError(
            f"{label}: no key of this LoRA names a Wan transformer module, so it would change nothing. "
            f"Is it a LoRA for another model? {sample_keys(state_dict)}"
        )
    return converted


def sample_keys(state_dict: dict, count: int = 5) -> str:
    keys = sorted(state_dict)[:count]
    return f"Its keys look like: {', '.join(keys)}" + (" …" if len(state_dict) > count else "")


def check_applies(transformer: torch.nn.Module, converted: dict[str, torch.Tensor], label: str) -> int:
    """Count the LoRA modules of `converted` that exist in `transformer` with matching shapes.

    Raises LoraError when none does (a LoRA for another model family) or when a
    matrix does not fit its layer (a rank or width mismatch).
    """
    modules = dict(transformer.named_modules())
    matched = set()
    for key, tensor in converted.items():
        name = key[len("transformer."):] if key.startswith("transformer.") else key
        if ".lora_A." not in name and ".lora_B." not in name:
            continue
        module_name, kind = (name.split(".lora_A.")[0], "A") if ".lora_A." in name else (name.split(".lora_B.")[0], "B")
        module = modules.get(module_name)
        if module is None or not hasattr(module, "weight") or not name.endswith("weight"):
            continue
        if module.weight.dim() != 2 or tensor.dim() != 2:
            matched.add(module_name)  # a conv layer (patch_embedding); PEFT checks its shapes itself
            continue
        out_features, in_features = module.weight.shape[:2]
        if kind == "A" and tensor.shape[1] != in_features:
            raise LoraError(f"{label}: {module_name} expects inputs of width {in_features}, the LoRA has {tensor.shape[1]}. "
                            "This LoRA was made for a different model size.")
        if kind == "B" and tensor.shape[0] != out_features:
            raise LoraError(f"{label}: {module_name} has {out_features} outputs, the LoRA has {tensor.shape[0]}. "
                            "This LoRA was made for a different model size.")
        matched.add(module_name)
    for key, tensor in converted.items():  # every A has its B, of the same rank
        if ".lora_A." in key and key.endswith("weight"):
            partner = converted.get(key.replace(".lora_A.", ".lora_B."))
            if partner is None:
                raise LoraError(f"{label}: {key} has no lora_B (up) partner; the file is incomplete.")
            if partner.shape[1] != tensor.shape[0]:
                raise LoraError(f"{label}: rank mismatch at {key} (A has rank {tensor.shape[0]}, B {partner.shape[1]}).")
        elif ".lora_B." in key and key.endswith("weight") and key.replace(".lora_B.", ".lora_A.") not in converted:
            raise LoraError(f"{label}: {key} has no lora_A (down) partner; the file is incomplete.")
    if not matched:
        raise LoraError(
            f"{label}: no key of this LoRA applies to the Wan transformer, so it would change nothing. "
            f"Is it a LoRA for another model? {sample_keys(converted)}"
        )
    return len(matched)


class LoraStack:
    """Named LoRA adapters on a Wan pipeline, with per-clip weights and optional fusing."""

    def __init__(self, pipe, fuse: bool = False):
        self.pipe = pipe
        self.fuse = fuse
        self.specs: dict[str, LoraSpec] = {}
        self.applied: dict[str, int] = {}  # adapter name → modules it reaches (per target, summed)
        self._fused = False
        self._current: dict[str, float] | None = None

    def experts(self, target: str) -> list[tuple[str, torch.nn.Module]]:
        """The (attribute name, transformer) pairs a target reaches on this pipeline."""
        two_experts = getattr(self.pipe, "transformer_2", None) is not None
        if not two_experts:
            return [("transformer", self.pipe.transformer)]
        return {
            "high": [("transformer", self.pipe.transformer)],
            "low": [("transformer_2", self.pipe.transformer_2)],
            "both": [("transformer", self.pipe.transformer), ("transformer_2", self.pipe.transformer_2)],
        }[target]

    def add(self, spec: LoraSpec, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Read, normalise, check and load one LoRA file as adapter `spec.name`.

        state_dict: the LoRA tensors when the caller read the file itself (the LoRA part of
        an SVI-Dance file); they are checked like a file's."""
        if spec.target not in TARGETS:
            raise LoraError(f"{spec.name}: target must be one of {TARGETS}, got {spec.target!r}.")
        if spec.name in self.specs:
            raise LoraError(f"a LoRA named {spec.name!r} is already loaded; pick another name.")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", spec.name):
            raise LoraError(f"LoRA name {spec.name!r}: use letters, digits, '-' and '_' only.")
        label = Path(spec.path).name
        if state_dict is None:
            state_dict = read_lora_file(spec.path)
        else:
            check_lora_tensors(state_dict, label)
        state_dict = normalise_lora_keys(state_dict)
        converted = _convert(self.pipe, state_dict, label)
        reached = 0
        self._unfuse()
        for attribute, transformer in self.experts(spec.target):
            reached += check_applies(transformer, converted, label)
        for attribute, _ in self.experts(spec.target):
            # The converted keys are diffusers' own, so diffusers loads them as they are.
            self.pipe.load_lora_weights(
                dict(converted), adapter_name=spec.name, load_into_transformer_2=(attribute == "transformer_2")
            )
        self.specs[spec.name] = spec
        self.applied[spec.name] = reached
        self._current = None
        self.set_weights({})

    def remove(self, name: str) -> None:
        if name not in self.specs:
            return
        self._unfuse()
        for _, transformer in self.experts(self.specs[name].target):
            transformer.delete_adapters(name)
        del self.specs[name], self.applied[name]
        self._current = None
        self.set_weights({})

    def set_weights(self, weights: dict[str, float]) -> None:
        """Activate every adapter with weights[name] (or its spec's default weight), per expert."""
        wanted = {name: float(weights.get(name, spec.weight)) for name, spec in self.specs.items()}
        unknown = set(weights) - set(self.specs)
        if unknown:
            raise LoraError(f"no LoRA named {', '.join(sorted(unknown))} is loaded; loaded: {', '.join(self.specs) or 'none'}.")
        if wanted == self._current:
            return
        self._unfuse()
        for attribute in ("transformer", "transformer_2"):
            transformer = getattr(self.pipe, attribute, None)
            if transformer is None:
                continue
            names = [name for name, spec in self.specs.items()
                     if attribute in {a for a, _ in self.experts(spec.target)}]
            if names:
                transformer.set_adapters(names, [wanted[name] for name in names])
                if self.fuse:
                    transformer.fuse_lora(adapter_names=names)
                    self._fused = True
        self._current = wanted

    def _unfuse(self) -> None:
        if not self._fused:
            return
        for attribute in ("transformer", "transformer_2"):
            transformer = getattr(self.pipe, attribute, None)
            if transformer is not None:
                transformer.unfuse_lora()
        self._fused = False

    def describe(self) -> list[dict]:
        return [
            {"name": s.name, "file": Path(s.path).name, "target": s.target, "role": s.role,
             "default_weight": s.weight, "modules": self.applied[s.name]}
            for s in self.specs.values()
        ]
