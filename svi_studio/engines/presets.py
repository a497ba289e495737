"""Model presets: data files under presets/models/, one per preset.

A preset names the base model (a hub repo id, a local diffusers folder, or
`tiny:wan2.2` / `tiny:wan2.1` for the offline test components), the SVI mode, the
LoRAs (hub repo + file, or a local file), dtype, offload policy and sampler
settings. Any path can be replaced by a local directory or file; hub files are
fetched with huggingface_hub on first use (with its progress bars) and cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import ClipSettings
from ..errors import UserError
from .schedulers import SCHEDULERS
from .speed import SpeedError, SpeedOptions

PRESET_DIR = Path(__file__).resolve().parents[2] / "presets" / "models"
OFFLOAD_POLICIES = ("none", "model", "group", "sequential")
SVI_MODES = ("pro", "film", "shot", "dance")


class PresetError(UserError, ValueError):
    """A preset file that cannot be used."""


@dataclass(frozen=True)
class LoraSource:
    """Where a LoRA of a preset comes from: `local` if given and present, else hub `repo`/`file`."""

    name: str
    target: str = "both"
    weight: float = 1.0
    role: str = "style"
    repo: str | None = None
    file: str | None = None
    local: str | None = None


@dataclass(frozen=True)
class ModelPreset:
    id: str
    label: str
    base_model: str
    svi_mode: str = "pro"
    dtype: str = "bfloat16"
    offload: str = "model"
    scheduler: str = "unipc"
    max_area: int = 480 * 832
    loras: tuple[LoraSource, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)  # speed switches on by default (engines/speed.py)
    notes: str = ""

    def default_settings(self) -> ClipSettings:
        data = dict(self.settings)
        data["lora_weights"] = {lora.name: lora.weight for lora in self.loras}
        return ClipSettings.from_dict(data)

    @property
    def is_tiny(self) -> bool:
        return self.base_model.startswith("tiny:")


def list_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.json"))


def load_preset(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ModelPreset:
    """Load presets/models/<name>.json (or a JSON file path); `overrides` replace top-level keys."""
    path = Path(name_or_path)
    if not path.suffix == ".json":
        path = PRESET_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise PresetError(f"no model preset {str(name_or_path)!r}; available: {', '.join(list_presets())}.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"{path.name}: not valid JSON ({error}).") from None
    data.update(overrides or {})
    loras = tuple(LoraSource(**lora) for lora in data.pop("loras", []))
    preset = ModelPreset(loras=loras, **{k: v for k, v in data.items() if not k.startswith("_")})
    if preset.svi_mode not in SVI_MODES:
        raise PresetError(f"{path.name}: svi_mode must be one of {SVI_MODES}.")
    if preset.scheduler not in SCHEDULERS:
        raise PresetError(f"{path.name}: scheduler must be one of {SCHEDULERS}.")
    if preset.offload not in OFFLOAD_POLICIES:
        raise PresetError(f"{path.name}: offload must be one of {OFFLOAD_POLICIES}.")
    try:
        SpeedOptions.from_dict(preset.speed)
    except (SpeedError, TypeError) as error:
        raise PresetError(f"{path.name}: speed: {error}") from None
    return preset


def resolve_lora_file(source: LoraSource) -> str:
    """A local path for the LoRA: its `local` file if present, else a hub download (cached)."""
    if source.local and Path(source.local).expanduser().is_file():
        return str(Path(source.local).expanduser())
    if not (source.repo and source.file):
        raise PresetError(f"LoRA {source.name}: local file {source.local!r} not found and no hub repo/file given.")
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id=source.repo, filename=source.file)
