"""From a session's project to Gradio updates, sending only what changed.

`view_model` describes the whole page as plain values, one per component key
("style", "c2.prompt", "c2.video", …). `Presenter.updates` compares it with what
the session's page shows (`Session.shown`) and returns an update for each changed
key and `gr.skip()` for the rest. So a render streaming clips into cards never
rewrites a prompt box the user is typing in, and a clip player is only reloaded
when its clip changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ..director import Director
from ..engines.base import Engine
from ..project.model import ProjectError
from ..project.status import FRESH
from . import editing, gallery, storyboard, views
from .params import shot_seconds
from .serving import PUBLISHED_SUFFIXES
from .sessions import Session

SETTING_KEYS = ("steps", "guidance", "motion", "width", "height", "fps", "frames", "loras")
CARD_FIELDS = ("group", "head", "prompt", "seed", "lock", "video", "takes", "gallery", "id", "regen", "anchor_image",
               "end_image", "pose_video")
#: the card fields that show a shot's condition files (Shot.media roles), when the engine accepts them.
CARD_MEDIA = ("anchor_image", "end_image", "pose_video")
REGENERATE = "Regenerate this shot"
REGENERATE_LOCKED = "Seed locked: untick Lock seed to re-roll"
# How a key's value becomes an update: by the part after the dot (cards) or the key itself.
UPDATE_KIND = {"group": "visible", "takes": "choices", "add_shot": "interactive", "undo": "button", "redo": "button",
               "regen": "button",
               "video": "file", "preview": "file", "reference": "file", "anchor_image": "file", "end_image": "file",
               "pose_video": "file"}


def card_key(index: int, field: str) -> str:
    return f"c{index}.{field}"


def file_value(path: str | Path | None) -> tuple[str, int] | None:
    """A file as (path, mtime): a rewritten file (the preview) counts as changed."""
    if not path:
        return None
    path = Path(path)
    try:
        return (str(path), path.stat().st_mtime_ns)
    except OSError:
        return None


def visible_loras(engine: Engine, session: Session | None, owners: dict[str, str]) -> dict[str, float]:
    """Default weights of the LoRAs this session may set: the preset's and its own uploads."""
    stack = getattr(engine, "loras", None)
    if stack is None:
        return {}
    token = session.token if session else None
    return {name: float(spec.weight) for name, spec in stack.specs.items()
            if name not in owners or owners[name] == token}


def blank_model(engine: Engine, max_shots: int) -> dict[str, Any]:
    """What the page shows before the session has a project: one empty shot, the engine's defaults."""
    settings = engine.default_settings()
    model: dict[str, Any] = {
        "reference": None,
        "resolution": "Upload a reference image: it anchors the character and look of every shot.",
        "style": "", "negative": "",
        "steps": settings.steps, "guidance": settings.guidance, "motion": settings.num_motion_latents,
        "width": settings.width, "height": settings.height, "fps": settings.fps,
        "frames": shot_seconds(settings.num_frames, settings.fps),  # the page speaks in seconds
        "loras": views.lora_weights_text(visible_loras(engine, None, {})),
        "preview": None,
        "film": "Upload a reference image, write a prompt for each shot, then press **Render all**.",
        "add_shot": True,
        "revision": "",
        "undo": ("Undo", False), "redo": ("Redo", False),
        "storyboard": storyboard.blank_strip(),
    }
    for index in range(max_shots):
        first = index == 0
        model.update({
            card_key(index, "group"): first,
            card_key(index, "head"): views.shot_header(1, None, (0.0, settings.seconds)) if first else "",
            card_key(index, "prompt"): "",
            card_key(index, "seed"): "",
            card_key(index, "lock"): False,
            card_key(index, "video"): None,
            card_key(index, "takes"): ((), None),
            **{card_key(index, role): None for role in CARD_MEDIA},
            card_key(index, "id"): "",
            card_key(index, "regen"): (REGENERATE, True),
            card_key(index, "gallery"): storyboard.MediaHTML(""),
        })
    return model


def view_model(session: Session, max_shots: int, lora_owners: dict[str, str]) -> dict[str, Any]:
    """The whole page for this session's project."""
    director: Director = session.director
    project = director.project
    settings = project.settings
    statuses = director.statuses()
    planned = director.planned_seconds()
    weights = visible_loras(director.engine, session, lora_owners)
    weights.update({name: weight for name, weight in settings.lora_weights if name in weights})
    model: dict[str, Any] = {
        "reference": file_value(director.store.reference_path()),
        "resolution": views.resolution_note(director),
        "style": project.style_prompt, "negative": project.negative_prompt,
        "steps": settings.steps, "guidance": settings.guidance, "motion": settings.num_motion_latents,
        "width": settings.width, "height": settings.height, "fps": settings.fps,
        "frames": shot_seconds(settings.num_frames, settings.fps),  # the page speaks in seconds
        "loras": views.lora_weights_text(weights),
        "preview": file_value(session.preview_path) if any(s.end_s is not None for s in statuses) else None,
        "film": views.film_summary(director, statuses),
        "add_shot": len(project.shots) < max_shots,
        "revision": str(project.revision),
        "storyboard": storyboard.strip_html(director, statuses),
    }
    history = editing.history_of(session)
    idle = session.job is None  # undo and redo are refused while a render runs: say so by disabling them
    model["undo"] = (f"↶ Undo {history.next_undo()}" if history.next_undo() else "↶ Undo",
                     idle and bool(history.next_undo()))
    model["redo"] = (f"↷ Redo {history.next_redo()}" if history.next_redo() else "↷ Redo",
                     idle and bool(history.next_redo()))
    for index in range(max_shots):
        if index >= len(statuses):
            model.update({card_key(index, "group"): False, card_key(index, "head"): "",
                          card_key(index, "prompt"): "", card_key(index, "seed"): "", card_key(index, "lock"): False,
                          card_key(index, "video"): None, card_key(index, "takes"): ((), None),
                          **{card_key(index, role): None for role in CARD_MEDIA},
                          card_key(index, "id"): "", card_key(index, "regen"): (REGENERATE, True),
                          card_key(index, "gallery"): storyboard.MediaHTML("")})
            continue
        status = statuses[index]
        shot = project.shots[index]
        model.update({
            card_key(index, "group"): True,
            card_key(index, "head"): (views.cut_marker(index + 1, status.seam_score) if index > 0 else "")
            + views.shot_header(index + 1, status, planned[index] if index < len(planned) else None),
            card_key(index, "prompt"): shot.prompt,
            card_key(index, "seed"): str(shot.seed),
            card_key(index, "lock"): bool(shot.seed_locked),
            card_key(index, "video"): file_value(status.clip_path),
            card_key(index, "takes"): (take_choices(director, index), shot.selected_take),
            **{card_key(index, role): media_value(director, shot.media.get(role)) for role in CARD_MEDIA},
            card_key(index, "id"): shot.id,
            # A locked seed and an up-to-date take: a re-roll would make the same clip.
            card_key(index, "regen"): ((REGENERATE_LOCKED, False) if shot.seed_locked and status.status == FRESH
                                       else (REGENERATE, True)),
            card_key(index, "gallery"): gallery.gallery_html(director, index),
        })
    return model


def media_value(director: Director, relative: str | None) -> tuple[str, int] | None:
    """A shot's condition file for its card (None when it has none, or it points outside the project)."""
    if not relative or Path(relative).suffix.lower() not in PUBLISHED_SUFFIXES:  # a .webm pose video is kept, not shown
        return None
    try:
        return file_value(director.store.safe_path(relative))
    except ProjectError:
        return None


def take_choices(director: Director, index: int) -> tuple[tuple[str, str], ...]:
    shot = director.project.shots[index]
    choices = []
    for number, take_id in enumerate(shot.takes, start=1):
        try:
            take = director.store.take(shot.id, take_id)
        except ProjectError:
            take = None
        choices.append((views.take_label(number, take, take_id), take_id))
    return tuple(choices)


def make_update(key: str, value: Any, publish: Callable[[str], str | None] = str) -> Any:
    """The Gradio update for one view-model value; a file is handed over as `publish(path)`
    (the copy Gradio may serve), never as the session's own path."""
    if isinstance(value, storyboard.MediaHTML):  # HTML showing session files: publish each one
        return gr.update(value=value.render(publish))
    kind = UPDATE_KIND.get(key.split(".", 1)[-1], "value")
    if kind == "visible":
        return gr.update(visible=value)
    if kind == "interactive":
        return gr.update(interactive=value)
    if kind == "button":
        label, enabled = value
        return gr.update(value=label, interactive=enabled)
    if kind == "choices":
        choices, selected = value
        return gr.update(choices=list(choices), value=selected)
    if kind == "file":
        return gr.update(value=publish(value[0]) if value else None)
    return gr.update(value=value)


class Presenter:
    """Builds the updates for a list of component keys, diffed against what the page shows."""

    def __init__(self, max_shots: int, lora_owners: dict[str, str],
                 publish: Callable[[Session, str], str | None] | None = None,
                 clean: Callable[[str], str] | None = None):
        """publish(session, path): the servable path of one of the session's files;
        clean(text): the text without server paths (a broken take's reason names its file)."""
        self.max_shots = max_shots
        self.lora_owners = lora_owners
        self.publish = publish or (lambda session, path: str(path))
        self.clean = clean or (lambda text: text)

    def model(self, session: Session) -> dict[str, Any]:
        model = view_model(session, self.max_shots, self.lora_owners)
        for key, value in model.items():
            if key.endswith(".head") or key == "film":
                model[key] = self.clean(value)
        return model

    def updates(self, session: Session, keys: list[str], force: bool = False) -> list[Any]:
        model = self.model(session)
        result = []
        for key in keys:
            value = model[key]
            if not force and key in session.shown and session.shown[key] == value:
                result.append(gr.skip())
                continue
            session.shown[key] = value
            result.append(make_update(key, value, lambda path: self.publish(session, path)))
        return result
