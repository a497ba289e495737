"""Render jobs: "Render all" and "Regenerate (from here)", one GPU call per shot.

A job is a generator of `JobUpdate`s: one when a shot starts (so its card can show
"rendering"), one as soon as its clip is on disk (the card shows the clip), and a
last one when the job ends (done or cancelled). The film preview is re-encoded in a
background thread while the next shot renders (it lags one shot behind during a
job and is complete at its end), so neither the clip nor the GPU waits for it. The
planning follows Director.render / Director.regenerate: shots are re-planned after
every clip, so a shot made stale by the clip before it is rendered too. The loop is
the one render runner the CLI and the Python API use (render/runner.py); here each
shot is rendered by `runtime.render_shot` (its own `@spaces.GPU` call on a Space) and
the new take adopted into the session's own Director (`Director.adopt_take`), which
never left this process. This module adds only what a page shows.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..director import ClipEvent, Director, RenderPlan
from ..project.model import ProjectError
from ..render.runner import MAX_RENDERS_PER_SHOT, run_job  # noqa: F401 - re-exported
from . import runtime
from .sessions import Session

log = logging.getLogger(__name__)


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
    if session.job is not None:
        raise ProjectError(f"this project is already rendering ({session.job}); wait for it or cancel it.")
    session.job = kind
    preview = PreviewWriter(director, session.preview_path)

    def render_one(index: int, job_index: int, job_size: int, seed: int | None) -> ClipEvent:
        event = runtime.render_shot(director, index, session.cancel, progress, job_index, job_size, seed=seed)
        with session.lock:
            director.adopt_take(event.shot_id, event.take_id)
        return event

    done, total, current = 0, plan.size, None
    try:
        for event in run_job(director, plan, render_one, session.cancel, lock=session.lock):
            if event.kind == "start":
                total, current = event.job_size, event.shot_index
                yield JobUpdate("start", event.shot_index, done, total)
            elif event.kind == "clip":
                done += 1
                preview.request()
                yield JobUpdate("clip", director.project.shot_index(event.shot_id), done, total, event)
            elif event.cancelled:
                preview.wait()
                yield JobUpdate("cancelled", current, done, total)
            else:
                preview.wait()
                yield JobUpdate("done", None, done, done)
    finally:
        preview.wait()
        session.job = None
        session.cancel.clear()
