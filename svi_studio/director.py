"""The Director: the one object the CLI, the Python API and the UI all call.

It owns a project on disk (`ProjectStore`) and an engine, and knows the order of
things: which shots need rendering, which motion state each one consumes, which
frames of each take make the film.

    director = Director.create("films/cat", load_engine("draft"), reference=image,
                               prompts=["close-up, slowly pulling back", "it jumps down"])
    for event in director.render():          # a ClipEvent as each clip finishes
        print(event.shot_index, event.clip_path, event.seam_score)
    director.regenerate(1, cascade=True)      # re-roll shot 2 from shot 1's stored motion
    director.set_shot_media(2, "end_image", "door.png")   # a per-shot condition
    director.export("cat.mp4")

The work itself lives beside it, one concept per module:
    render/events.py   the event and plan types a job reports
    render/shot.py     rendering one shot (the unit of GPU work)
    render/runner.py   the one loop that renders a job (CLI, API and UI all use it)
    timeline.py        where each shot's frames sit in the film, in frames and seconds
    export.py          writing the film file from the timeline's segments
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from .engines.base import CancelToken, Engine, settings_for_conditions
from .conditions import ShotConditions
from .engines.request import ANCHOR_IMAGE
from .project.model import (MAX_NAME_CHARS, MAX_TAKE_NOTE, SHOT_OVERRIDE_KEYS, Project, ProjectError, Shot, Take,
                            max_shots, random_seed)
from .project.status import BROKEN, FRESH, MISSING, RENDERING, STALE, recipe_fingerprint, stale_reason
from .project.store import BrokenTake, ProjectStore, image_fingerprint
from .reference import load_reference
from .render.events import (  # noqa: F401 - re-exported: `from svi_studio.director import ClipEvent` keeps working
    ClipEvent, DoneEvent, RenderPlan, ShotStarted, ShotStatus, StepCallback, StepEvent,
)
from .render.runner import run_job
from .render.shot import OUT_OF_MEMORY_ADVICE, ShotRenderer  # noqa: F401
from .settings import ClipSettings, SettingsError, fit_resolution, normalise_settings, validate_seed
from .text import LONG_PROMPT_CHARS, MAX_TEXT_CHARS, clean_text, full_prompt  # noqa: F401
from .timeline import FilmSegment, cut_segments, planned_spans, segment_seconds


class Director:
    """Renders, re-rolls, edits and exports one project with one engine."""

    def __init__(self, store: ProjectStore, engine: Engine | None):
        """engine None opens the project without a model: status, edits, export and bundles
        work; rendering raises ProjectError."""
        self.store = store
        self.engine = engine
        self.notices: list[str] = []
        self.rendering: set[str] = set()  # shot ids being rendered right now
        self.renderer = ShotRenderer(self)
        self.conditions = ShotConditions(self)
        unknown = sorted(self.project.extra) + sorted({k for shot in self.project.shots for k in shot.extra})
        if unknown:
            self.notices.append(f"project.json holds entries this version of SVI Studio does not use "
                                f"({', '.join(unknown[:8])}); they are kept unchanged.")
        self._adopt_engine()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, root: str | Path, engine: Engine, reference: Image.Image | str | Path | bytes | None = None,
               prompts: list[str] | tuple[str, ...] = (), style_prompt: str = "", negative_prompt: str = "",
               name: str = "Untitled film", settings: dict[str, Any] | None = None,
               seeds: list[int | None] | None = None) -> "Director":
        """A new project in `root` (which must not hold one yet).

        The reference, settings and seeds are checked before anything is written, so a bad
        one leaves no half-made project behind (the same command can simply be run again)."""
        picture, picture_notices = load_reference(reference) if reference is not None else (None, [])
        if settings:
            _check_setting_names(settings)
            normalise_settings({**engine.default_settings().to_dict(), **settings})
        for seed in seeds or []:
            if seed is not None:
                validate_seed(seed)
        if len(prompts) > max_shots():
            raise ProjectError(f"a film holds up to {max_shots()} shots; got {len(prompts)} (set SVI_MAX_SHOTS for more).")
        project = Project(name=clean_text(name, "the film's name")[:MAX_NAME_CHARS] or "Untitled film",
                          style_prompt=clean_text(style_prompt, "the style prompt"),
                          negative_prompt=clean_text(negative_prompt, "the negative prompt"),
                          engine=engine.preset_id, settings=engine.default_settings())
        store = ProjectStore.create(root, project)
        director = cls(store, engine)
        # What was rounded or converted on the way in is kept in `notices` (the CLI prints them).
        if picture is not None:
            director.notices.extend(picture_notices + director._store_reference(picture))
        if settings:
            director.notices.extend(director.update_settings(**settings))
        for index, prompt in enumerate(prompts):
            seed = seeds[index] if seeds and index < len(seeds) else None
            director.add_shot(prompt, seed=seed, seed_locked=seed is not None)
        return director

    @classmethod
    def from_spec(cls, spec_path: str | Path, root: str | Path, engine: Engine,
                  settings: dict[str, Any] | None = None) -> "Director":
        """A new project in `root` from a spec file (presets/projects/*.json or your own);
        `settings` override the spec's own."""
        from .project.spec import load_spec

        spec = load_spec(spec_path)
        director = cls.create(root, engine, reference=spec.reference, prompts=spec.prompts,
                              style_prompt=spec.style_prompt, negative_prompt=spec.negative_prompt,
                              name=spec.name, settings={**spec.settings, **(settings or {})}, seeds=spec.seeds)
        for role, path in spec.film_media.items():  # film-wide: one pose video cut into the shots
            director.notices.extend(director.set_film_media(role, path))
        for index, media in enumerate(spec.media):  # each shot's conditions, paths relative to the spec file
            for role, path in media.items():
                director.notices.extend(director.set_shot_media(index, role, path))
        return director

    @classmethod
    def open(cls, root: str | Path, engine: Engine | None) -> "Director":
        return cls(ProjectStore.load(root), engine)

    def refresh(self) -> bool:
        """Read project.json again if another program saved it since this Director did (see
        ProjectStore.refresh); True when the project was replaced. The render loop and the app
        call it themselves; a script that keeps a Director open while the CLI or the app edits
        the same folder calls it before changing anything."""
        return self.store.refresh()

    def _adopt_engine(self) -> None:
        """A project opened with another engine keeps prompts, seeds and takes; sampler
        settings and resolution switch to the new engine's defaults (its takes become stale)."""
        project = self.project
        if self.engine is None or project.engine == self.engine.preset_id:
            return
        old = project.settings
        fresh = self.engine.default_settings()
        fresh = replace(fresh, num_motion_latents=old.num_motion_latents)
        project.settings = self._fit_to_reference(fresh)
        self.notices.append(
            f"This project was made with '{project.engine}'; it now renders with '{self.engine.preset_id}'. "
            "Its sampler settings and resolution follow the new engine; earlier takes are marked stale."
        )
        project.engine = self.engine.preset_id
        self.store.save()

    # -- reading ---------------------------------------------------------------------------

    @property
    def project(self) -> Project:
        return self.store.project

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def engine_id(self) -> str:
        """The preset id takes are judged against: the loaded engine's, else the project's."""
        return self.engine.preset_id if self.engine is not None else self.project.engine

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise ProjectError("no engine is loaded: open the project with an engine to render.")
        return self.engine

    def shot(self, index: int) -> Shot:
        if not isinstance(index, int) or not 0 <= index < len(self.project.shots):
            raise ProjectError(f"there is no shot {index + 1 if isinstance(index, int) else index!r}; "
                               f"the film has {len(self.project.shots)} shots.")
        return self.project.shots[index]

    def shot_settings(self, shot: Shot) -> ClipSettings:
        """Project settings with the shot's own overrides applied."""
        return self.project.settings.merged(shot.overrides)

    def shot_prompt(self, shot: Shot) -> str:
        return full_prompt(shot.prompt, self.project.style_prompt)

    def anchor_fingerprint(self, shot: Shot) -> str | None:
        relative = shot.anchor_image or self.project.reference
        if not relative:
            return None
        path = self.store.safe_path(relative)
        return image_fingerprint(path) if path.is_file() else None

    def condition_fingerprints(self, shot: Shot) -> dict[str, str]:
        """role → fingerprint of the shot's conditions the engine honours, besides the anchor."""
        return self.conditions.fingerprints(shot)

    def shot_media(self, shot: Shot) -> dict[str, str]:
        """The shot's conditions: its own, and the film's pose video where it has none of its own."""
        return self.conditions.media(shot)

    def film_pose_frames(self, index: int) -> np.ndarray | None:
        """The film frames of the film's pose video that shot `index` follows (None: the film has none)."""
        return self.conditions.film_pose_frames(index)

    def recipe(self, shot: Shot, used_settings: frozenset[str] | list[str] | None = None) -> str:
        """The fingerprint of what the shot's clip is made from, as far as the engine uses it.

        used_settings: the setting names that count (default: the loaded engine's; with
        none loaded, what the base Engine uses)."""
        settings = self.shot_settings(shot)
        if used_settings is None:
            used_settings = (self.engine.used_settings(settings, frozenset(shot.media)) if self.engine is not None
                             else settings_for_conditions(settings, frozenset(shot.media)))
        settings = {key: value for key, value in settings.to_dict().items() if key in used_settings}
        return recipe_fingerprint(self.shot_prompt(shot), self.project.negative_prompt, shot.seed,
                                  settings, self.engine_id, self.anchor_fingerprint(shot),
                                  self.condition_fingerprints(shot))

    def shot_status(self, index: int) -> tuple[str, str | None]:
        """(status, reason) of shot `index` — see project/status.py."""
        shot = self.shot(index)
        if shot.id in self.rendering:
            return RENDERING, None
        if shot.selected_take is None:
            return MISSING, None
        if shot.selected_take in self.store.broken_takes:
            return BROKEN, self.store.broken_takes[shot.selected_take]
        try:
            take = self.store.take(shot.id, shot.selected_take)
        except BrokenTake as error:
            return BROKEN, str(error)
        upstream = self.project.shots[index - 1].selected_take if index > 0 else None
        # Without an engine, the take says which settings its engine used.
        used = None if self.engine is not None else take.info.get("recipe_settings")
        reason = stale_reason(take, index == 0, upstream, self.recipe(shot, used))
        return (STALE, reason) if reason else (FRESH, None)

    def statuses(self) -> list[ShotStatus]:
        """Every shot's status, take, seed, frame count, film seconds and seam score."""
        segments = {segment.shot_id: segment for segment in self.film_segments(strict=False)}
        fps = self.project.settings.fps
        result = []
        for index, shot in enumerate(self.project.shots):
            status, reason = self.shot_status(index)
            segment = segments.get(shot.id)
            take = segment.take if segment else None
            seam = None
            if take and take.seam and index > 0 and take.seam.get("upstream_take") == self.project.shots[index - 1].selected_take:
                seam = take.seam.get("score")
            camera = (take.info.get("camera") or {}).get("summary") if take else None
            start_s, end_s = segment_seconds(segment, fps) if segment else (None, None)
            result.append(ShotStatus(
                index=index, shot_id=shot.id, prompt=shot.prompt, status=status, reason=reason,
                selected_take=shot.selected_take, takes=list(shot.takes), seed=shot.seed,
                seed_locked=shot.seed_locked, frames=take.num_frames if take else None,
                start_s=start_s, end_s=end_s, seam_score=seam,
                clip_path=str(self.store.clip_path(shot.id, shot.selected_take)) if take else None,
                camera=camera, media=dict(shot.media),
            ))
        return result

    def planned_seconds(self) -> list[tuple[float, float]]:
        """(start, end) seconds each shot will cover once rendered with the current settings."""
        settings = self.project.settings
        return planned_spans(len(self.project.shots), settings.num_frames,
                             self.require_engine().stitch_rule(settings), settings.fps)

    # -- editing -----------------------------------------------------------------------------

    def set_reference(self, image: Image.Image | str | Path | bytes) -> list[str]:
        """Store the reference image and fit the resolution to its aspect ratio.

        `image`: a PIL image, a file path or the file's bytes, opened by
        `reference.load_reference` (ReferenceError says what is wrong with a bad one).
        Returns notices: what was done to the picture, and the clip resolution."""
        picture, notices = load_reference(image)
        return notices + self._store_reference(picture)

    def _store_reference(self, picture: Image.Image) -> list[str]:
        self.store.set_reference(picture)
        self.project.settings = self._fit_to_reference(self.project.settings)
        self.renderer.forget_anchors()
        self.store.save()
        s = self.project.settings
        return [f"Clips will be {s.width}x{s.height} (the reference's aspect ratio, multiples of 16)."]

    def _fit_to_reference(self, settings: ClipSettings) -> ClipSettings:
        path = self.store.reference_path()
        if path is None or not path.is_file():
            return settings
        max_area = self.engine.max_area if self.engine is not None else settings.width * settings.height
        image, _ = load_reference(path, name="the project's reference image")
        width, height = fit_resolution(image.width, image.height, max_area)
        return replace(settings, width=width, height=height)

    def set_story(self, style_prompt: str | None = None, negative_prompt: str | None = None,
                  name: str | None = None) -> list[str]:
        """Change the shared style/character prompt, the negative prompt or the film's name.
        Returns notices (text that had to be cleaned, a prompt longer than the model reads)."""
        notices: list[str] = []
        if style_prompt is not None:
            self.project.style_prompt = clean_text(style_prompt, "the style prompt", notices)
        if negative_prompt is not None:
            self.project.negative_prompt = clean_text(negative_prompt, "the negative prompt", notices)
        if name is not None:
            self.project.name = clean_text(name, "the film's name", notices)[:MAX_NAME_CHARS] or "Untitled film"
        self.store.save()
        return notices

    def update_settings(self, **changes: Any) -> list[str]:
        """Change project settings (validated; rounded values come back as notices).
        An unknown setting name is refused (SettingsError), never silently ignored."""
        _check_setting_names(changes)
        data = self.project.settings.to_dict()
        data.update(changes)
        settings, notices = normalise_settings(data)
        self.project.settings = settings
        self.store.save()
        return notices

    def add_shot(self, prompt: str = "", seed: int | None = None, seed_locked: bool = False) -> Shot:
        return self.insert_shot(len(self.project.shots), prompt, seed=seed, seed_locked=seed_locked)

    def insert_shot(self, index: int, prompt: str = "", seed: int | None = None, seed_locked: bool = False) -> Shot:
        """Insert a new shot at position `index` (0 = first). The shot after it becomes stale."""
        if not 0 <= index <= len(self.project.shots):
            raise ProjectError(f"cannot insert at position {index + 1}; the film has {len(self.project.shots)} shots.")
        shot = Shot(prompt=clean_text(prompt, f"shot {index + 1}'s prompt", self.notices),
                    seed=validate_seed(seed) if seed is not None else random_seed(),
                    seed_locked=bool(seed_locked))
        self.project.shots.insert(index, shot)
        self.store.save()
        return shot

    def delete_shot(self, index: int) -> None:
        """Delete a shot and its takes. The shot after it becomes stale."""
        shot = self.shot(index)
        if shot.id in self.rendering:
            raise ProjectError("this shot is rendering; cancel first.")
        del self.project.shots[index]
        self.store.save()  # project.json first: a crash now leaves unreferenced files, never a dangling reference
        for take_id in shot.takes:
            self.store.delete_take_files(shot.id, take_id)

    def move_shot(self, index: int, new_index: int) -> None:
        """Move a shot; every shot whose predecessor changed becomes stale."""
        shot = self.shot(index)
        if not 0 <= new_index < len(self.project.shots):
            raise ProjectError(f"cannot move to position {new_index + 1}; the film has {len(self.project.shots)} shots.")
        del self.project.shots[index]
        self.project.shots.insert(new_index, shot)
        self.store.save()

    def set_shot(self, index: int, prompt: str | None = None, seed: int | None = None,
                 seed_locked: bool | None = None, overrides: dict[str, Any] | None = None,
                 anchor_image: Image.Image | None = None, clear_anchor: bool = False) -> list[str]:
        """Edit a shot. Changing what its clip depends on makes it stale (not re-rendered)."""
        shot = self.shot(index)
        notices: list[str] = []
        if prompt is not None:
            shot.prompt = clean_text(prompt, f"shot {index + 1}'s prompt", notices)
            if not shot.prompt.strip():
                notices.append(f"shot {index + 1} has no prompt yet; describe what happens in it before rendering it.")
        if seed is not None:
            shot.seed = validate_seed(seed)
        if seed_locked is not None:
            shot.seed_locked = bool(seed_locked)
        if overrides is not None:
            unknown = set(overrides) - set(SHOT_OVERRIDE_KEYS)
            if unknown:
                raise SettingsError(f"a shot can override only {', '.join(SHOT_OVERRIDE_KEYS)}; not {', '.join(sorted(unknown))}.")
            merged, notices = normalise_settings(self.project.settings.merged(overrides))
            shot.overrides = {k: v for k, v in overrides.items() if v is not None}
        if anchor_image is not None:
            notices.extend(self.conditions.store(index, ANCHOR_IMAGE, anchor_image))
        if clear_anchor:
            shot.media.pop(ANCHOR_IMAGE, None)
        self.store.save()
        return notices

    def set_shot_media(self, index: int, role: str, source: Any) -> list[str]:
        """Set (a file path, bytes or a picture) or clear (None) shot `index`'s condition `role`:
        "anchor_image", "end_image" or "pose_video" (see conditions.py). Returns notices."""
        return self.conditions.set(index, role, source)

    def set_film_media(self, role: str, source: Any) -> list[str]:
        """Set or clear (None) the film's pose video, cut into the shots by their frames in the film."""
        return self.conditions.set_film(role, source)

    def select_take(self, index: int, take_id: str) -> None:
        """Make an earlier take the selected one (its shot's seed follows it); downstream shots go stale."""
        shot = self.shot(index)
        if take_id not in shot.takes:
            raise ProjectError(f"shot {index + 1} has no take {take_id!r}.")
        take = self.store.take(shot.id, take_id)
        shot.selected_take = take_id
        shot.seed = take.seed
        self.store.save()

    def mark_take(self, index: int, take_id: str, starred: bool | None = None, note: str | None = None) -> Take:
        """Star/unstar a take of shot `index` and/or set its short note (saved in its take.json;
        the clip, its recipe and every status stay as they were)."""
        shot = self.shot(index)
        if take_id not in shot.takes:
            raise ProjectError(f"shot {index + 1} has no take {take_id!r}.")
        take = self.store.take(shot.id, take_id)
        if starred is not None:
            take.starred = bool(starred)
        if note is not None:
            take.note = clean_text(note, "a take's note")[:MAX_TAKE_NOTE].strip()
        self.store.update_take(take)
        return take

    def delete_take(self, index: int, take_id: str) -> None:
        """Delete a take of shot `index` that is not its selected one (the film never loses the
        clip it shows; select another take first). Its folder goes atomically (see
        ProjectStore.delete_take_files); nothing else changes status."""
        shot = self.shot(index)
        if take_id not in shot.takes:
            raise ProjectError(f"shot {index + 1} has no take {take_id!r}.")
        if shot.selected_take == take_id:
            raise ProjectError(f"take {shot.takes.index(take_id) + 1} is the one shot {index + 1} uses; "
                               "select another take before deleting it.")
        shot.takes.remove(take_id)
        self.store.save()
        self.store.delete_take_files(shot.id, take_id)

    # -- rendering ---------------------------------------------------------------------------

    def pending(self) -> list[int]:
        """Indices of shots that are missing, stale or broken, in film order."""
        return [i for i in range(len(self.project.shots)) if self.shot_status(i)[0] in (MISSING, STALE, BROKEN)]

    def check_ready(self, indices: list[int] | None = None) -> None:
        """Raise ProjectError (with what to do) if the shots cannot be rendered as they are."""
        if not self.project.reference or self.store.reference_path() is None or not self.store.reference_path().is_file():
            raise ProjectError("no reference image yet: upload one (it anchors the character and look of every shot).")
        if not self.project.shots:
            raise ProjectError("the film has no shots yet: add a shot with a prompt.")
        for index in indices if indices is not None else range(len(self.project.shots)):
            if not self.project.shots[index].prompt.strip():
                raise ProjectError(f"shot {index + 1} has an empty prompt: describe what happens in it.")
            for role in self.shot_media(self.project.shots[index]):
                self.check_condition(index, role)

    def check_condition(self, index: int, role: str) -> None:
        """EngineError when the loaded engine cannot honour condition `role` on shot `index`."""
        self.conditions.check(index, role)

    def plan_render(self) -> RenderPlan:
        """A job that renders every missing, stale or broken shot in film order."""
        pending = self.pending()
        self.check_ready(pending)
        return RenderPlan(size=max(1, len(pending)))

    def plan_regenerate(self, index: int, seed: int | None = None, cascade: bool = False) -> RenderPlan:
        """A job that re-rolls shot `index` (and, with `cascade`, the shots after it that become stale).

        New seed: `seed` if given, else the shot's own if locked, else a fresh random one.
        Nothing is changed until a take is made.
        """
        shot = self.shot(index)
        if index > 0 and self.project.shots[index - 1].selected_take is None:
            raise ProjectError(f"shot {index} has no take yet; render it first (shot {index + 1} continues from it).")
        seed = validate_seed(seed) if seed is not None else None  # refuse a bad seed before changing anything
        self.check_ready([index])
        new_seed = seed if seed is not None else (shot.seed if shot.seed_locked else random_seed())
        after = frozenset(s.id for s in self.project.shots[index + 1:])
        return RenderPlan(first=shot.id, cascade=cascade, after=after, seeds={shot.id: new_seed},
                          size=1 + (len(after) if cascade else 0))

    def next_shot(self, plan: RenderPlan, rendered: list[str]) -> int | None:
        """The index of the next shot `plan` renders, given the takes made so far (None: done)."""
        if plan.first is None:
            return next(iter(self.pending()), None)
        if not rendered:
            return self.project.shot_index(plan.first)
        if not plan.cascade:
            return None
        for later in range(self.project.shot_index(plan.first) + 1, len(self.project.shots)):
            if self.project.shots[later].id in plan.after and self.shot_status(later)[0] in (MISSING, STALE, BROKEN):
                return later
        return None

    def render(self, cancel: CancelToken | None = None, on_step: StepCallback | None = None) -> Iterator[ClipEvent | DoneEvent]:
        """Render every missing or stale shot, in order; yield a ClipEvent as each clip finishes.

        Shots are re-planned after every clip, so a shot made stale by the clip before it
        (its upstream changed) is rendered too. Ends with a DoneEvent.
        """
        with self.store.render_lock():  # held while the render runs: another process's open leaves its partials alone
            yield from self.run(self.plan_render(), cancel, on_step)

    def regenerate(self, index: int, seed: int | None = None, prompt: str | None = None,
                   overrides: dict[str, Any] | None = None, cascade: bool = False,
                   cancel: CancelToken | None = None, on_step: StepCallback | None = None) -> Iterator[ClipEvent | DoneEvent]:
        """A new take of shot `index` from the stored motion of the upstream shot's selected take.

        Upstream shots are never re-rendered. New seed: `seed` if given, else the shot's seed
        if locked, else a fresh random one. With `cascade`, the shots after it that become
        stale (or are missing) are rendered too, in order; without, they stay stale.
        """
        self.shot(index)
        if seed is not None:
            validate_seed(seed)  # refuse a bad seed before saving any edit
        if prompt is not None or overrides is not None:
            self.set_shot(index, prompt=prompt, overrides=overrides)  # explicit edits are saved now
        with self.store.render_lock():
            yield from self.run(self.plan_regenerate(index, seed=seed, cascade=cascade), cancel, on_step)

    def run(self, plan: RenderPlan, cancel: CancelToken | None = None,
            on_step: StepCallback | None = None) -> Iterator[ClipEvent | DoneEvent]:
        """Run a job in this process (render/runner.py); yields its ClipEvents and the DoneEvent."""
        def render_one(index: int, job_index: int, job_size: int, seed: int | None) -> ClipEvent:
            return self.render_shot(index, cancel=cancel, on_step=on_step, job_index=job_index,
                                    job_size=job_size, seed=seed)

        for event in run_job(self, plan, render_one, cancel):
            if event.kind != "start":  # a shot starting matters to a page, not to scripts
                yield event

    def render_shot(self, index: int, cancel: CancelToken | None = None, on_step: StepCallback | None = None,
                    job_index: int = 0, job_size: int = 1, seed: int | None = None) -> ClipEvent:
        """Render one clip for shot `index` and select the new take (see render/shot.py).

        seed: render with this seed instead of the shot's (a re-roll); it becomes the shot's
        seed only together with the new take. Raises Cancelled (leaving no take behind)."""
        with self.store.render_lock():  # re-entrant: render() and regenerate() hold it already
            return self.renderer.render_shot(index, cancel, on_step, job_index, job_size, seed)

    def adopt_take(self, shot_id: str, take_id: str) -> None:
        """Select a complete take that another copy of this project wrote (a ZeroGPU worker
        process): merged into this Director's project, so edits made meanwhile survive."""
        self.refresh()
        shot = self.project.shots[self.project.shot_index(shot_id)]
        take = self.store.take(shot_id, take_id)
        if take_id not in shot.takes:
            shot.takes.append(take_id)
        shot.selected_take = take_id
        shot.seed = take.seed
        self.store.broken_takes.pop(take_id, None)
        self.store.save()

    # -- the film -----------------------------------------------------------------------------

    def film_segments(self, strict: bool = True) -> list[FilmSegment]:
        """The selected takes in film order with the frames each contributes (timeline.cut_segments).

        strict: every shot must have a usable take; otherwise shots without one are
        skipped (a preview of the film so far).
        """
        chosen = []
        for index, shot in enumerate(self.project.shots):
            take = None
            if shot.selected_take and shot.selected_take not in self.store.broken_takes:
                try:
                    take = self.store.take(shot.id, shot.selected_take)
                except BrokenTake:
                    take = None
            if take is None:
                if strict:
                    raise ProjectError(f"shot {index + 1} has no usable take; render it before exporting.")
                continue
            chosen.append((index, shot.id, take))
        return cut_segments(chosen)

    def preview(self, out_path: str | Path | None = None) -> Path | None:
        """Write the stitched film so far (shots with takes) to preview.mp4; None if nothing yet.
        Only segments not cached yet are encoded; the rest are joined by stream copy (film_preview.py)."""
        from .film_preview import FilmPreview

        segments = self.film_segments(strict=False)
        if not segments:
            return None
        out_path = Path(out_path or self.root / "preview.mp4")
        FilmPreview(self.root).write(segments, self._export_frames(segments), out_path,
                                     keep_takes=[take for shot in self.project.shots for take in shot.takes])
        return out_path

    def export(self, out_path: str | Path, audio: str | Path | None = None, crossfade: float = 0.0,
               scale: float = 1.0) -> dict[str, Any]:
        """Export the whole film (see export.py). Returns the timeline written beside it."""
        from .export import ExportOptions, export_film

        segments = self.film_segments(strict=True)
        return export_film(segments, self._export_frames(segments), Path(out_path),
                           ExportOptions(audio=audio, crossfade=crossfade, scale=scale))

    def _export_frames(self, segments: list[FilmSegment]):
        """frames_of for export_film: each segment's kept frames streamed from its clip, after every
        clip is checked against what its take declares (header and packets only, nothing decoded)."""
        for segment in segments:
            self.store.check_clip(segment.shot_id, segment.take.id)

        def frames_of(segment: FilmSegment) -> Iterator[np.ndarray]:
            return self.store.iter_frames(segment.shot_id, segment.take.id, segment.start, segment.end)

        return frames_of


def _check_setting_names(changes: dict[str, Any]) -> None:
    """SettingsError for names ClipSettings does not have (a typo like "step" would otherwise do nothing)."""
    known = set(ClipSettings.__dataclass_fields__)
    unknown = sorted(str(name) for name in changes if name not in known)
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(repr(n) for n in unknown)}; "
                            f"the settings are: {', '.join(sorted(known))}.")
