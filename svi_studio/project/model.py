"""What a project is: reference, story prompts, settings, shots and their takes.

These are plain dataclasses with `to_dict` / `from_dict`; `store.py` puts them on
disk and `status.py` derives each shot's status from them. Nothing here does I/O.

On disk (one folder per project):
    project.json                 this file's data, schema-versioned, stable key order
    reference.png                the reference image (identity anchor)
    media/<sha>.<ext>            per-shot media: anchor images, end frames, pose videos
                                 (content-addressed; schema 1 kept anchors in anchors/)
    takes/<shot_id>/<take_id>/   one folder per complete take (see Take)
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..settings import ClipSettings, SettingsError, normalise_settings, validate_seed
from ..errors import UserError
from ..stitching import StitchRule

SCHEMA_VERSION = 2  # 2: Shot.media replaces Shot.anchor_image (schema 1 files load and migrate)
# Limits every project obeys, whether it is edited in the app, made by the CLI or the API, or
# read from a file or an uploaded bundle (Project.from_dict is the one loader, and the store
# refuses to save a project that loader would refuse).
DEFAULT_MAX_SHOTS = 24  # the editor's shot cards; SVI_MAX_SHOTS changes it for the app and the loader alike
MAX_TEXT_CHARS = 100_000  # a prompt; longer ones would bloat project.json and every status call
MAX_NAME_CHARS = 200  # the film's name
MAX_TAKE_NOTE = 280  # characters of a take's note (a short remark, shown under its thumbnail)
MAX_PATH_CHARS = 255  # a project-relative file path (the reference, a shot's anchor image)
MAX_JSON_DEPTH = 32  # nesting of objects and lists in project.json / take.json (a real one is 5 deep)
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


class ProjectError(UserError, ValueError):
    """A project that cannot be loaded or changed as asked; the message says why and what to do."""


def max_shots() -> int:
    """The most shots a project may hold: $SVI_MAX_SHOTS if it is a positive whole number, else 24."""
    value = os.environ.get("SVI_MAX_SHOTS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_SHOTS


def parse_json(data: bytes, what: str, advice: str = "") -> Any:
    """The JSON value in `data` (UTF-8, a leading BOM allowed), or ProjectError naming what is wrong:
    not UTF-8, not JSON, or nested deeper than MAX_JSON_DEPTH. `what` names the file ("project.json")."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ProjectError(f"{what} is not UTF-8 text (byte 0x{data[error.start]:02x} at position {error.start:,}); "
                           f"it was saved with another encoding or is damaged. {advice}".strip()) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProjectError(f"{what} is damaged ({error}). {advice}".strip()) from None
    except RecursionError:  # nesting deeper than the interpreter's recursion limit
        raise ProjectError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; no SVI Studio file is. "
                           f"{advice}".strip()) from None
    check_depth(value, what, advice)
    return value


def check_depth(value: Any, what: str, advice: str = "") -> None:
    """ProjectError if objects/lists in `value` nest deeper than MAX_JSON_DEPTH (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ProjectError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep; no SVI Studio file is. "
                               f"{advice}".strip())
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_text(value: str, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`value` if it is at most `limit` characters, else ProjectError."""
    if len(value) > limit:
        raise ProjectError(f"project.json: {what} is {len(value):,} characters long; the limit is {limit:,}. "
                           "Shorten it (the file was left untouched).")
    return value


def check_project_path(value: str | None, what: str) -> str | None:
    """`value` if it is a relative path that stays inside the project folder ("reference.png",
    "anchors/ab12.png"), else ProjectError: a project file never names anything outside its folder."""
    if value is None:
        return None
    parts = value.split("/")
    if (len(value) > MAX_PATH_CHARS or value.startswith("/") or "\\" in value or ":" in value
            or any(part in ("", ".", "..") for part in parts) or any(ord(c) < 32 or c == "\x7f" for c in value)):
        raise ProjectError(f"project.json: {what} {value!r:.80} is not a path inside the project folder; refused. "
                           "It must be a relative path such as reference.png or anchors/<name>.png.")
    return value


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
    media: condition role ("anchor_image", "end_image", "pose_video") → project-relative
        path of the shot's own file; an absent anchor_image means the reference anchors it.
    takes: take ids, oldest first. selected_take: one of them, or None.
    """

    prompt: str
    seed: int = field(default_factory=random_seed)
    seed_locked: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    media: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    takes: list[str] = field(default_factory=list)
    selected_take: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not know, kept as read

    @property
    def anchor_image(self) -> str | None:
        """The shot's own anchor image (project-relative), or None."""
        return self.media.get("anchor_image")

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
            prompt=check_text(_typed(data, "prompt", str, ""), f"shot {shot_id}'s prompt"),
            seed=seed if seed is not None else random_seed(),
            seed_locked=bool(data.get("seed_locked", False)),
            overrides={k: v for k, v in _typed(data, "overrides", dict, {}).items() if k in SHOT_OVERRIDE_KEYS},
            media=_media(data, f"shot {shot_id}"),
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
    media: dict[str, str] = field(default_factory=dict)  # film-wide conditions: "pose_video" → file, cut per shot
    schema_version: int = SCHEMA_VERSION
    revision: int = 0  # bumped by every save (ProjectStore.save): what an editor client last saw
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # keys this version does not know, kept as read

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "schema_version": self.schema_version,
            "revision": self.revision,
            "name": self.name,
            "reference": self.reference,
            "style_prompt": self.style_prompt,
            "negative_prompt": self.negative_prompt,
            "engine": self.engine,
            "settings": self.settings.to_dict(),
            "shots": [shot.to_dict() for shot in self.shots],
            "media": dict(self.media),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Project":
        if not isinstance(data, dict):
            raise ProjectError("project.json must hold a JSON object.")
        check_depth(data, "project.json")
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
        if len(shots) > max_shots():
            raise ProjectError(f"project.json: the film has {len(shots)} shots; SVI Studio holds up to {max_shots()} "
                               f"(set SVI_MAX_SHOTS={len(shots)} or more to allow that).")
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
            name=check_text(_typed(data, "name", str, "Untitled film"), "the film's name", MAX_NAME_CHARS),
            reference=check_project_path(_typed(data, "reference", str, None), "reference"),
            style_prompt=check_text(_typed(data, "style_prompt", str, ""), "the style prompt"),
            negative_prompt=check_text(_typed(data, "negative_prompt", str, ""), "the negative prompt"),
            engine=_typed(data, "engine", str, "draft"),
            settings=settings,
            shots=parsed,
            media=_media(data),
            schema_version=version,
            revision=max(0, _typed(data, "revision", int, 0)),
            extra={k: v for k, v in data.items() if k not in PROJECT_KEYS},
        )

    def shot_index(self, shot_id: str) -> int:
        for index, shot in enumerate(self.shots):
            if shot.id == shot_id:
                return index
        raise ProjectError(f"no shot with id {shot_id!r}.")


SHOT_KEYS = ("prompt", "seed", "seed_locked", "overrides", "media", "anchor_image", "id", "takes", "selected_take")


def _media(data: dict[str, Any], owner: str = "the film") -> dict[str, str]:
    """A shot's (or the film's) media map; schema 1's `anchor_image` becomes media["anchor_image"].
    Every path must stay inside the project (`owner` names whose map it is in the message)."""
    media = _typed(data, "media", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in media.items()):
        raise ProjectError("project.json: a shot's 'media' must map role names to file paths.")
    legacy = _typed(data, "anchor_image", str, None)
    if legacy and "anchor_image" not in media:
        media = {"anchor_image": legacy, **media}
    return {role: check_project_path(path, f"{owner}'s {role[:40]}") for role, path in media.items()}


PROJECT_KEYS = ("schema_version", "revision", "name", "reference", "style_prompt", "negative_prompt", "engine", "settings", "shots",
                "media")


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
        check_depth(data, "take.json")
        rule = data["stitch_rule"]
        known = [f.name for f in fields(StitchRule)]
        if not isinstance(rule, dict):
            raise ProjectError(f"take.json: the stitch rule must be an object with {' and '.join(known)}.")
        unknown = sorted(set(rule) - set(known))
        if unknown:
            raise ProjectError(f"take.json: the stitch rule has an unknown key {unknown[0]!r:.40} "
                               f"(it holds only {' and '.join(known)}).")
        for key, value in rule.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
                raise ProjectError(f"take.json: the stitch rule's {key} must be a whole number of frames, "
                                   f"not {value!r:.40}.")
        take = cls(**{k: v for k, v in data.items() if k in names})
        take.starred = take.starred is True
        take.note = take.note if isinstance(take.note, str) else ""
        return take
