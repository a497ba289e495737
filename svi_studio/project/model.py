"""What a project is: reference, story prompts, settings, shots and their takes.

These are plain dataclasses with `to_dict` / `from_dict`; `store.py` puts them on
disk and `status.py` derives each shot's status from them. Nothing here does I/O.

On disk (one folder per project):
    project.json                 this file's data, schema-versioned, stable key order
    reference.png                the reference image (identity anchor)
    anchors/<sha>.png            per-shot anchor images (optional)
    takes/<shot_id>/<take_id>/   one folder per complete take (see Take)
"""

from __future__ import annotations

import re
import secrets
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

from ..settings import ClipSettings, SettingsError, normalise_settings, validate_seed

SCHEMA_VERSION = 1
SHOT_OVERRIDE_KEYS = ("steps", "guidance", "guidance_2", "flow_shift", "lora_weights")
# Shot and take ids name folders (takes/<shot id>/<take id>/): letters, digits, '-' and '_' only,
# so an id read from a project file (or an uploaded bundle) can never point outside the project.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_id(value: str, what: str) -> str:
    """`value` if it is a safe shot/take id, else ProjectError."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ProjectError(f"project.json: {what} {value!r:.80} is not a valid id (letters, digits, '-' and '_' "
                           "only); the file was left untouched.")
    return value


class ProjectError(ValueError):
    """A project that cannot be loaded or changed as asked; the message says why and what to do."""


def new_id() -> str:
    return secrets.token_hex(4)


def random_seed() -> int:
    """A fresh seed for a new shot or an unlocked re-roll (32 bits: easy to read and type)."""
    return secrets.randbits(32)


@dataclass
class Shot:
    """One shot of the film.

    id: stable across insert/move/delete (positions change, ids do not).
    seed: the seed its next render uses; equals the selected take's seed after a render.
    seed_locked: keep `seed` on re-rolls instead of drawing a new one.
    overrides: per-shot sampler settings (keys in SHOT_OVERRIDE_KEYS).
    anchor_image: project-relative path of the shot's own anchor image, or None (use the reference).
    takes: take ids, oldest first. selected_take: one of them, or None.
    """

    prompt: str
    seed: int = field(default_factory=random_seed)
    seed_locked: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    anchor_image: str | None = None
    id: str = field(default_factory=new_id)
    takes: list[str] = field(default_factory=list)
    selected_take: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not know, kept as read

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {**data.pop("extra"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Shot":
        seed = _typed(data, "seed", int, None)
        if seed is not None:
            try:
                validate_seed(seed)
            except SettingsError as error:
                raise ProjectError(f"project.json: a shot's {error}") from None
        shot_id = check_id(_typed(data, "id", str, None) or new_id(), "the shot id")
        takes = [check_id(t, f"shot {shot_id}'s take id") for t in _typed(data, "takes", list, [])]
        selected = _typed(data, "selected_take", str, None)
        if selected is not None:
            check_id(selected, f"shot {shot_id}'s selected take")
        return cls(
            prompt=_typed(data, "prompt", str, ""),
            seed=seed if seed is not None else random_seed(),
            seed_locked=bool(data.get("seed_locked", False)),
            overrides={k: v for k, v in _typed(data, "overrides", dict, {}).items() if k in SHOT_OVERRIDE_KEYS},
            anchor_image=_typed(data, "anchor_image", str, None),
            id=shot_id,
            takes=takes,
            selected_take=selected,
            extra={k: v for k, v in data.items() if k not in SHOT_KEYS},
        )


@dataclass
class Project:
    """The whole film. `settings` are the project-wide clip settings; `engine` the preset id
    the project renders with (a take made by another engine is stale)."""

    name: str = "Untitled film"
    reference: str | None = None
    style_prompt: str = ""
    negative_prompt: str = ""
    engine: str = "draft"
    settings: ClipSettings = field(default_factory=ClipSettings)
    shots: list[Shot] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not know, kept as read

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "schema_version": self.schema_version,
            "name": self.name,
            "reference": self.reference,
            "style_prompt": self.style_prompt,
            "negative_prompt": self.negative_prompt,
            "engine": self.engine,
            "settings": self.settings.to_dict(),
            "shots": [shot.to_dict() for shot in self.shots],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Project":
        if not isinstance(data, dict):
            raise ProjectError("project.json must hold a JSON object.")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise ProjectError("project.json has no schema_version; it is not an SVI Studio project file.")
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"project.json is schema version {version}, newer than this SVI Studio understands "
                f"({SCHEMA_VERSION}). Update SVI Studio to open it; the file was left untouched."
            )
        shots = _typed(data, "shots", list, [])
        if not all(isinstance(shot, dict) for shot in shots):
            raise ProjectError("project.json: every entry of 'shots' must be an object.")
        try:
            settings = ClipSettings.from_dict(_typed(data, "settings", dict, {}))
            normalise_settings(settings)  # wrong types and out-of-range values are named now, not at render time
        except (TypeError, ValueError) as error:
            raise ProjectError(f"project.json: settings are malformed ({error}). Fix that value in the file "
                               "(it was left untouched) and open the project again.") from None
        parsed = [Shot.from_dict(shot) for shot in shots]
        seen: set[str] = set()
        for number, shot in enumerate(parsed, start=1):
            if shot.id in seen:
                raise ProjectError(f"project.json: shot {number} has the id {shot.id!r} of an earlier shot; "
                                   "every shot needs its own id.")
            seen.add(shot.id)
            try:
                normalise_settings(settings.merged(shot.overrides))
            except (TypeError, ValueError) as error:
                raise ProjectError(f"project.json: shot {number}'s overrides are malformed ({error}).") from None
        return cls(
            name=_typed(data, "name", str, "Untitled film"),
            reference=_typed(data, "reference", str, None),
            style_prompt=_typed(data, "style_prompt", str, ""),
            negative_prompt=_typed(data, "negative_prompt", str, ""),
            engine=_typed(data, "engine", str, "draft"),
            settings=settings,
            shots=parsed,
            schema_version=version,
            extra={k: v for k, v in data.items() if k not in PROJECT_KEYS},
        )

    def shot_index(self, shot_id: str) -> int:
        for index, shot in enumerate(self.shots):
            if shot.id == shot_id:
                return index
        raise ProjectError(f"no shot with id {shot_id!r}.")


SHOT_KEYS = ("prompt", "seed", "seed_locked", "overrides", "anchor_image", "id", "takes", "selected_take")
PROJECT_KEYS = ("schema_version", "name", "reference", "style_prompt", "negative_prompt", "engine", "settings", "shots")


def _typed(data: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """data[key] if it has the right type; default if absent/null; ProjectError if mistyped."""
    value = data.get(key)
    if value is None:
        return default
    if kind is int and isinstance(value, bool):
        raise ProjectError(f"project.json: {key!r} must be a whole number, not {value!r}.")
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind):
        raise ProjectError(f"project.json: {key!r} must be {kind.__name__}, got {type(value).__name__} ({value!r:.60}).")
    return value


@dataclass
class Take:
    """One rendered attempt at a shot, stored in takes/<shot_id>/<take_id>/.

    Files: clip.mp4 (frames at the project fps), motion_out.safetensors, and where the
    engine has them latents.safetensors (the clip's denoised, normalised latents) and
    motion_in.safetensors (the motion state it consumed; absent for a film's first shot).

    recipe: fingerprint of everything that determines the clip except upstream motion
        (prompts, seed, settings, engine, anchor image); a shot whose current recipe
        differs is stale.
    upstream_take: the take of the previous shot whose motion_out this take consumed
        (None for the first shot). motion_in_fingerprint: sha256 of that motion state.
    starred, note: the user's mark and short note (take galleries); take.json files written
        before these existed load with the defaults.
    """

    id: str
    shot_id: str
    created: str
    prompt: str
    shot_prompt: str
    negative_prompt: str
    seed: int
    settings: dict[str, Any]
    engine: dict[str, Any]
    recipe: str
    upstream_take: str | None
    motion_in_fingerprint: str | None
    motion_out_fingerprint: str
    num_frames: int
    fps: int
    width: int
    height: int
    has_latents: bool
    stitch_rule: dict[str, int]
    seam: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    starred: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Take":
        names = set(cls.__dataclass_fields__)
        required = {name for name, f in cls.__dataclass_fields__.items()
                    if f.default is MISSING and f.default_factory is MISSING}
        missing = required - set(data)
        if missing:
            raise ProjectError(f"take.json lacks {', '.join(sorted(missing))}.")
        take = cls(**{k: v for k, v in data.items() if k in names})
        take.starred = take.starred is True
        take.note = take.note if isinstance(take.note, str) else ""
        return take
