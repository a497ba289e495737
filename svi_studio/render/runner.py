"""The render runner: the one loop that renders a job of shots, for the CLI, the API and the UI.

    for event in run_job(director, plan, render_one, cancel):
        ...   # ShotStarted, ClipEvent (take on disk and selected), then one DoneEvent

The plan is the Director's (`plan_render`, `plan_regenerate`); the next shot is
re-planned after every clip (`Director.next_shot`), so a shot made stale by the clip
before it is rendered too. `render_one(index, job_index, job_size, seed)` renders one
shot and returns its ClipEvent; there are two ways of calling it:

    in process      Director.render_shot (the CLI, the Python API, the app on a workstation)
    GPU unit        ui.runtime.render_shot: one @spaces.GPU call per shot on a ZeroGPU Space,
                    the take then adopted into the session's own Director

`lock` (the UI session's lock) is held while planning, never while a clip renders.
A shot that stays stale after MAX_RENDERS_PER_SHOT renders in one job stops the job
(something about it changes on every render). Cancel ends the job at the next
denoising step, or before the next shot; finished clips are kept.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator

from ..engines.base import Cancelled, CancelToken
from ..project.model import ProjectError
from .events import ClipEvent, DoneEvent, RenderEvent, RenderPlan, ShotStarted

if TYPE_CHECKING:
    from ..director import Director

MAX_RENDERS_PER_SHOT = 3

RenderOne = Callable[[int, int, int, "int | None"], ClipEvent]


def run_job(director: "Director", plan: RenderPlan, render_one: RenderOne, cancel: CancelToken | None = None,
            lock: ContextManager[Any] | None = None) -> Iterator[RenderEvent]:
    """Render the shots of `plan` one by one; yield ShotStarted / ClipEvent per shot, then DoneEvent."""
    lock = lock if lock is not None else nullcontext()
    rendered: list[str] = []
    renders_of: dict[str, int] = {}
    with lock:
        planned = {shot.id for shot in director.project.shots}  # shots appended later join once they have a prompt
    while True:
        if cancel is not None and cancel.is_set():
            yield DoneEvent(rendered=rendered, cancelled=True)
            return
        # 1. The next shot, planned under the lock (the page may be editing meanwhile) on
        # project.json as it is now (another program, e.g. the app on a folder this CLI renders,
        # may have saved edits since the last clip).
        with lock:
            director.refresh()
            index = director.next_shot(plan, rendered)
            if index is None:
                break
            if director.shot(index).id not in planned and not director.shot(index).prompt.strip():
                break  # a blank shot added while this job ran: the user has not written it yet
            director.check_ready([index])
            shot = director.shot(index)
            renders_of[shot.id] = renders_of.get(shot.id, 0) + 1
            if renders_of[shot.id] > MAX_RENDERS_PER_SHOT:
                raise ProjectError(f"shot {index + 1} stays stale after {MAX_RENDERS_PER_SHOT} renders; "
                                   "check its prompt and settings, then render again.")
            director.rendering.add(shot.id)
        size = max(plan.size, len(rendered) + 1)
        # 2. Render it (in process or as one GPU call).
        try:
            yield ShotStarted(index, shot.id, len(rendered), size)
            event = render_one(index, len(rendered), size, plan.seeds.get(shot.id))
        except Cancelled:
            director.rendering.discard(shot.id)  # before the last event: the shot's badge shows its real state
            yield DoneEvent(rendered=rendered, cancelled=True)
            return
        finally:
            director.rendering.discard(shot.id)
        plan.seeds.pop(shot.id, None)
        rendered.append(event.take_id)
        yield event
    yield DoneEvent(rendered=rendered)
