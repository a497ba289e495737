"""Render jobs: "Render all" and "Regenerate (from here)", one GPU call per shot.

A job is a generator of `JobUpdate`s: one when a shot starts (so its card can show
"rendering"), one as soon as its clip is on disk (the card shows the clip), and a
last one when the job ends (done or cancelled). The film preview is re-encoded in a
background thread while the next shot renders (it lags one shot behind during a
job and is complete at its end), so neither the clip nor the GPU waits for it. The
planning follows Director.render / Director.regenerate: shots are re-planned after
every clip, so a shot made stale by the clip before it is rendered too — the planning
is the Director's own (`plan_render`, `plan_regenerate`, `next_shot`). Each shot is
rendered by `runtime.render_shot` (its own `@spaces.GPU` call on a Space); the new
take is then adopted into the session's own Director (`Director.adopt_take`), which
never left this process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..director import ClipEvent, Director, RenderPlan
from ..engines.base import Cancelled
from ..project.model import ProjectError
from . import runtime
from .sessions import Session

log = logging.getLogger(__name__)

MAX_RENDERS_PER_SHOT = 3  # a shot that stays stale after this many renders in one job stops the job


@dataclass
class JobUpdate:
    """kind: "start" (shot `shot_index` begins), "clip" (its clip is on disk), "done", "cancelled"."""

    kind: str
    shot_index: int | None
    done: int
    total: int
    event: ClipEvent | None = None


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


def render_all(session: Session, progress: Any = None) -> Iterator[JobUpdate]:
    """Render every missing, stale or broken shot in film order."""
    with session.lock:
        plan = session.director.plan_render()
    yield from _run(session, "render", plan, progress)


def regenerate(session: Session, index: int, cascade: bool = False, progress: Any = None) -> Iterator[JobUpdate]:
    """A new take of shot `index` from the stored motion of the shot before it (see
    Director.plan_regenerate: new seed unless locked, saved only with the new take)."""
    with session.lock:
        plan = session.director.plan_regenerate(index, cascade=cascade)
    yield from _run(session, "regenerate", plan, progress)


def _run(session: Session, kind: str, plan: RenderPlan, progress: Any) -> Iterator[JobUpdate]:
    director = session.director
    total = plan.size
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
                index = director.next_shot(plan, rendered)
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
                                            seed=plan.seeds.get(shot.id))
            except Cancelled:
                director.rendering.discard(shot.id)  # before the last update: its badge shows its real state
                preview.wait()
                yield JobUpdate("cancelled", index, len(rendered), total)
                return
            finally:
                director.rendering.discard(shot.id)
            with session.lock:
                director.adopt_take(event.shot_id, event.take_id)
            plan.seeds.pop(event.shot_id, None)
            rendered.append(event.take_id)
            preview.request()
            yield JobUpdate("clip", director.project.shot_index(event.shot_id), len(rendered), total, event)
        preview.wait()
        yield JobUpdate("done", None, len(rendered), len(rendered))
    finally:
        preview.wait()
        session.job = None
        session.cancel.clear()
