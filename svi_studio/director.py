"""The Director: the one object the CLI, the Python API and the UI all call.

It owns a project on disk (`ProjectStore`) and an engine, and knows the order of
things: which shots need rendering, which motion state each one consumes, which
frames of each take make the film.

    director = Director.create("films/cat", load_engine("draft"), reference=image,
                               prompts=["close-up, slowly pulling back", "it jumps down"])
    for event in director.render():          # a ClipEvent as each clip finishes
        print(event.shot_index, event.clip_path, event.seam_score)
    director.regenerate(1, cascade=True)      # re-roll shot 2 from shot 1's stored motion
    director.export("cat.mp4")
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .engines.live_preview import PreviewingStepCallback
from .engines.base import Anchor, Cancelled, CancelToken, Engine, OutOfMemory
from .motion import MotionState
from .project.model import SHOT_OVERRIDE_KEYS, Project, ProjectError, Shot, Take, random_seed
from .project.status import (BROKEN, FRESH, MISSING, RENDERING, STALE, recipe_fingerprint, recipe_settings,
                             stale_reason)
from .project.store import BrokenTake, ProjectStore, image_fingerprint, to_jsonable
from .reference import load_reference
from .seams import seam_score
from .settings import ClipSettings, SettingsError, fit_resolution, normalise_settings, validate_seed
from .stitching import StitchRule, kept_range

log = logging.getLogger(__name__)


# -- events ---------------------------------------------------------------------------------


@dataclass
class StepEvent:
    """One denoising step finished. job_index/job_size: this clip's place in the current job."""

    shot_index: int
    shot_id: str
    step: int
    total_steps: int
    job_index: int
    job_size: int
    kind: str = "step"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClipEvent:
    """A clip finished and its take is on disk and selected."""

    shot_index: int
    shot_id: str
    take_id: str
    clip_path: str
    seam_score: float | None
    timings: dict[str, float]
    job_index: int
    job_size: int
    kind: str = "clip"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoneEvent:
    """The job ended: every planned clip rendered, or cancelled (finished clips are kept)."""

    rendered: list[str] = field(default_factory=list)  # take ids, in order
    cancelled: bool = False
    kind: str = "done"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ShotStatus:
    """What the UI and `status` show for one shot."""

    index: int
    shot_id: str
    prompt: str
    status: str
    reason: str | None
    selected_take: str | None
    takes: list[str]
    seed: int
    seed_locked: bool
    frames: int | None
    start_s: float | None
    end_s: float | None
    seam_score: float | None
    clip_path: str | None
    camera: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FilmSegment:
    """The kept frames [start, end) of one selected take, in film order."""

    shot_index: int
    shot_id: str
    take: Take
    start: int
    end: int
    film_start: int  # index of this segment's first frame in the film


@dataclass
class RenderPlan:
    """Which shots one job renders; `Director.next_shot` re-plans after every clip.

    first: the shot id a re-roll renders first (None: render every pending shot).
    cascade: after `first`, also render the shots in `after` that are missing or stale.
    seeds: shot id → the seed its next render uses (a re-roll's new seed), saved only
        with the take it makes, so a cancelled or failed re-roll leaves the shot as it was.
    size: how many clips the job expects (for "shot i of N").
    """

    first: str | None = None
    cascade: bool = False
    after: frozenset[str] = frozenset()
    seeds: dict[str, int] = field(default_factory=dict)
    size: int = 1


StepCallback = Callable[[StepEvent], None]


def full_prompt(shot_prompt: str, style_prompt: str) -> str:
    """The prompt a clip is rendered with: the shot's own text, then the shared style/character text."""
    shot_prompt, style_prompt = shot_prompt.strip(), style_prompt.strip()
    if not style_prompt:
        return shot_prompt
    if not shot_prompt:
        return style_prompt
    joiner = " " if shot_prompt[-1] in ".!?。" else ". "
    return f"{shot_prompt}{joiner}{style_prompt}"


class Director:
    """Renders, re-rolls, edits and exports one project with one engine."""

    def __init__(self, store: ProjectStore, engine: Engine | None):
        """engine None opens the project without a model: status, edits, export and bundles
        work; rendering raises ProjectError."""
        self.store = store
        self.engine = engine
        self.notices: list[str] = []
        self.rendering: set[str] = set()  # shot ids being rendered right now
        self._anchors: OrderedDict[tuple, Anchor] = OrderedDict()
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()  # take id → decoded frames (small LRU)
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
        project = Project(name=name, style_prompt=style_prompt, negative_prompt=negative_prompt,
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
        return cls.create(root, engine, reference=spec.reference, prompts=spec.prompts,
                          style_prompt=spec.style_prompt, negative_prompt=spec.negative_prompt,
                          name=spec.name, settings={**spec.settings, **(settings or {})}, seeds=spec.seeds)

    @classmethod
    def open(cls, root: str | Path, engine: Engine | None) -> "Director":
        return cls(ProjectStore.load(root), engine)

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

    def recipe(self, shot: Shot) -> str:
        settings = self.shot_settings(shot).to_dict()
        if self.engine is not None:
            settings = recipe_settings(settings, self.engine.ignored_settings, self.engine.default_settings().to_dict())
        return recipe_fingerprint(self.shot_prompt(shot), self.project.negative_prompt, shot.seed,
                                  settings, self.engine_id, self.anchor_fingerprint(shot))

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
        reason = stale_reason(take, index == 0, upstream, self.recipe(shot))
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
            result.append(ShotStatus(
                index=index, shot_id=shot.id, prompt=shot.prompt, status=status, reason=reason,
                selected_take=shot.selected_take, takes=list(shot.takes), seed=shot.seed,
                seed_locked=shot.seed_locked, frames=take.num_frames if take else None,
                start_s=round(segment.film_start / fps, 3) if segment else None,
                end_s=round((segment.film_start + segment.end - segment.start) / fps, 3) if segment else None,
                seam_score=seam,
                clip_path=str(self.store.clip_path(shot.id, shot.selected_take)) if take else None,
                camera=camera,
            ))
        return result

    def planned_seconds(self) -> list[tuple[float, float]]:
        """(start, end) seconds each shot will cover once rendered with the current settings."""
        settings = self.project.settings
        rule = self.require_engine().stitch_rule(settings)
        count = len(self.project.shots)
        cursor, spans = 0, []
        for index in range(count):
            start, end = kept_range(index, count, settings.num_frames, rule)
            spans.append((round(cursor / settings.fps, 3), round((cursor + end - start) / settings.fps, 3)))
            cursor += end - start
        return spans

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
        self._anchors.clear()
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
            self.project.name = clean_text(name, "the film's name", notices)[:200] or "Untitled film"
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
            picture, anchor_notices = load_reference(anchor_image, name=f"shot {index + 1}'s anchor image")
            notices.extend(anchor_notices)
            shot.anchor_image = self.store.add_anchor_image(picture)
            self._anchors.clear()
        if clear_anchor:
            shot.anchor_image = None
        self.store.save()
        return notices

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
        yield from self._run(self.plan_render(), cancel, on_step)

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
        yield from self._run(self.plan_regenerate(index, seed=seed, cascade=cascade), cancel, on_step)

    def _run(self, plan: RenderPlan, cancel: CancelToken | None,
             on_step: StepCallback | None) -> Iterator[ClipEvent | DoneEvent]:
        rendered: list[str] = []
        while True:
            index = self.next_shot(plan, rendered)
            if index is None:
                break
            shot_id = self.project.shots[index].id
            try:
                event = self.render_shot(index, cancel=cancel, on_step=on_step, job_index=len(rendered),
                                         job_size=max(plan.size, len(rendered) + 1), seed=plan.seeds.pop(shot_id, None))
            except Cancelled:
                yield DoneEvent(rendered=rendered, cancelled=True)
                return
            rendered.append(event.take_id)
            yield event
        yield DoneEvent(rendered=rendered)

    def adopt_take(self, shot_id: str, take_id: str) -> None:
        """Select a complete take that another copy of this project wrote (a ZeroGPU worker
        process): merged into this Director's project, so edits made meanwhile survive."""
        shot = self.project.shots[self.project.shot_index(shot_id)]
        take = self.store.take(shot_id, take_id)
        if take_id not in shot.takes:
            shot.takes.append(take_id)
        shot.selected_take = take_id
        shot.seed = take.seed
        self.store.broken_takes.pop(take_id, None)
        self.store.save()

    def render_shot(self, index: int, cancel: CancelToken | None = None, on_step: StepCallback | None = None,
                    job_index: int = 0, job_size: int = 1, seed: int | None = None) -> ClipEvent:
        """Render one clip for shot `index` with its current prompt and seed; select the new take.

        seed: render with this seed instead of the shot's (a re-roll); it becomes the shot's
        seed only together with the new take — if no take comes, the shot keeps its old seed.
        This is the unit of GPU work (one `@spaces.GPU` call on a Space). Raises Cancelled
        (leaving no take behind) if `cancel` is set between steps.
        """
        shot = self.shot(index)
        if seed is None:
            return self._render_shot(index, cancel, on_step, job_index, job_size)
        previous_seed, shot.seed = shot.seed, validate_seed(seed)
        try:
            return self._render_shot(index, cancel, on_step, job_index, job_size)
        except BaseException:
            if shot.seed == seed:
                shot.seed = previous_seed
            raise

    def _render_shot(self, index: int, cancel: CancelToken | None, on_step: StepCallback | None,
                     job_index: int, job_size: int) -> ClipEvent:
        shot = self.shot(index)
        engine = self.require_engine()
        self.check_ready([index])
        # 1. What this clip depends on.
        settings, _ = normalise_settings(self.shot_settings(shot))
        prompt = self.shot_prompt(shot)
        upstream_take: str | None = None
        motion_in: MotionState | None = None
        if index > 0:
            upstream = self.project.shots[index - 1]
            if upstream.selected_take is None:
                raise ProjectError(f"shot {index} has no take yet; shot {index + 1} continues from it.")
            upstream_take = upstream.selected_take
            motion_in = self.store.motion_out(upstream.id, upstream_take)
        rule = engine.stitch_rule(settings)
        before = None
        if upstream_take is not None:  # read (and check) the upstream clip before spending GPU time
            upstream_shot = self.project.shots[index - 1]
            upstream_rule = StitchRule(**self.store.take(upstream_shot.id, upstream_take).stitch_rule)
            before = self._take_frames(upstream_shot.id, upstream_take)
            before = before[: len(before) - upstream_rule.drop_tail]
        recipe = self.recipe(shot)

        # 2. Generate. A PreviewingStepCallback as on_step also asks the engine for live previews.
        report = on_step.on_step if isinstance(on_step, PreviewingStepCallback) else on_step

        def step(done: int, total: int) -> None:
            if report is not None:
                report(StepEvent(index, shot.id, done, total, job_index, job_size))

        engine_step = replace(on_step, on_step=step) if isinstance(on_step, PreviewingStepCallback) else step

        self.rendering.add(shot.id)
        try:
            with _out_of_memory_as_message(settings):
                anchor = self._anchor(shot, settings)
                started_at, started = time.time(), time.perf_counter()
                clip = engine.generate_clip(anchor, motion_in, prompt, self.project.negative_prompt,
                                            shot.seed, settings, on_step=engine_step, cancel=cancel)
            generated, finished_at = time.perf_counter(), time.time()

            # 3. Seam against the upstream take's kept frames.
            seam = None
            if before is not None:
                seam = {"upstream_take": upstream_take, "score": seam_score(before, clip.frames[rule.drop_head:])}

            # 4. Write the take (atomic), then select it. started_at/finished_at (epoch seconds) bracket
            # generate_clip: the load test checks with them that renders never overlap.
            take = Take(
                id=self.store.new_take_id(), shot_id=shot.id, created=self.store.now(), prompt=prompt,
                shot_prompt=shot.prompt, negative_prompt=self.project.negative_prompt, seed=shot.seed,
                settings=settings.to_dict(), engine=engine.describe(), recipe=recipe,
                upstream_take=upstream_take,
                motion_in_fingerprint=motion_in.fingerprint() if motion_in is not None else None,
                motion_out_fingerprint=clip.motion_out.fingerprint(), num_frames=int(clip.frames.shape[0]),
                fps=settings.fps, width=int(clip.frames.shape[2]), height=int(clip.frames.shape[1]),
                has_latents=clip.latents is not None, stitch_rule=rule.to_dict(), seam=seam,
                info=to_jsonable(clip.info),
                timings={"generate_s": round(generated - started, 3), "started_at": round(started_at, 3),
                         "finished_at": round(finished_at, 3)},
            )
            self.store.write_take(take, clip.frames, clip.motion_out, motion_in, clip.latents)
            take.timings["write_s"] = round(time.perf_counter() - generated, 3)
            try:
                self.store.update_take(take)
            except OSError as error:  # the timing is a nicety; the take itself is complete
                log.warning("could not add timings to take %s: %s", take.id, error)
            self._select_new_take(shot, take)
        finally:
            self.rendering.discard(shot.id)
        self._remember_frames(take.id, clip.frames)
        return ClipEvent(index, shot.id, take.id, str(self.store.clip_path(shot.id, take.id)),
                         seam["score"] if seam else None, take.timings, job_index, job_size)

    def _select_new_take(self, shot: Shot, take: Take) -> None:
        """Add a just-written take to its shot and save; if the save fails (disk full), undo both:
        the previous take stays selected and no folder of the new take is left behind."""
        before = (list(shot.takes), shot.selected_take)
        shot.takes.append(take.id)
        shot.selected_take = take.id
        try:
            self.store.save()
        except BaseException:
            shot.takes, shot.selected_take = before
            self.store.delete_take_files(shot.id, take.id)
            raise

    def _anchor(self, shot: Shot, settings: ClipSettings) -> Anchor:
        relative = shot.anchor_image or self.project.reference
        path = self.store.safe_path(relative)
        key = (image_fingerprint(path), settings.width, settings.height)
        if key not in self._anchors:
            # The stored file may come from an imported bundle: it is opened as untrusted as an upload.
            image, _ = load_reference(path, name="the anchor image" if shot.anchor_image else "the reference image")
            self._anchors[key] = self.require_engine().encode_anchor(image, settings)
            while len(self._anchors) > 4:
                self._anchors.popitem(last=False)
        return self._anchors[key]

    def _take_frames(self, shot_id: str, take_id: str) -> np.ndarray:
        if take_id not in self._frames:
            self._remember_frames(take_id, self.store.frames(shot_id, take_id))
        self._frames.move_to_end(take_id)
        return self._frames[take_id]

    def _remember_frames(self, take_id: str, frames: np.ndarray) -> None:
        self._frames[take_id] = frames
        while len(self._frames) > 2:  # memory must not grow with the film's length
            self._frames.popitem(last=False)

    # -- the film -----------------------------------------------------------------------------

    def film_segments(self, strict: bool = True) -> list[FilmSegment]:
        """The selected takes in film order with the frames each contributes.

        Each take is cut with the stitching rule it was rendered under (`kept_range`, the
        one function preview and export share). strict: every shot must have a usable take;
        otherwise shots without one are skipped (a preview of the film so far).
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
            chosen.append((index, shot, take))
        segments, cursor = [], 0
        for position, (index, shot, take) in enumerate(chosen):
            rule = StitchRule(**take.stitch_rule)
            start, end = kept_range(position, len(chosen), take.num_frames, rule)
            segments.append(FilmSegment(index, shot.id, take, start, end, film_start=cursor))
            cursor += end - start
        return segments

    def preview(self, out_path: str | Path | None = None) -> Path | None:
        """Write the stitched film so far (shots with takes) to preview.mp4; None if nothing yet."""
        from .export import export_film

        segments = self.film_segments(strict=False)
        if not segments:
            return None
        out_path = Path(out_path or self.root / "preview.mp4")
        export_film(self, out_path, segments=segments, quality="preview", write_timeline=False)
        return out_path

    def export(self, out_path: str | Path, audio: str | Path | None = None, crossfade: float = 0.0,
               scale: float = 1.0) -> dict[str, Any]:
        """Export the whole film (see export.py). Returns the timeline written beside it."""
        from .export import export_film

        return export_film(self, Path(out_path), audio=audio, crossfade=crossfade, scale=scale)


MAX_TAKE_NOTE = 280  # characters of a take's note (a short remark, shown under its thumbnail)
MAX_TEXT_CHARS = 100_000  # longer prompts are refused (they would bloat project.json and every status call)
LONG_PROMPT_CHARS = 2_000  # about the 512 tokens Wan's text encoder reads


def clean_text(value: Any, what: str, notices: list[str] | None = None) -> str:
    """User text as it will be stored: kept literally (never parsed or evaluated), except
    lone UTF-16 surrogates (they cannot be written as UTF-8, so one would make every later
    save of the project fail), which become U+FFFD. Adds notices to `notices`; raises
    ProjectError for text over MAX_TEXT_CHARS."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ProjectError(f"{what} is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}. Shorten it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a high+low pair becomes its real character, a lone half becomes U+FFFD.
        text = text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")
        if notices is not None:
            notices.append(f"{what} held characters that are not valid text (lone surrogates); "
                           "they were replaced with \ufffd.")
    if notices is not None and len(text) > LONG_PROMPT_CHARS and "prompt" in what:
        notices.append(f"{what} is {len(text):,} characters; the model reads only about the first "
                       f"{LONG_PROMPT_CHARS:,} (512 tokens). The rest is kept but has no effect.")
    return text


OUT_OF_MEMORY_ADVICE = ("Turn on CPU offload (offload \"model\", or \"group\" on 24 GB cards, in the model preset) "
                        "or lower the resolution or the frames per shot, then render again; finished shots are kept.")


@contextmanager
def _out_of_memory_as_message(settings: ClipSettings) -> Iterator[None]:
    """Any engine's out-of-memory error as engines.base.OutOfMemory with advice the user can act on."""
    try:
        yield
    except OutOfMemory as error:
        text = str(error)
        raise OutOfMemory(text if "offload" in text else f"{text.rstrip('.')}. {OUT_OF_MEMORY_ADVICE}") from None
    except (torch.OutOfMemoryError, MemoryError) as error:
        _free_accelerator_memory()
        where = "the GPU" if isinstance(error, torch.OutOfMemoryError) else "this machine"
        raise OutOfMemory(f"{where} ran out of memory rendering {settings.width}x{settings.height}, "
                          f"{settings.num_frames} frames. {OUT_OF_MEMORY_ADVICE}") from None
    except RuntimeError as error:
        if "out of memory" not in str(error).lower():
            raise
        _free_accelerator_memory()
        raise OutOfMemory(f"the accelerator ran out of memory rendering {settings.width}x{settings.height}, "
                          f"{settings.num_frames} frames. {OUT_OF_MEMORY_ADVICE}") from None


def _free_accelerator_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_setting_names(changes: dict[str, Any]) -> None:
    """SettingsError for names ClipSettings does not have (a typo like "step" would otherwise do nothing)."""
    known = set(ClipSettings.__dataclass_fields__)
    unknown = sorted(str(name) for name in changes if name not in known)
    if unknown:
        raise SettingsError(f"unknown setting {', '.join(repr(n) for n in unknown)}; "
                            f"the settings are: {', '.join(sorted(known))}.")

