"""Project specs: a film described in one JSON file (presets/projects/*.json).

    {
      "name": "Cat Adventure",
      "reference": "../../assets/cat.png",          # relative to the spec file (or the repo root)
      "style_prompt": "…", "negative_prompt": "",
      "shots": [{"prompt": "…", "seed": 101}, "a shot given as a bare string",
                {"prompt": "…", "anchor_image": "b.png", "end_image": "door.png", "pose_video": "dance.mp4"}],
                                                     # per-shot conditions, relative like the reference
      "pose_video": "whole-dance.mp4",               # optional: one pose video for the film, cut per shot
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
    media: list[dict[str, Path]] = field(default_factory=list)  # per shot: condition role → file
    film_media: dict[str, Path] = field(default_factory=dict)  # "pose_video": one for the whole film

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
    from ..engines.request import CONDITION_ROLES

    prompts, seeds, media = [], [], []
    for number, shot in enumerate(data.get("shots") or [], start=1):
        if isinstance(shot, str):
            prompts.append(shot)
            seeds.append(None)
            media.append({})
        elif isinstance(shot, dict) and isinstance(shot.get("prompt"), str):
            prompts.append(shot["prompt"])
            media.append({role: _spec_file(path, shot[role], f"shot {number}'s {role}")
                          for role in CONDITION_ROLES if shot.get(role)})
            seed = shot.get("seed")
            if seed is not None:  # the same gate as the app and the Python API
                try:
                    seed = validate_seed(seed)
                except SettingsError as error:
                    raise ProjectError(f"{path.name}: shot {number}: {error}") from None
            seeds.append(seed)
        else:
            raise ProjectError(f"{path.name}: shot {number} must be a prompt string or an object with 'prompt'.")
    reference = _spec_file(path, data["reference"], "reference image") if data.get("reference") else None
    return ProjectSpec(
        name=str(data.get("name") or path.stem), reference=reference,
        style_prompt=str(data.get("style_prompt") or ""), negative_prompt=str(data.get("negative_prompt") or ""),
        prompts=prompts, seeds=seeds, settings=dict(data.get("settings") or {}),
        description=str(data.get("description") or ""), media=media,
        film_media={"pose_video": _spec_file(path, data["pose_video"], "pose_video")} if data.get("pose_video") else {},
    )


def _spec_file(spec_path: Path, value: Any, what: str) -> Path:
    """A file a spec names, relative to the spec file (or the repo root); ProjectError if absent."""
    for base in (spec_path.parent, REPO_ROOT):
        candidate = (base / str(value)).resolve()
        if candidate.is_file():
            return candidate
    raise ProjectError(f"{spec_path.name}: {what} {str(value)!r:.200} not found.")
