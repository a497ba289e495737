"""Project specs: a film described in one JSON file (presets/projects/*.json).

    {
      "name": "Cat Adventure",
      "reference": "../../assets/cat.png",          # relative to the spec file (or the repo root)
      "style_prompt": "…", "negative_prompt": "",
      "shots": [{"prompt": "…", "seed": 101}, "a shot given as a bare string", …],
      "settings": {"num_motion_latents": 1}          # optional, validated like any settings
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..settings import SettingsError, validate_seed
from .model import ProjectError, parse_json

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PRESET_DIR = REPO_ROOT / "presets" / "projects"


@dataclass
class ProjectSpec:
    name: str
    reference: Path | None
    style_prompt: str = ""
    negative_prompt: str = ""
    prompts: list[str] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def reference_image(self) -> Image.Image | None:
        """The reference as RGB, opened by reference.load_reference (ReferenceError if unusable)."""
        if self.reference is None:
            return None
        from ..reference import load_reference

        image, _ = load_reference(self.reference)
        return image


def list_project_presets() -> list[Path]:
    return sorted(PROJECT_PRESET_DIR.glob("*.json"))


def load_spec(path: str | Path) -> ProjectSpec:
    """Read a spec file; ProjectError says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        named = PROJECT_PRESET_DIR / f"{path}.json"
        if named.is_file():
            path = named
        else:
            raise ProjectError(f"{path}: no such spec file (or preset name; presets: "
                               f"{', '.join(p.stem for p in list_project_presets())}).")
    try:
        data = parse_json(path.read_bytes(), path.name)  # UTF-8, JSON, nesting: the project file's own checks
    except OSError as error:
        raise ProjectError(f"{path.name} cannot be read ({error.strerror}).") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path.name}: a spec must be a JSON object.")
    prompts, seeds = [], []
    for number, shot in enumerate(data.get("shots") or [], start=1):
        if isinstance(shot, str):
            prompts.append(shot)
            seeds.append(None)
        elif isinstance(shot, dict) and isinstance(shot.get("prompt"), str):
            prompts.append(shot["prompt"])
            seed = shot.get("seed")
            if seed is not None:  # the same gate as the app and the Python API
                try:
                    seed = validate_seed(seed)
                except SettingsError as error:
                    raise ProjectError(f"{path.name}: shot {number}: {error}") from None
            seeds.append(seed)
        else:
            raise ProjectError(f"{path.name}: shot {number} must be a prompt string or an object with 'prompt'.")
    reference = None
    if data.get("reference"):
        for base in (path.parent, REPO_ROOT):
            candidate = (base / str(data["reference"])).resolve()
            if candidate.is_file():
                reference = candidate
                break
        else:
            raise ProjectError(f"{path.name}: reference image {data['reference']!r} not found.")
    return ProjectSpec(
        name=str(data.get("name") or path.stem), reference=reference,
        style_prompt=str(data.get("style_prompt") or ""), negative_prompt=str(data.get("negative_prompt") or ""),
        prompts=prompts, seeds=seeds, settings=dict(data.get("settings") or {}),
        description=str(data.get("description") or ""),
    )
