"""The LoRA stack: SVI, speed (step-distill) and style LoRAs on one Wan pipeline.

Files are read with safetensors only (pickle formats are refused), every key is sorted into
what it changes on the transformer it targets, then low-rank pairs are loaded with diffusers'
`load_lora_weights` as named adapters and the other deltas (full weight, bias and modulation
deltas) are added by the stack itself. Weights are set per expert with `set_adapters`, so they can
change between clips without reloading.

Key formats handled (one code path; every key is applied or counted in `LoraStack.notes`):
    SVI / DiffSynth + PEFT  blocks.N.self_attn.q.lora_A.default.weight   (bare)
                            pipe.dit.blocks.N.…lora_A.default.weight
    original Wan / ComfyUI  diffusion_model.blocks.N.…lora_down.weight / lora_up.weight (+ .alpha)
    Kohya / musubi          lora_unet_blocks_N_self_attn_q.lora_down.weight (+ .alpha)
    diffusers               transformer.blocks.N.attn1.to_q.lora_A.weight (also without `transformer.`)
    lightx2v / Lightning    X.diff (weight delta), X.diff_b (bias delta), blocks.N.diff_m / head.diff_m
                            (modulation delta), next to the lora_down/lora_up pairs

Why not diffusers' own converter (`_convert_non_diffusers_wan_lora_to_diffusers`, diffusers 0.42.1):
it maps the same module names, but it drops `.diff` keys (norm and weight deltas) and `diff_m`
modulation deltas with only a log line, drops `time_projection` keys without a weight key, takes
`k_img`/`v_img` only when both are present, raises KeyError on an `.alpha` without its pair and
ValueError on any key it does not know (e.g. a LoRA on `patch_embedding`), and its musubi converter
raises on a LoRA that trained only some blocks. Its output cannot say which keys were left out.
Here the name table below maps every module; keys without a target in this model (a Wan2.1 I2V
LoRA's `k_img`/`v_img`/`img_emb` on Wan2.2) are counted and reported, as ComfyUI users expect;
a file where nothing applies is refused.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import UserError

logger = logging.getLogger(__name__)

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


# -- reading ----------------------------------------------------------------------------------


def _sniff(head: bytes) -> str:
    """What the first bytes of a file that safetensors could not read suggest it is."""
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"  # an 8-byte header length, then the JSON header: damaged or truncated
    if head[:4] == b"PK\x03\x04":
        return "zip"  # torch.save's zip format
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "unknown"


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a LoRA state dict from a .safetensors file, refusing anything else."""
    state_dict = read_safetensors(path)
    check_lora_tensors(state_dict, Path(path).name)
    return state_dict


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors weights file; pickle formats and damaged files are refused.

    safetensors is tried first on every file (it never runs code); the first bytes are looked at
    only to word the error when it fails, so no valid file is refused for how its header starts.
    """
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
        raise LoraError(f"{label}: file not found.")
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        with open(path, "rb") as handle:
            kind = _sniff(handle.read(16))
        if kind in ("zip", "pickle"):
            raise LoraError(f"{label}: this is a pickle/PyTorch file renamed .safetensors; it is refused. "
                            "Convert it to real safetensors.") from None
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise LoraError(f"{label}: not a readable safetensors file ({reason}). Is it truncated? "
                        "Download it again.") from None
    if not state_dict:
        raise LoraError(f"{label}: the file holds no tensors.")
    return state_dict


def check_lora_tensors(state_dict: dict[str, torch.Tensor], label: str) -> None:
    """LoraError unless every tensor is a finite floating-point LoRA matrix."""
    for key, tensor in state_dict.items():
        if not tensor.is_floating_point():
            raise LoraError(f"{label}: {key} holds {tensor.dtype} values; a LoRA holds floating-point matrices.")
        if not torch.isfinite(tensor).all():
            raise LoraError(f"{label}: {key} contains NaN or infinite values; the file is damaged.")


# -- key names --------------------------------------------------------------------------------

# Prefixes trainers put in front of the transformer's own names (the namespace they imply).
_PREFIXES = (
    ("pipe.dit.", "wan"), ("model.diffusion_model.", "wan"), ("diffusion_model.", "wan"),
    ("base_model.model.", None), ("dit.", "wan"), ("transformer.", "diffusers"),
)
# Suffix of a key → what it is. Order matters: longer suffixes first.
_KINDS = (
    (".lora_A.weight", "A"), (".lora_down.weight", "A"), (".lora_B.weight", "B"), (".lora_up.weight", "B"),
    (".lora_B.bias", "diff_b"), (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff_m", "diff_m"), (".diff", "diff"),
)
# The parameter each delta kind adds to (on the module the key names).
DELTA_PARAMETERS = {"diff": "weight", "diff_b": "bias", "diff_m": "scale_shift_table"}
# Module names only diffusers' WanTransformer3DModel uses (the original Wan code says self_attn, ffn.0, head.head …).
_DIFFUSERS_NAMES = re.compile(r"^(blocks\.\d+\.(attn1|attn2|ffn\.net|scale_shift_table)|condition_embedder\.|proj_out\b|scale_shift_table\b)")
_ATTENTION = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k",
              "k_img": "add_k_proj", "v_img": "add_v_proj", "norm_k_img": "norm_added_k"}
# Original Wan module name → diffusers WanTransformer3DModel module name.
_WAN_MODULES = (
    (re.compile(r"^blocks\.(\d+)\.self_attn\.(q|k|v|o|norm_q|norm_k)$"),
     lambda m: f"blocks.{m[1]}.attn1.{_ATTENTION[m[2]]}"),
    (re.compile(r"^blocks\.(\d+)\.cross_attn\.(q|k|v|o|norm_q|norm_k|k_img|v_img|norm_k_img)$"),
     lambda m: f"blocks.{m[1]}.attn2.{_ATTENTION[m[2]]}"),
    (re.compile(r"^blocks\.(\d+)\.ffn\.0$"), lambda m: f"blocks.{m[1]}.ffn.net.0.proj"),
    (re.compile(r"^blocks\.(\d+)\.ffn\.2$"), lambda m: f"blocks.{m[1]}.ffn.net.2"),
    # Wan's norm3 is the affine cross-attention norm (diffusers norm2); norm1/norm2 have no parameters.
    (re.compile(r"^blocks\.(\d+)\.norm(1|2|3)$"), lambda m: f"blocks.{m[1]}.norm{ {'1': 1, '2': 3, '3': 2}[m[2]] }"),
    (re.compile(r"^blocks\.(\d+)$"), lambda m: f"blocks.{m[1]}"),  # diff_m: the block's modulation table
    (re.compile(r"^head\.head$"), lambda m: "proj_out"),
    (re.compile(r"^head$"), lambda m: ""),  # head.diff_m: the output modulation table
    (re.compile(r"^text_embedding\.(0|2)$"), lambda m: f"condition_embedder.text_embedder.linear_{1 if m[1] == '0' else 2}"),
    (re.compile(r"^time_embedding\.(0|2)$"), lambda m: f"condition_embedder.time_embedder.linear_{1 if m[1] == '0' else 2}"),
    (re.compile(r"^time_projection\.1$"), lambda m: "condition_embedder.time_proj"),
    (re.compile(r"^img_emb\.proj\.(0|1|3|4)$"), lambda m: "condition_embedder.image_embedder."
     + {"0": "norm1", "1": "ff.net.0.proj", "3": "ff.net.2", "4": "norm2"}[m[1]]),
    (re.compile(r"^patch_embedding$"), lambda m: "patch_embedding"),
)
# Kohya / musubi module names (dots flattened to '_') → original Wan module names.
_KOHYA_MODULES = (
    (re.compile(r"^blocks_(\d+)_(self_attn|cross_attn)_(q|k|v|o|k_img|v_img|norm_q|norm_k|norm_k_img)$"), r"blocks.\1.\2.\3"),
    (re.compile(r"^blocks_(\d+)_ffn_(\d+)$"), r"blocks.\1.ffn.\2"),
    (re.compile(r"^blocks_(\d+)_norm(\d)$"), r"blocks.\1.norm\2"),
    (re.compile(r"^blocks_(\d+)$"), r"blocks.\1"),
    (re.compile(r"^(text_embedding|time_embedding|time_projection)_(\d+)$"), r"\1.\2"),
    (re.compile(r"^head_head$"), "head.head"),
    (re.compile(r"^img_emb_proj_(\d+)$"), r"img_emb.proj.\1"),
    (re.compile(r"^patch_embedding$"), "patch_embedding"),
)


def _kohya_to_wan(module: str) -> str | None:
    """blocks_3_self_attn_q → blocks.3.self_attn.q (None when the name is not a Wan module)."""
    for pattern, replacement in _KOHYA_MODULES:
        if pattern.match(module):
            return pattern.sub(replacement, module)
    return None


def _wan_to_diffusers(module: str) -> str | None:
    for pattern, rename in _WAN_MODULES:
        match = pattern.match(module)
        if match:
            return rename(match)
    return None


def parse_key(key: str) -> tuple[str, str] | None:
    """A file key → (diffusers module name, kind), or None for a key no known format writes.

    kind: "A" / "B" (low-rank down / up matrix), "alpha", "diff" (weight delta), "diff_b" (bias delta)
    or "diff_m" (modulation delta). The module may not exist in a given model; `plan_lora` checks that.
        pipe.dit.blocks.0.self_attn.q.lora_A.default.weight  → ("blocks.0.attn1.to_q", "A")
        lora_unet_blocks_0_ffn_2.alpha                        → ("blocks.0.ffn.net.2", "alpha")
        diffusion_model.blocks.3.diff_m                       → ("blocks.3", "diff_m")
        transformer.blocks.0.attn2.add_k_proj.lora_B.weight   → ("blocks.0.attn2.add_k_proj", "B")
    """
    name = re.sub(r"\.(lora_[AB]|lora_down|lora_up)\.default\.", r".\1.", key)
    namespace = None
    for prefix, implied in _PREFIXES:
        if name.startswith(prefix):
            name, namespace = name[len(prefix):], implied or namespace
    for suffix, kind in _KINDS:
        if name.endswith(suffix):
            module = name[: -len(suffix)]
            break
    else:
        return None
    if module.startswith("lora_unet_"):
        module = _kohya_to_wan(module[len("lora_unet_"):])
        if module is None:
            return None
        namespace = "wan"
    if namespace == "diffusers" or (namespace is None and _DIFFUSERS_NAMES.match(module)):
        return module, kind
    renamed = _wan_to_diffusers(module)
    return (renamed, kind) if renamed is not None else None


def _pattern(key: str) -> str:
    """blocks.12.cross_attn.k_img.lora_down.weight → blocks.N.cross_attn.k_img.lora_down.weight"""
    return re.sub(r"(?<=[._])\d+(?=[._])", "N", key)


def sample_keys(keys, count: int = 5) -> str:
    keys = sorted(keys)
    return f"Its keys look like: {', '.join(keys[:count])}" + (" …" if len(keys) > count else "")


# -- planning: what each key does to one transformer ------------------------------------------


@dataclass
class LoraPlan:
    """What one LoRA file does to one transformer.

    lora: diffusers-format low-rank pairs, `transformer.<module>.lora_A.weight` (rank, in) and
        `….lora_B.weight` (out, rank), alpha/rank folded into B; loaded by PEFT as an adapter.
    deltas: (module name, parameter name) → a tensor of that parameter's shape, added as weight · delta.
    used: file keys applied; unused: file key → why it has no target here.
    modules: modules reached.
    """

    lora: dict[str, torch.Tensor] = field(default_factory=dict)
    deltas: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    unused: dict[str, str] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)


def base_layer(module: torch.nn.Module) -> torch.nn.Module:
    """The layer itself under a PEFT LoRA wrapper (whose own `weight` is the base layer's)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def _matrix(tensor: torch.Tensor) -> torch.Tensor:
    """A LoRA matrix; Kohya saves some as (out, in, 1, 1)."""
    if tensor.ndim in (4, 5) and all(size == 1 for size in tensor.shape[2:]):
        return tensor.flatten(1)
    return tensor


def plan_lora(transformer: torch.nn.Module, state_dict: dict[str, torch.Tensor], label: str) -> LoraPlan:
    """Sort every key of `state_dict` into a low-rank pair, a delta, or a counted key without target.

    Raises LoraError for what is broken rather than foreign: a matrix without its partner, a rank
    mismatch, or a matrix or delta whose shape does not fit the layer it names (another model size).
    """
    plan = LoraPlan()
    layers = dict(transformer.named_modules())
    groups: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, tensor in state_dict.items():
        parsed = parse_key(key)
        if parsed is None:
            plan.unused[key] = "not a Wan LoRA key"
            continue
        module_name, kind = parsed
        groups.setdefault(module_name, {})[kind] = (key, tensor)

    for module_name, kinds in groups.items():
        module = layers.get(module_name)
        if module is None:
            plan.unused.update({key: "no such layer in this model" for key, _ in kinds.values()})
            continue
        layer = base_layer(module)
        # 1. The low-rank pair (with its alpha).
        if "A" in kinds or "B" in kinds:
            if "A" not in kinds or "B" not in kinds:
                have, missing = ("lora_A (down)", "lora_B (up)") if "A" in kinds else ("lora_B (up)", "lora_A (down)")
                key = kinds["A" if "A" in kinds else "B"][0]
                raise LoraError(f"{label}: {key} is a {have} matrix with no {missing} partner; the file is incomplete.")
            (key_a, down), (key_b, up) = kinds["A"], kinds["B"]
            down, up = _matrix(down), _matrix(up)
            if isinstance(layer, torch.nn.Linear) and (down.ndim != 2 or up.ndim != 2):
                shape = tuple((down if down.ndim != 2 else up).shape)
                raise LoraError(f"{label}: {key_a if down.ndim != 2 else key_b} has shape {shape}; a LoRA matrix is 2-D.")
            if not isinstance(layer, torch.nn.Linear):
                plan.unused.update({key: "a low-rank pair on a layer that is not linear"
                                    for kind, (key, _) in kinds.items() if kind in ("A", "B", "alpha")})
            else:
                if up.shape[1] != down.shape[0]:
                    raise LoraError(f"{label}: rank mismatch at {key_a} (A has rank {down.shape[0]}, B {up.shape[1]}).")
                if down.shape[1] != layer.in_features:
                    raise LoraError(f"{label}: {module_name} expects inputs of width {layer.in_features}, the LoRA has "
                                    f"{down.shape[1]}. This LoRA was made for a different model size.")
                if up.shape[0] != layer.out_features:
                    raise LoraError(f"{label}: {module_name} has {layer.out_features} outputs, the LoRA has "
                                    f"{up.shape[0]}. This LoRA was made for a different model size.")
                if "alpha" in kinds:
                    scale = float(kinds["alpha"][1]) / down.shape[0]
                    up = (up.float() * scale).to(up.dtype)
                    plan.used.add(kinds["alpha"][0])
                plan.lora[f"transformer.{module_name}.lora_A.weight"] = down.contiguous()
                plan.lora[f"transformer.{module_name}.lora_B.weight"] = up.contiguous()
                plan.used.update((key_a, key_b))
                plan.modules.add(module_name)
        elif "alpha" in kinds:
            plan.unused[kinds["alpha"][0]] = "an alpha without its matrices"
        # 2. Deltas added to a parameter of the layer.
        for kind, parameter_name in DELTA_PARAMETERS.items():
            if kind not in kinds:
                continue
            key, delta = kinds[kind]
            parameter = getattr(layer, parameter_name, None)
            if not isinstance(parameter, torch.nn.Parameter):
                plan.unused[key] = f"the layer has no {parameter_name}"
                continue
            if type(parameter.data) is not torch.Tensor:  # a torchao-quantized weight (engines/speed.py)
                raise LoraError(f"{label}: {key} adds a full weight delta to {module_name}, whose weights are quantized; "
                                "deltas cannot be added to packed weights. Load this LoRA without quantization.")
            if tuple(delta.shape) != tuple(parameter.shape):
                raise LoraError(f"{label}: {key} has shape {tuple(delta.shape)}, {module_name or 'the model'}."
                                f"{parameter_name} is {tuple(parameter.shape)}. This LoRA was made for a different model size.")
            plan.deltas[(module_name, parameter_name)] = delta
            plan.used.add(key)
            plan.modules.add(module_name)
    return plan


def unused_note(label: str, total: int, unused: dict[str, str]) -> str:
    """'style.safetensors: 40 of 120 keys have no target in this model and were left out: 20 × …'"""
    groups = Counter((_pattern(key), reason) for key, reason in unused.items())
    shown = [f"{count} × {pattern} ({reason})" for (pattern, reason), count in groups.most_common(4)]
    more = len(groups) - len(shown)
    hint = ""
    if any(re.search(r"k_img|v_img|img_emb|image_embedder|add_[kv]_proj", key) for key in unused):
        hint = (" Image-attention keys (k_img, v_img, img_emb) belong to a Wan2.1 image-to-video model; "
                "Wan2.2 has no image cross-attention, so leaving them out is expected.")
    return (f"{label}: {len(unused)} of {total} keys have no target in this model and were left out: "
            + "; ".join(shown) + (f"; and {more} more kinds" if more > 0 else "") + "." + hint)


# -- the stack --------------------------------------------------------------------------------


class LoraStack:
    """Named LoRA adapters on a Wan pipeline, with per-clip weights and optional fusing.

    Low-rank pairs are PEFT adapters (diffusers' `load_lora_weights` / `set_adapters`); deltas
    (`diff`, `diff_b`, `diff_m`) are added here: each touched parameter keeps a copy of its base
    value and is rewritten as base + Σ weight · delta whenever the weights change, so weight 0
    gives back the base parameter bit for bit.
    """

    def __init__(self, pipe, fuse: bool = False):
        self.pipe = pipe
        self.fuse = fuse
        self.specs: dict[str, LoraSpec] = {}
        self.applied: dict[str, int] = {}  # adapter name → modules it reaches (per target, summed)
        self.notes: dict[str, str] = {}  # adapter name → what of its file had no target (absent: everything applied)
        self._peft: dict[str, set[str]] = {}  # transformer attribute → adapters with low-rank pairs there
        self._deltas: dict[str, dict[tuple[str, str, str], torch.Tensor]] = {}  # adapter → (attribute, module, parameter) → delta
        self._base: dict[tuple[str, str, str], torch.Tensor] = {}  # base value of every parameter a delta touches
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

    def add(self, spec: LoraSpec, state_dict: dict[str, torch.Tensor] | None = None) -> str | None:
        """Read, sort, check and load one LoRA file as adapter `spec.name`.

        state_dict: the LoRA tensors when the caller read the file itself (the LoRA part of
        an SVI-Dance file); they are checked like a file's.
        Returns a note for the user when some keys had no target (also kept in `notes`), else None.
        Raises LoraError when the file is unusable or nothing in it applies to this model.
        """
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

        # 1. Plan every expert first, so a refusal leaves the pipeline untouched.
        plans = [(attribute, plan_lora(transformer, state_dict, label)) for attribute, transformer in self.experts(spec.target)]
        used = set().union(*(plan.used for _, plan in plans))
        if not used:
            raise LoraError(
                f"{label}: no key of this LoRA names a Wan transformer module of this model, so it would change nothing. "
                f"Is it a LoRA for another model? {sample_keys(state_dict)}"
            )
        unused = {key: reason for _, plan in plans for key, reason in plan.unused.items() if key not in used}

        # 2. Load the low-rank pairs as PEFT adapters; keep the deltas.
        self._unfuse()
        deltas = {}
        for attribute, plan in plans:
            if plan.lora:
                # The keys are diffusers' own, so diffusers loads them as they are.
                self.pipe.load_lora_weights(dict(plan.lora), adapter_name=spec.name,
                                            load_into_transformer_2=(attribute == "transformer_2"))
                self._peft.setdefault(attribute, set()).add(spec.name)
            deltas.update({(attribute, *where): delta for where, delta in plan.deltas.items()})
        self.specs[spec.name] = spec
        self.applied[spec.name] = sum(len(plan.modules) for _, plan in plans)
        self._deltas[spec.name] = deltas
        note = unused_note(label, len(state_dict), unused) if unused else None
        if note:
            self.notes[spec.name] = note
            logger.warning(note)
        self._current = None
        self.set_weights({})
        return note

    def remove(self, name: str) -> None:
        if name not in self.specs:
            return
        self._unfuse()
        for attribute, transformer in self.experts(self.specs[name].target):
            if name in self._peft.get(attribute, ()):
                transformer.delete_adapters(name)
                self._peft[attribute].discard(name)
        del self.specs[name], self.applied[name], self._deltas[name]
        self.notes.pop(name, None)
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
        self._apply_deltas(wanted)
        for attribute in ("transformer", "transformer_2"):
            transformer = getattr(self.pipe, attribute, None)
            names = [name for name in self.specs if name in self._peft.get(attribute, ())]
            if transformer is None or not names:
                continue
            transformer.set_adapters(names, [wanted[name] for name in names])
            if self.fuse:
                transformer.fuse_lora(adapter_names=names)
                self._fused = True
        self._current = wanted

    def _parameter(self, attribute: str, module_name: str, parameter_name: str) -> torch.nn.Parameter:
        transformer = getattr(self.pipe, attribute)
        return getattr(base_layer(transformer.get_submodule(module_name)), parameter_name)

    @torch.no_grad()
    def _apply_deltas(self, wanted: dict[str, float]) -> None:
        """Every parameter a delta touches := base + Σ weight · delta (exactly base where all weights are 0)."""
        terms: dict[tuple[str, str, str], list[tuple[float, torch.Tensor]]] = {}
        for name, deltas in self._deltas.items():
            for where, delta in deltas.items():
                terms.setdefault(where, []).append((wanted[name], delta))
        for where in list(self._base):  # parameters no loaded adapter touches any more
            if where not in terms:
                self._parameter(*where).copy_(self._base.pop(where))
        for where, parts in terms.items():
            parameter = self._parameter(*where)
            base = self._base.setdefault(where, parameter.detach().clone())
            parts = [(weight, delta) for weight, delta in parts if weight != 0.0]
            if not parts:
                parameter.copy_(base)
                continue
            value = base.float() + sum(weight * delta.to(base.device, torch.float32) for weight, delta in parts)
            parameter.copy_(value.to(parameter.dtype))

    def _unfuse(self) -> None:
        if not self._fused:
            return
        for attribute in ("transformer", "transformer_2"):
            transformer = getattr(self.pipe, attribute, None)
            if transformer is not None and self._peft.get(attribute):
                transformer.unfuse_lora()
        self._fused = False

    def describe(self) -> list[dict]:
        return [
            {"name": s.name, "file": Path(s.path).name, "target": s.target, "role": s.role,
             "default_weight": s.weight, "modules": self.applied[s.name]}
            for s in self.specs.values()
        ]
