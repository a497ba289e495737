"""What every button does: thin calls into the Director, for the page and for the API.

`Studio` owns the session registry and the presenter. Page events send the whole
editable form (story, settings, every shot's prompt/seed/lock); `apply_form` saves
whatever the user changed since the page last showed it, then the event does its
one action (one Director call), and the page gets back only what changed. API
endpoints call the same actions and return the project's status as JSON.

Errors a user can act on (ProjectError and its kin — SettingsError, StorageError,
UploadError, ExportError —, LoRA and engine errors, out of GPU memory, a file the disk
refused) become a readable message: a toast and the status line on the page, an error
with that message through the API. No message carries a server path or a session token
(`Studio.message`). The project on disk and every finished clip survive them.

Files reach the browser only through `Studio.publish` (see serving.MediaShelf). Each
session has a disk quota (`quota_bytes`), checked before a render, an upload and an export.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr

from ..director import Director
from ..engines.base import Engine, EngineError
from ..errors import UserError, user_message
from ..project.model import ProjectError, random_seed
from ..project.spec import list_project_presets, load_spec
from ..settings import SettingsError
from . import editing, jobs, runtime, uploads, views
from .params import crossfade_seconds, frames_for_seconds
from .presenter import CARD_FIELDS, Presenter, blank_model, card_key, visible_loras
from .serving import MediaShelf, redact
from .sessions import Session, SessionRegistry

log = logging.getLogger(__name__)

STORY_KEYS = ("style", "negative")
SETTING_FIELDS = {"steps": "steps", "guidance": "guidance", "motion": "num_motion_latents", "width": "width",
                  "height": "height", "fps": "fps", "frames": "num_frames"}
PAGE_KEYS = ("reference", "resolution", "style", "negative", "steps", "guidance", "motion", "width", "height",
             "fps", "frames", "loras", "preview", "film", "add_shot", "revision", "undo", "redo", "storyboard")
USER_ERRORS = (UserError, ValueError, OSError)  # ProjectError, SettingsError, EngineError, UploadError, … and a disk failing
OS_REASONS = {errno.ENOSPC: "the server's disk is full", errno.EDQUOT: "the server's disk quota is used up",
              errno.EROFS: "the server's disk is read-only", errno.EACCES: "the server was denied access to a file",
              errno.EPERM: "the server was denied access to a file"}
FIRST_PRESET = "cat-adventure"


def page_message(error: BaseException) -> str:
    """An exception as a sentence for the page. An OSError says what went wrong, never which
    file (its name is a server path); everything else is errors.user_message."""
    if isinstance(error, OSError):
        reason = OS_REASONS.get(error.errno) or error.strerror or error.__class__.__name__
        return f"{reason[0].upper()}{reason[1:]}; nothing was lost. Try again, or tell the server's admin if it persists."
    return user_message(error)


def same_value(a: Any, b: Any) -> bool:
    """Equal as the page means it: 5 == 5.0, None == ''."""
    if a in (None, "") and b in (None, ""):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
    return a == b


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "film"


def gigabytes(size: float) -> str:
    """1.5 GB, 0.8 MB, 12 KB: a size for a message."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20)):
        if size >= 0.1 * scale:
            return f"{size / scale:.1f} {unit}".replace(f".0 {unit}", f" {unit}")
    return f"{size / 2**10:.1f} KB".replace(".0 KB", " KB")


def preset_order(paths: list[Path]) -> list[Path]:
    """Project presets with Cat Adventure first."""
    return sorted(paths, key=lambda p: (p.stem != FIRST_PRESET, p.stem))


@dataclass
class Outcome:
    """What an action tells the page: a status line, maybe a new session, extra output values."""

    notice: str = ""
    session: Session | None = None
    extra: list[Any] = field(default_factory=list)
    toast: bool = False


class Studio:
    """The app's behaviour, independent of the layout."""

    def __init__(self, engine: Engine, data_dir: str | Path, max_shots: int = 24, engine_note: str | None = None,
                 max_idle_s: float | None = None, quota_bytes: int | None = None, shelf: MediaShelf | None = None):
        """max_idle_s: sessions idle this long are removed (None: kept); quota_bytes: disk each
        session may use (None: no limit); shelf: where files are published for the browser
        (None: file outputs are the session's own paths, for use without a server)."""
        self.engine = engine
        self.engine_note = engine_note
        self.max_shots = max_shots
        self.quota_bytes = quota_bytes
        self.shelf = shelf
        self.blank = blank_model(engine, max_shots)
        self.registry = SessionRegistry(data_dir, engine, blank_view=lambda: dict(self.blank), max_idle_s=max_idle_s,
                                        shelf=shelf)
        self.presenter = Presenter(max_shots, self.registry.lora_owners, self.publish, self.message)
        self.card_keys = [card_key(i, f) for i in range(max_shots) for f in CARD_FIELDS]
        self.view_keys = list(PAGE_KEYS) + self.card_keys
        # What a plain sync (a prompt, seed or story box losing focus) can change: badges, the
        # summary, a seed typed badly (sent back as saved). Gradio rebuilds every output component it is given, even a skipped one, so the
        # frequent syncs list only these.
        self.sync_keys = (["film", "storyboard", "revision", "undo", "redo"]
                          + [card_key(i, f) for i in range(max_shots) for f in ("head", "seed", "regen")])
        # What the timer refreshes: the preview written in the background, badges (a cancelled
        # render), a prompt saved onto a shot whose card moved before the edit arrived. A box the
        # user is typing in is never touched: its saved value is what the page was last sent.
        # "undo"/"redo": re-enabled by the timer once a render job has ended (its last reply comes before).
        self.tick_keys = (["preview", "film", "undo", "redo"]
                          + [card_key(i, f) for i in range(max_shots) for f in ("head", "prompt")])
        self.form_keys = (list(STORY_KEYS) + list(SETTING_FIELDS) + ["loras"]
                          + [card_key(i, f) for f in ("prompt", "seed", "lock", "id") for i in range(max_shots)])
        self.presets = preset_order(list_project_presets())

    def preset_title(self, path: Path) -> str:
        """The name an example project shows on its button."""
        try:
            return load_spec(path).name
        except ProjectError:
            return path.stem.replace("-", " ").title()

    @property
    def has_loras(self) -> bool:
        return getattr(self.engine, "loras", None) is not None

    # -- the form ------------------------------------------------------------------------------

    def form_dict(self, values: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
        return dict(zip(self.form_keys, values))

    def apply_form(self, session: Session, form: dict[str, Any], arrival: int | None = None) -> list[str]:
        """Save what the user changed on the page since it was last shown; return problems found.

        A value that cannot be used is reported and left unsaved (the page gets the saved
        value back); the rest of the form is still saved. Every event carries the whole form
        as it was when the event was sent. arrival: the server's number for that request
        (serving.ArrivalOrder, in the order requests reached the server): a snapshot that
        arrived before one already applied (a render that waited in the queue while the user
        kept editing) is skipped, since the later one holds all of its edits. The browser's
        clock plays no part, so no edit is dropped because it stepped back."""
        director, shown = session.director, session.shown
        problems: list[str] = []
        if arrival is not None:
            if session.form_arrival is not None and arrival < session.form_arrival:
                return problems
            session.form_arrival = arrival

        def changed(key: str) -> bool:
            return key in form and not same_value(form[key], shown.get(key))

        def attempt(keys: list[str], apply: Callable[[], list[str] | None]) -> None:
            try:
                notices = apply() or []
                problems.extend(n for n in notices if n)
            except USER_ERRORS as error:
                problems.append(self.message(error))
            for key in keys:  # either saved, or the page gets the saved value back
                shown[key] = form[key]

        story = [k for k in STORY_KEYS if changed(k)]
        if story:
            attempt(story, lambda: director.set_story(
                style_prompt=form["style"] if "style" in story else None,
                negative_prompt=form["negative"] if "negative" in story else None))
        settings = [k for k in SETTING_FIELDS if changed(k) and form[k] is not None]
        if changed("loras"):
            settings.append("loras")
        if settings:
            def apply_settings() -> list[str]:
                changes = {SETTING_FIELDS[k]: form[k] for k in settings if k in SETTING_FIELDS}
                if "frames" in settings:  # the page's shot length is in seconds
                    fps = form["fps"] if "fps" in settings else director.project.settings.fps
                    changes["num_frames"] = frames_for_seconds(form["frames"], fps)
                if "loras" in settings:
                    changes["lora_weights"] = self.lora_weights(session, form["loras"])
                return director.update_settings(**changes)
            attempt(settings, apply_settings)
        self.apply_cards(session, form, problems)
        return problems

    def apply_cards(self, session: Session, form: dict[str, Any], problems: list[str]) -> None:
        """Save the prompt, seed and lock typed into each card onto the shot the card showed
        (its id, sent with the form), wherever that shot is now. A value counts as changed
        when it differs from what the page was last sent for that shot; an edit to a shot
        that was deleted meanwhile is reported, never put on another shot."""
        director, shown = session.director, session.shown
        slot_of = {shown.get(card_key(j, "id")): j for j in range(self.max_shots) if shown.get(card_key(j, "id"))}
        for slot in range(self.max_shots):
            shot_id = form.get(card_key(slot, "id"))
            if not shot_id:  # a page that was never sent a shot (a blank page's first card): its position names it
                if slot >= len(director.project.shots):
                    continue
                shot_id = director.project.shots[slot].id
            was = slot_of.get(shot_id, slot)  # the slot the page was last sent this shot in
            fields = [f for f in ("prompt", "seed", "lock") if card_key(slot, f) in form
                      and not same_value(form[card_key(slot, f)], shown.get(card_key(was, f)))]
            if not fields:
                continue
            value = {f: form[card_key(slot, f)] for f in fields}
            try:
                index = editing.locate(director, shot_id)
            except ProjectError:
                if "prompt" in value:
                    problems.append(self.message(f"The shot you typed into was deleted before your edit arrived; "
                                                 f"its text was not saved: “{str(value['prompt'])[:200]}”."))
                continue
            seed_text = str(value.get("seed") or "").strip()
            label = f"edit of shot {index + 1}" + ("'s prompt" if "prompt" in value else "")
            try:
                with editing.history_of(session).step(label):
                    notices = director.set_shot(index, prompt=str(value["prompt"]) if "prompt" in value else None,
                                                seed=seed_text or None if "seed" in value else None,
                                                seed_locked=bool(value["lock"]) if "lock" in value else None)
                problems.extend(n for n in notices or [] if n)
            except USER_ERRORS as error:
                problems.append(self.message(error))
            if was == slot:  # either saved, or the page gets the saved value back
                for f in fields:
                    shown[card_key(slot, f)] = form[card_key(slot, f)]

    def lora_weights(self, session: Session, text: str) -> dict[str, float]:
        """Weights typed on the page → project lora_weights (only those differing from the default)."""
        if not self.has_loras:
            return {}
        typed = views.parse_lora_weights(text)
        defaults = visible_loras(self.engine, session, self.registry.lora_owners)
        unknown = sorted(set(typed) - set(defaults))
        if unknown:
            raise SettingsError(f"no LoRA named {', '.join(unknown)}; this engine has: {', '.join(defaults) or 'none'}.")
        current = dict(session.director.project.settings.lora_weights)
        for name, weight in typed.items():
            if math.isclose(weight, defaults[name]):
                current.pop(name, None)
            else:
                current[name] = weight
        return current

    # -- page events ---------------------------------------------------------------------------

    def page(self, token: str | None, values: tuple[Any, ...], action: Callable[[Session | None], Outcome | None],
             extra_outputs: int = 0, needs_session: bool = True, keys: list[str] | None = None,
             arrival: int | None = None) -> list[Any]:
        """Run a page event: sync the form, do `action`, return [state, notice, *view, *extra].

        needs_session=False: actions that start a new project (the page may have none yet).
        arrival: the request's arrival number (see apply_form)."""
        form = self.form_dict(values[: len(self.form_keys)])
        session = self.registry.ensure(token) if needs_session else self.registry.get(token)
        outcome, problems = Outcome(), []
        try:
            if session is not None:
                with session.lock:
                    problems = self.apply_form(session, form, arrival)
                    outcome = action(session) or Outcome()
            else:
                outcome = action(None) or Outcome()
        except USER_ERRORS as error:
            problems.append(self.message(error))
        except Exception as error:  # a bug: keep the page usable, log the details
            log.exception("page event failed")
            problems.append(self.message(f"Something went wrong ({error.__class__.__name__}: {error}). "
                                         "Your project is saved; the details are in the server log."))
        for problem in problems:
            gr.Warning(problem)
        if outcome.toast and outcome.notice:
            gr.Info(outcome.notice)
        notice = " ".join(["⚠ " + p for p in problems] + ([self.message(outcome.notice)] if outcome.notice else []))
        extra = outcome.extra or [gr.skip()] * extra_outputs
        target = outcome.session or session
        notice = notice or None  # an event with nothing to say leaves the status line as it is
        keys = keys or self.view_keys
        if target is None:
            return [token, gr.update(value=notice) if notice else gr.skip(), *[gr.skip()] * len(keys), *extra]
        if target is not session:
            target.shown = dict(session.shown) if session is not None else dict(self.blank)
        return self.view(target, notice, keys) + extra

    def tick(self, token: str | None) -> list[Any]:
        """The page's timer: the film preview once its background rewrite is done, and badges
        that changed outside a reply (a cancelled render); skips when nothing changed."""
        session = self.registry.get(token) if token else None
        if session is None:
            return [gr.skip()] * (1 + len(self.tick_keys))
        return [session.token] + self.view_tail(session, self.tick_keys)

    def view_tail(self, session: Session, keys: list[str]) -> list[Any]:
        with session.lock:
            return self.presenter.updates(session, keys)

    def view(self, session: Session, notice: str | None, keys: list[str] | None = None) -> list[Any]:
        with session.lock:
            updates = self.presenter.updates(session, keys or self.view_keys)
        return [session.token, gr.update(value=notice) if notice is not None else gr.skip(), *updates]

    def page_job(self, token: str | None, values: tuple[Any, ...], make_job: Callable[[Session], Iterator[jobs.JobUpdate]],
                 arrival: int | None = None):
        """Run a render job from the page: yield the page after every shot starts and finishes."""
        form = self.form_dict(values[: len(self.form_keys)])
        session = self.registry.ensure(token)
        with session.lock:
            problems = self.apply_form(session, form, arrival)
        for problem in problems:
            gr.Warning(problem)
        started = False
        try:
            for update in self.within_quota(session, make_job):
                started = started or update.kind == "start"
                shot = update.shot_index + 1 if update.shot_index is not None else None
                detail = ""
                if update.event is not None and update.event.seam_score is not None:
                    detail = f"Seam {update.event.seam_score:.2f}."
                yield self.view(session, views.job_line(update.kind, shot, update.done, update.total, detail))
        except USER_ERRORS as error:
            message = self.message(error) + (" Finished shots are kept." if started else "")
            gr.Warning(message)
            yield self.view(session, "⚠ " + message)
        except Exception as error:
            log.exception("render job failed")
            message = self.message(f"Rendering failed ({error.__class__.__name__}: {error}). Finished shots are kept.")
            gr.Warning(message)
            yield self.view(session, "⚠ " + message)

    # -- actions (one Director call each) --------------------------------------------------------

    def sync(self, session: Session) -> Outcome:
        return Outcome()

    def set_reference(self, session: Session, path: str | None) -> Outcome:
        """An uploaded reference: opened, converted or refused by the Director's loader."""
        if not path:
            raise uploads.UploadError("no image was uploaded.")
        self.check_upload(session, path, "upload this image")
        notices = session.director.set_reference(Path(path))
        return Outcome(" ".join(notices), toast=True)

    def add_shot(self, session: Session) -> Outcome:
        """A new, empty shot at the end of the film. Allowed while a render runs: appending moves no
        shot, and the render's plan (re-made after every clip) picks the new shot up once it has a prompt."""
        self.require_room(session)
        with editing.history_of(session).step(f"add shot {len(session.director.project.shots) + 1}", structural=True):
            session.director.add_shot("")
        return Outcome(f"Shot {len(session.director.project.shots)} added.")

    def insert_after(self, session: Session, shot: str | int, revision: int | None = None) -> Outcome:
        """A new, empty shot after shot `shot` (its id; an int is today's index)."""
        editing.require_current(session, revision, shot if isinstance(shot, str) else None)
        index = editing.locate(session.director, shot)
        self.require_room(session)
        self.require_idle(session, "insert shots")
        with editing.history_of(session).step(f"insert after shot {index + 1}", structural=True):
            session.director.insert_shot(index + 1, "")
        return Outcome(f"New shot {index + 2} inserted; the shot after it will be re-rendered.")

    def delete_shot(self, session: Session, shot: str | int, revision: int | None = None) -> Outcome:
        """Delete shot `shot`; its takes stay on disk while Undo can bring it back."""
        from ..project.history import delete_shot_keeping_takes

        editing.require_current(session, revision, shot if isinstance(shot, str) else None)
        index = editing.locate(session.director, shot)
        self.require_idle(session, "delete shots")
        director = session.director
        with editing.history_of(session).step(f"delete of shot {index + 1}", structural=True):
            delete_shot_keeping_takes(director.store, index, director.rendering)
            if not director.project.shots:
                director.add_shot("")
        self.refresh_preview(session)
        return Outcome(f"Shot {index + 1} deleted — press Undo to bring it back.")

    def move_shot(self, session: Session, shot: str | int, offset: int, revision: int | None = None) -> Outcome:
        editing.require_current(session, revision, shot if isinstance(shot, str) else None)
        index = editing.locate(session.director, shot)
        self.require_idle(session, "move shots")
        target = index + offset
        if not 0 <= target < len(session.director.project.shots):
            return Outcome(f"Shot {index + 1} is already {'first' if offset < 0 else 'last'}.")
        with editing.history_of(session).step(f"move of shot {index + 1} to {target + 1}", structural=True):
            session.director.move_shot(index, target)
        self.refresh_preview(session)
        return Outcome(f"Shot {index + 1} moved to position {target + 1}; shots whose predecessor changed are stale.")

    def roll_seed(self, session: Session, shot: str | int) -> Outcome:
        index = editing.locate(session.director, shot)
        with editing.history_of(session).step(f"new seed for shot {index + 1}"):
            session.director.set_shot(index, seed=random_seed())
        return Outcome(f"Shot {index + 1} has a new seed; regenerate it to see the new take.")

    def select_take(self, session: Session, shot: str | int, take_id: str | None) -> Outcome:
        """Select an earlier take of shot `shot`; the shot's prompt and seed become the take's
        (what the card shows is the selected take's recipe)."""
        index = editing.locate(session.director, shot)
        current = session.director.shot(index)
        if not take_id or take_id == current.selected_take:
            return Outcome()
        with editing.history_of(session).step(f"take selection of shot {index + 1}"):
            session.director.select_take(index, take_id)
            take = session.director.store.take(current.id, take_id)
            restored = take.shot_prompt != current.prompt
            if restored:
                session.director.set_shot(index, prompt=take.shot_prompt)
        self.refresh_preview(session)
        note = " Its prompt is the one that take was made with." if restored else ""
        return Outcome(f"Shot {index + 1} uses take {current.takes.index(take_id) + 1} again; "
                       f"the shots after it are stale.{note}")

    def edit_prompt(self, session: Session, shot: str | int, prompt: Any) -> Outcome:
        """Set the prompt of shot `shot` (its id), wherever it is now."""
        if not isinstance(prompt, str):
            raise ProjectError("the prompt must be text.")
        index = editing.locate(session.director, shot)
        with editing.history_of(session).step(f"edit of shot {index + 1}'s prompt"):
            notices = session.director.set_shot(index, prompt=prompt)
        return Outcome(" ".join(notices))

    def undo(self, session: Session) -> Outcome:
        self.require_idle(session, "undo")
        label = editing.history_of(session).undo()
        self.refresh_preview(session)
        return Outcome(f"Undid the {label}.")

    def redo(self, session: Session) -> Outcome:
        self.require_idle(session, "redo")
        label = editing.history_of(session).redo()
        self.refresh_preview(session)
        return Outcome(f"Redid the {label}.")

    def set_shot_media(self, session: Session, shot: str | int, role: str, path: str | None) -> Outcome:
        """Set (an uploaded file) or clear (None) one of shot `shot`'s (id, or index) conditions: its
        anchor image, end frame or pose video; checked and stored by the Director like any upload."""
        from ..engines.request import CONDITION_LABELS

        self.require_idle(session, "change a shot's conditions")
        index = editing.locate(session.director, shot)
        label = CONDITION_LABELS.get(role, str(role))
        notices = session.director.set_shot_media(index, role, Path(path) if path else None)
        done = f"Shot {index + 1}'s {label} {'set' if path else 'cleared'}; it will be re-rendered."
        return Outcome(" ".join([done, *notices]))

    def cancel(self, session: Session | None) -> Outcome:
        if session is None or session.job is None:
            return Outcome("Nothing is rendering.")
        session.cancel.set()
        return Outcome("Cancelling after the current denoising step; finished shots are kept.")

    def export(self, session: Session, audio: str | None, crossfade: Any) -> tuple[Path, dict[str, Any]]:
        """Export the film into the session's exports folder, which then keeps only this film
        (older exports were handed out already; they would only use up the quota)."""
        fade = crossfade_seconds(crossfade)
        clips = [s.clip_path for s in session.director.statuses() if s.clip_path]
        self.require_space(session, "export the film", sum(_size(p) for p in clips))
        if audio:
            self.check_upload(session, audio, "add this soundtrack")
        soundtrack = uploads.keep_audio(audio, session.uploads_dir) if audio else None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = session.exports_dir / f"{slug(session.director.project.name)}-{stamp}.mp4"
        timeline = session.director.export(path, audio=soundtrack, crossfade=fade)
        self.remove_others(session, "*.mp4", keep={path, session.preview_path})
        return path, timeline

    def page_export(self, session: Session, audio: str | None, crossfade: float | None) -> Outcome:
        path, timeline = self.export(session, audio, crossfade)
        draft = " (draft)" if timeline.get("draft") else ""
        return Outcome(f"Exported{draft}: {timeline['frames']} frames, {views.seconds(timeline['seconds'])} s, "
                       f"{timeline['width']}×{timeline['height']}.",
                       extra=[gr.update(value=self.publish(session, path), visible=True)])

    def download_project(self, session: Session) -> Path:
        """The project as a zip in the exports folder (the only zip kept there). Never refused
        for the quota: downloading is how a user over it keeps their work."""
        from ..project.bundle import bundle_project

        path = bundle_project(session.project_dir, session.exports_dir / f"{slug(session.director.project.name)}.zip")
        self.remove_others(session, "*.zip", keep={path})
        return path

    def page_download_project(self, session: Session) -> Outcome:
        path = self.download_project(session)
        return Outcome("Project zip ready: it holds the reference, prompts, settings and every take.",
                       extra=[gr.update(value=self.publish(session, path), visible=True)])

    def new_project(self, session: Session | None = None, name: str | None = None) -> Outcome:
        fresh = self.registry.create()
        if name:
            fresh.director.set_story(name=name)
        return Outcome("New project started.", session=fresh)

    def load_example(self, session: Session | None, name: str) -> Outcome:
        path = next((p for p in self.presets if p.stem == name), None)
        if path is None:
            raise ProjectError(f"there is no example {name!r}; examples: {', '.join(p.stem for p in self.presets) or 'none'}.")
        spec = load_spec(path)
        fresh = self.registry.create(lambda root: Director.from_spec(path, root, self.engine))
        notice = f"Loaded example “{spec.name}”. Press Render all."
        if spec.description:
            notice += f" {spec.description}"
        return Outcome(notice, session=fresh)

    def upload_project(self, session: Session | None, path: str | None) -> Outcome:
        from ..project.bundle import unbundle_project

        archive = uploads.check_zip(path)
        self.check_upload(None, archive, "open this project", uploads.unpacked_size(archive))

        def unpack(root: Path) -> Director:
            unbundle_project(archive, root)
            return Director.open(root, self.engine)

        fresh = self.registry.create(unpack)
        self.refresh_preview(fresh)
        notices = " ".join(fresh.director.notices)
        return Outcome(f"Project “{fresh.director.project.name}” loaded. {notices}".strip(), session=fresh)

    def add_style_lora(self, session: Session, path: str | None) -> Outcome:
        """Load an uploaded .safetensors style LoRA into the shared pipeline (weight 0 for every
        other session) and turn it on for this project."""
        if not self.has_loras:
            raise EngineError("style LoRAs are unavailable on the draft engine; they apply to the wan engines only.")
        from ..engines.loras import LoraSpec

        name = f"style_{secrets.token_hex(4)}"
        if path:
            self.check_upload(session, path, "add this LoRA")
        file = uploads.keep_lora(path, session.uploads_dir, name)
        with runtime.GPU_LOCK:
            note = self.engine.loras.add(LoraSpec(name=name, path=str(file), target="both", weight=0.0, role="style"))
        self.registry.lora_owners[name] = session.token
        session.style_loras.append(name)
        weights = dict(session.director.project.settings.lora_weights)
        weights[name] = 1.0
        session.director.update_settings(lora_weights=weights)
        return Outcome(f"Style LoRA {uploads.upload_name(path)} loaded as “{name}” at weight 1 (change it under LoRA weights)."
                       + (f" {note}" if note else ""))

    # -- helpers -------------------------------------------------------------------------------

    def require_room(self, session: Session) -> None:
        if len(session.director.project.shots) >= self.max_shots:
            raise ProjectError(f"the editor holds up to {self.max_shots} shots (set SVI_MAX_SHOTS for more).")

    def require_space(self, session: Session | None, what: str, adding: int = 0) -> None:
        """Refuse to `what` when the session would go over its disk quota (ProjectError)."""
        if self.quota_bytes is None:
            return
        used = self.registry.disk_use(session) if session is not None else 0
        if used + adding <= self.quota_bytes and (adding or used < self.quota_bytes):
            return
        usage = f"this session uses {gigabytes(used)} of its {gigabytes(self.quota_bytes)}"
        if adding:
            usage += f" and this needs about {gigabytes(adding)} more"
        raise ProjectError(f"cannot {what}: {usage}. Delete shots you no longer need, or download the project "
                           "and start a new one.")

    def within_quota(self, session: Session, make_job: Callable[[Session], Iterator[jobs.JobUpdate]]):
        """A render job's updates, checking the quota before it starts and before each next shot
        (a job that goes over stops after its current clip; finished shots are kept)."""
        self.require_space(session, "render")
        updates = make_job(session)
        try:
            for update in updates:
                yield update
                if update.kind == "clip":
                    self.require_space(session, "render more shots")
        finally:
            close = getattr(updates, "close", None)
            if close is not None:
                close()

    def check_upload(self, session: Session | None, path: str | Path, what: str, unpacked: int | None = None) -> None:
        """An uploaded file: never one of the files this app published (those are not uploads,
        and may belong to another session), and within the session's quota (`unpacked`: the
        bytes it will take once unpacked, default its own size)."""
        if self.shelf is not None and self.shelf.contains(path):
            raise uploads.UploadError(f"{uploads.upload_name(path)} is not an upload; choose a file from your computer.")
        self.require_space(session, what, _size(path) if unpacked is None else unpacked)

    def remove_others(self, session: Session, pattern: str, keep: set[Path]) -> None:
        """Delete the session's exports matching `pattern` except `keep`, and their published copies."""
        for path in session.exports_dir.glob(pattern):
            if path not in keep:
                path.unlink(missing_ok=True)
                if self.shelf is not None:
                    self.shelf.unpublish(session.token, path)

    def publish(self, session: Session, path: str | Path | None) -> str | None:
        """The path Gradio should serve for one of this session's files (see serving.MediaShelf)."""
        if not path:
            return None
        if self.shelf is None:
            return str(path)
        return self.shelf.publish(session.token, path)

    def message(self, error: BaseException | str) -> str:
        """What a user sees of an error: its sentence, without server paths or session tokens."""
        text = error if isinstance(error, str) else page_message(error)
        if isinstance(error, OSError):
            log.warning("file error shown to a user as %r: %s", text, error)
        folders = [self.registry.data_dir] + ([self.shelf.root] if self.shelf is not None else [])
        return redact(text, self.registry.root, folders + _gradio_folders(), list(self.registry.tokens()))

    def require_idle(self, session: Session, what: str) -> None:
        if session.job is not None:
            raise ProjectError(f"cannot {what} while rendering; wait for the render to finish or cancel it.")

    def refresh_preview(self, session: Session) -> None:
        """Rewrite the film preview after the cut changed (a take selected, a shot moved or
        deleted) in the background: the edit replies at once, the page's timer picks the
        new preview up when it is written."""
        editing.preview_of(session).request()

    # -- API (JSON in, JSON out) -----------------------------------------------------------------

    def api_session(self, token: str | None) -> Session:
        return self.registry.ensure(token)

    def status(self, session: Session, notices: list[str] | None = None) -> dict[str, Any]:
        """The project as the API returns it; reasons and notices without server paths."""
        with session.lock:
            status = views.public_status(session.director, session.director.statuses(),
                                         [self.message(n) for n in notices or []])
        for shot in status["shots"]:
            if isinstance(shot.get("reason"), str):
                shot["reason"] = self.message(shot["reason"])
        return status

    def api_call(self, token: str | None, action: Callable[[Session], Any]) -> tuple[str, Any]:
        """Run an API action; a user error becomes gr.Error with its message."""
        session = self.api_session(token)
        try:
            with session.lock:
                result = action(session)
        except USER_ERRORS as error:
            raise gr.Error(self.message(error)) from None
        if isinstance(result, Outcome):
            target = result.session or session
            notices = [result.notice] if result.notice else []
            return target.token, self.status(target, notices)
        return session.token, result

    def api_start(self, action: Callable[[], Outcome]) -> tuple[str, Any]:
        """Run an API action that starts a new session (new project, example, uploaded zip)."""
        try:
            outcome = action()
        except USER_ERRORS as error:
            raise gr.Error(self.message(error)) from None
        return outcome.session.token, self.status(outcome.session, [outcome.notice] if outcome.notice else [])

    def api_job(self, token: str | None, make_job: Callable[[Session], Iterator[jobs.JobUpdate]]):
        session = self.api_session(token)
        try:
            last = None
            for update in self.within_quota(session, make_job):
                last = update
                yield session.token, self.status(session, [views.job_line(
                    update.kind, update.shot_index + 1 if update.shot_index is not None else None,
                    update.done, update.total)])
            if last is None:
                yield session.token, self.status(session)
        except USER_ERRORS as error:
            raise gr.Error(self.message(error)) from None

    def set_story(self, session: Session, style_prompt: str | None, negative_prompt: str | None) -> Outcome:
        session.director.set_story(style_prompt=style_prompt, negative_prompt=negative_prompt)
        return Outcome()

    def set_shots(self, session: Session, prompts: Any) -> Outcome:
        """Make the film's shots these prompts, in order (existing shots keep their takes
        where the prompt is unchanged; extra shots are added, missing ones deleted)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ProjectError("shots must be a list of prompt strings.")
        if len(prompts) > self.max_shots:
            raise ProjectError(f"the editor holds up to {self.max_shots} shots; got {len(prompts)}.")
        self.require_idle(session, "change the shot list")
        director = session.director
        for index, prompt in enumerate(prompts):
            if index < len(director.project.shots):
                if director.project.shots[index].prompt != prompt:
                    director.set_shot(index, prompt=prompt)
            else:
                director.add_shot(prompt)
        while len(director.project.shots) > len(prompts):
            director.delete_shot(len(director.project.shots) - 1)
        return Outcome(f"{len(prompts)} shots.")

    def update_settings(self, session: Session, changes: Any) -> Outcome:
        if not isinstance(changes, dict):
            raise SettingsError("settings must be a JSON object, e.g. {\"steps\": 4}.")
        notices = session.director.update_settings(**changes)
        return Outcome(" ".join(notices))


def _size(path: str | Path | None) -> int:
    try:
        return Path(path).stat().st_size if path else 0
    except OSError:
        return 0


def _gradio_folders() -> list[Path]:
    """Gradio's upload folder: an uploaded file's name is the user's, its folder is the server's."""
    from gradio.utils import get_upload_folder

    return [Path(get_upload_folder())]
