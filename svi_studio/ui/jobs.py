"""Render jobs: "Render all" and "Regenerate (from here)", one GPU call per shot.

A job is a generator of `JobUpdate`s: one when a shot starts (so its card can show
"rendering"), one as soon as its clip is on disk (the card shows the clip), and a
last one when the job ends (done or cancelled). The film preview is re-encoded in a
background thread while the next shot renders (it lags one shot behind during a
job and is complete at its end), so neither the clip nor the GPU waits for it. The
planning follows Director.render / Director.regenerate: shots are re-planned after
every clip, so a shot made stale by the clip before it is rendered too. Each shot is
rendered by `runtime.render_shot` (its own `@spaces.GPU` call on a Space); the new
take is then adopted into the session's own Director, which never left this process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..director import ClipEvent, Director
from ..engines.base import Cancelled
from ..project.model import ProjectError, random_seed
from ..project.status import BROKEN, MISSING, STALE
from . import runtime
from .sessions import Session

log = logging.getLogger(__name__)

NEEDS_RENDER = (MISSING, STALE, BROKEN)
MAX_RENDERS_PER_SHOT = 3  # a shot that stays stale after this many renders in one job stops the job


@dataclass
class JobUpdate:
    """kind: "start" (shot `shot_index` begins), "clip" (its clip is on disk), "done", "cancelled"."""

    kind: str
    shot_index: int | None
    done: int
    total: int
    event: ClipEvent | None = None


Planner = Callable[[list[str]], "int | None"]


class PreviewWriter:
    """Rewrites one session's film preview in a background thread; requests made while it
    runs fold into one more run, so the preview ends up showing the latest film."""

    def __init__(self, director: Director, path: Path):
        self.director, self.path = director, path
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def request(self) -> None:
        with self._lock:
            self._wanted.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="svi-preview", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._wanted.is_set():
                    return
                self._wanted.clear()
            try:
                self.director.preview(self.path)
            except Exception:  # a failed preview must not end the job; the clips are safe on disk
                log.exception("could not write the film preview %s", self.path)


def adopt_take(director: Director, event: ClipEvent) -> None:
    """Make the take a GPU call wrote the selected take of its shot in `director`.

    The GPU call saved the take with its own copy of the project (on ZeroGPU, in
    another process); this Director may hold edits made meanwhile, so the take is
    merged in rather than the project reloaded."""
    index = director.project.shot_index(event.shot_id)
    shot = director.project.shots[index]
    take = director.store.take(shot.id, event.take_id)
    if event.take_id not in shot.takes:
        shot.takes.append(event.take_id)
    shot.selected_take = event.take_id
    shot.seed = take.seed
    director.store.broken_takes.pop(event.take_id, None)
    director.store.save()


def render_all(session: Session, progress: Any = None) -> Iterator[JobUpdate]:
    """Render every missing, stale or broken shot in film order."""
    director = session.director
    with session.lock:
        pending = director.pending()
        director.check_ready(pending)

    def plan(rendered: list[str]) -> int | None:
        return next(iter(director.pending()), None)

    yield from _run(session, "render", plan, max(1, len(pending)), progress)


def regenerate(session: Session, index: int, cascade: bool = False, progress: Any = None) -> Iterator[JobUpdate]:
    """A new take of shot `index` from the stored motion of the shot before it.

    New seed unless the shot's seed is locked; it is saved with the new take, so a
    cancelled or failed re-roll leaves the shot as it was (same seed, still fresh). With
    `cascade`, the shots after it that become stale (or are missing) are rendered too."""
    director = session.director
    with session.lock:
        shot = director.shot(index)
        if index > 0 and director.project.shots[index - 1].selected_take is None:
            raise ProjectError(f"shot {index} has no take yet; render it first (shot {index + 1} continues from it).")
        director.check_ready([index])
        new_seed = shot.seed if shot.seed_locked else random_seed()
        later_ids = {s.id for s in director.project.shots[index + 1:]}
        total = 1 + (sum(1 for i in range(index + 1, len(director.project.shots))) if cascade else 0)

    def plan(rendered: list[str]) -> int | None:
        if not rendered:
            return director.project.shot_index(shot.id)
        if not cascade:
            return None
        start = director.project.shot_index(shot.id) + 1
        for later in range(start, len(director.project.shots)):
            if director.project.shots[later].id in later_ids and director.shot_status(later)[0] in NEEDS_RENDER:
                return later
        return None

    yield from _run(session, "regenerate", plan, total, progress, seeds={shot.id: new_seed})


def _run(session: Session, kind: str, plan: Planner, total: int, progress: Any,
         seeds: dict[str, int] | None = None) -> Iterator[JobUpdate]:
    """seeds: shot id → seed for that shot's next render in this job (a re-roll)."""
    director = session.director
    seeds = dict(seeds or {})
    if session.job is not None:
        raise ProjectError(f"this project is already rendering ({session.job}); wait for it or cancel it.")
    session.job = kind
    rendered: list[str] = []
    renders_of: dict[str, int] = {}
    preview = PreviewWriter(director, session.preview_path)
    try:
        while True:
            if session.cancel.is_set():
                preview.wait()
                yield JobUpdate("cancelled", None, len(rendered), total)
                return
            with session.lock:
                index = plan(rendered)
                if index is None:
                    break
                director.check_ready([index])
                shot = director.shot(index)
                renders_of[shot.id] = renders_of.get(shot.id, 0) + 1
                if renders_of[shot.id] > MAX_RENDERS_PER_SHOT:
                    raise ProjectError(f"shot {index + 1} stays stale after {MAX_RENDERS_PER_SHOT} renders; "
                                       "check its prompt and settings, then render again.")
                director.rendering.add(shot.id)
            total = max(total, len(rendered) + 1)
            try:
                yield JobUpdate("start", index, len(rendered), total)
                event = runtime.render_shot(director, index, session.cancel, progress, len(rendered), total,
                                            seed=seeds.get(shot.id))
            except Cancelled:
                preview.wait()
                yield JobUpdate("cancelled", index, len(rendered), total)
                return
            finally:
                director.rendering.discard(shot.id)
            with session.lock:
                adopt_take(director, event)
            seeds.pop(event.shot_id, None)
            rendered.append(event.take_id)
            preview.request()
            yield JobUpdate("clip", director.project.shot_index(event.shot_id), len(rendered), total, event)
        preview.wait()
        yield JobUpdate("done", None, len(rendered), len(rendered))
    finally:
        preview.wait()
        session.job = None
        session.cancel.clear()
