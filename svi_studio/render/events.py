"""What a render job reports, and what it plans: plain data, shared by the CLI, the API and the UI.

A job (render/runner.py) yields, in order: for each clip a `ShotStarted` then a
`ClipEvent` once its take is on disk, and finally one `DoneEvent`. `StepEvent`s go to
the `on_step` callback while a clip samples. Every event has `kind` and `to_dict()`
(the CLI prints them as JSON lines; ZeroGPU workers pickle them as dicts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable


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
class ShotStarted:
    """A shot begins rendering (a page shows its card as rendering)."""

    shot_index: int
    shot_id: str
    job_index: int
    job_size: int
    kind: str = "start"

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
    media: dict[str, str] = field(default_factory=dict)  # condition role → project-relative file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
RenderEvent = ShotStarted | ClipEvent | DoneEvent
