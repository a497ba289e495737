"""The engine every session shares, and the unit of GPU work: one shot.

One engine per process, loaded once (Spaces load it at import of the app) and shared
by all sessions. Renders run one at a time: the Gradio events that render share one
concurrency group of size 1, and `GPU_LOCK` guards the engine for callers outside
the queue.

`render_shot_on_gpu` renders one shot and is the function a Hugging Face ZeroGPU
Space runs on its GPU, once per shot, under `@spaces.GPU(duration=...)`. ZeroGPU runs
it in a forked worker process and pickles its arguments and result, so it takes and
returns plain data: the project folder, the shot, a picklable cancel flag, the
progress object; it opens the project from disk itself and returns a result dict
instead of raising: a user error travels back as its message and class name and is
raised again here as the same kind of `UserError`.
Without the `spaces` package the decorator is a no-op and the same code runs in
process.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from ..director import ClipEvent, Director, StepEvent
from ..engines import load_engine
from ..engines.base import Cancelled, Engine, EngineError
from ..errors import UserError
from ..project.model import ProjectError
from ..settings import normalise_settings
from . import live
from .gpu import estimate_seconds

log = logging.getLogger(__name__)

try:  # Hugging Face Spaces: a no-op outside ZeroGPU hardware
    import spaces  # type: ignore

    gpu_task = spaces.GPU
    HAS_SPACES = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_SPACES = False

    def gpu_task(task=None, *, duration=None, size=None):  # noqa: D103 - same shape as spaces.GPU
        if task is None:
            return lambda fn: fn
        return task


GPU_LOCK = threading.Lock()
_ENGINES: dict[str, Engine] = {}
_ENGINE_NOTES: dict[str, str | None] = {}
_LOAD_LOCK = threading.Lock()


def get_engine(name: str) -> tuple[Engine, str | None]:
    """(engine, note) for engine preset `name`, loaded once per process.

    note: a sentence for the banner when the engine asked for could not be used as is
    (the draft engine missing from this build falls back to the tiny test engine).
    """
    with _LOAD_LOCK:
        if name not in _ENGINES:
            note = None
            try:
                engine = load_engine(name)
            except ImportError as error:
                if name != "draft":
                    raise
                log.warning("draft engine unavailable (%s); using the tiny test engine", error)
                engine = load_engine("tiny")
                note = "The draft engine is not available in this build, so the tiny test engine runs instead."
            _ENGINES[name] = engine
            _ENGINE_NOTES[name] = note
        return _ENGINES[name], _ENGINE_NOTES[name]


def engine_by_preset(preset_id: str) -> Engine:
    """The loaded engine with this preset id (inside a GPU worker)."""
    for engine in _ENGINES.values():
        if engine.preset_id == preset_id:
            return engine
    raise EngineError(f"engine {preset_id!r} is not loaded in this process.")


# -- the GPU unit ---------------------------------------------------------------------------

# One job renders its shots back to back (its event holds the render slot throughout),
# so one cached project is enough.
_WORKER_DIRECTORS: OrderedDict[str, Director] = OrderedDict()
_WORKER_KEEP = 1


def _worker_director(project_dir: str, engine: Engine) -> Director:
    """The project opened from disk, kept from one shot of a job to the next (with its anchor
    and upstream frames cached) and re-read whenever project.json was saved by another copy
    meanwhile (the session's edits: Director.refresh)."""
    cached = _WORKER_DIRECTORS.get(project_dir)
    if cached is None or cached.engine is not engine:
        _WORKER_DIRECTORS[project_dir] = Director.open(project_dir, engine)
    else:
        cached.refresh()
    _WORKER_DIRECTORS.move_to_end(project_dir)
    while len(_WORKER_DIRECTORS) > _WORKER_KEEP:
        _WORKER_DIRECTORS.popitem(last=False)
    return _WORKER_DIRECTORS[project_dir]


def estimate_shot_seconds(project_dir: str, index: int, shot_id: str, engine_preset: str, *args: Any, **kwargs: Any) -> int:
    """ZeroGPU duration of `render_shot_on_gpu` (same arguments): from the shot's settings."""
    try:
        engine = engine_by_preset(engine_preset)
        director = _worker_director(project_dir, engine)
        settings, _ = normalise_settings(director.shot_settings(director.shot(index)))
        return estimate_seconds(settings, engine.name)
    except Exception:  # an estimate must never fail the call it is estimating
        log.exception("could not estimate the GPU time of shot %s", index + 1)
        return 120


@gpu_task(duration=estimate_shot_seconds)
def render_shot_on_gpu(project_dir: str, index: int, shot_id: str, engine_preset: str, cancel: Any,
                       progress: Any = None, job_index: int = 0, job_size: int = 1,
                       seed: int | None = None) -> dict[str, Any]:
    """Render shot `index` of the project in `project_dir`; one GPU call.

    seed: render with this seed instead of the shot's (a re-roll). It is saved only with
    the new take: a cancelled or failed call leaves the project as it was.

    Returns {"ok": True, "event": ClipEvent fields}, {"ok": False, "error": "cancelled"}, or
    {"ok": False, "error": "user", "type": the UserError's class name, "message": text}.
    """
    director = None
    ok = False
    try:
        engine = engine_by_preset(engine_preset)
        director = _worker_director(project_dir, engine)
        shot = director.shot(index)
        if shot.id != shot_id:
            raise ProjectError("the shots changed while this job was queued; render again.")

        def on_step(event: StepEvent) -> None:
            if progress is None:
                return
            fraction = (job_index + event.step / max(1, event.total_steps)) / max(1, job_size)
            progress(fraction, desc=f"Shot {index + 1} ({job_index + 1} of {job_size}) · "
                                    f"step {event.step}/{event.total_steps}")

        live.BOARD.start(project_dir, index, job_index, job_size)  # the page's live preview and ETA
        event = director.render_shot(index, cancel=cancel, on_step=live.BOARD.callback(project_dir, on_step),
                                     job_index=job_index, job_size=job_size, seed=seed)
        ok = True
        return {"ok": True, "event": event.to_dict()}
    except Cancelled:
        return {"ok": False, "error": "cancelled", "message": "cancelled"}
    except UserError as error:
        return {"ok": False, "error": "user", "type": type(error).__name__, "message": str(error)}
    finally:
        live.BOARD.finish(project_dir)
        if not ok:  # nothing was saved: drop the cached copy, the next call reopens the project
            _WORKER_DIRECTORS.pop(project_dir, None)


def render_shot(director: Director, index: int, cancel: Any, progress: Any = None,
                job_index: int = 0, job_size: int = 1, seed: int | None = None) -> ClipEvent:
    """Render one shot through the GPU unit (with `seed` for a re-roll); raise Cancelled / the
    engine's error on failure.

    Holds GPU_LOCK for the call (taken here, outside the forked worker, so a worker
    never inherits a held lock).
    """
    shot = director.shot(index)
    with GPU_LOCK:
        result = render_shot_on_gpu(str(director.root), index, shot.id, director.engine.preset_id, cancel,
                                    progress, job_index, job_size, seed)
    if result["ok"]:
        return ClipEvent(**result["event"])
    if result["error"] == "cancelled":
        raise Cancelled()
    raise _user_error_class(result.get("type"))(result["message"])


def _user_error_class(name: str | None) -> type[UserError]:
    """The UserError subclass called `name` (so callers can still tell OutOfMemory from a
    bad setting); EngineError when it is not one this process knows."""
    found, pending = {}, [UserError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found.get(name or "", EngineError)
