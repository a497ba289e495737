"""Live progress of a render job: the clip forming, shot i of N, step j of M, and ETAs.

The render (runtime.render_shot_on_gpu) hands the Director a `PreviewingStepCallback`
made by `LiveBoard.callback`: every step it records the step's time, and every preview
(engines/live_preview.py: the latent projection for the wan engines, real frames for the
draft engine) becomes a small PNG strip kept in memory. The page polls with a gr.Timer
and shows `panel_html` (an inline data: image, so no file is written or served); the
panel's script copies it into the card of the shot that is rendering.

ETAs come from the step times measured in this process for the same number of steps
(median of the latest ones): the shot's remaining steps, and the job's remaining shots
at that many steps each. Where the job ran in a forked ZeroGPU worker, the board stays
empty and the panel shows nothing (the worker's memory is not this process's).
"""

from __future__ import annotations

import base64
import html
import io
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..engines.live_preview import LivePreview, PreviewingStepCallback
from . import views

PREVIEW_HEIGHT = 72  # pixels of the strip image sent to the page
KEPT_STEP_TIMES = 64


@dataclass
class LiveState:
    """What one project's job is doing now."""

    shot_index: int = 0
    job_index: int = 0
    job_size: int = 1
    step: int = 0
    total_steps: int = 0
    step_started: float = 0.0
    image: str | None = None  # data: URL of the latest preview strip
    source: str = ""
    running: bool = False


@dataclass
class LiveBoard:
    """Live states by project folder, and the step times measured by this process."""

    states: dict[str, LiveState] = field(default_factory=dict)
    step_times: dict[int, deque] = field(default_factory=dict)  # total steps → latest step durations (s)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: object = time.perf_counter

    def callback(self, project_dir: str, on_step=None) -> PreviewingStepCallback:
        """The on_step to hand Director.render_shot: records steps and previews for `project_dir`,
        then calls `on_step(StepEvent)` (the job's progress bar) if given."""

        def step(event) -> None:
            now = self.clock()
            with self.lock:
                state = self.states.setdefault(project_dir, LiveState())
                if state.running and state.shot_index == event.shot_index and state.step_started:
                    self.step_times.setdefault(event.total_steps, deque(maxlen=KEPT_STEP_TIMES)).append(
                        now - state.step_started)
                state.shot_index, state.job_index, state.job_size = event.shot_index, event.job_index, event.job_size
                state.step, state.total_steps, state.step_started, state.running = (event.step, event.total_steps,
                                                                                    now, True)
            if on_step is not None:
                on_step(event)

        def preview(shown: LivePreview) -> None:
            image = strip_data_url(shown.frames)
            with self.lock:
                state = self.states.setdefault(project_dir, LiveState())
                state.image, state.source = image, shown.source

        return PreviewingStepCallback(on_preview=preview, on_step=step)

    def start(self, project_dir: str, shot_index: int, job_index: int, job_size: int) -> None:
        """A shot begins: forget the last shot's preview; its step clock starts now."""
        with self.lock:
            self.states[project_dir] = LiveState(shot_index, job_index, job_size, step_started=self.clock(),
                                                 running=True)

    def finish(self, project_dir: str) -> None:
        with self.lock:
            self.states.pop(project_dir, None)

    def seconds_per_step(self, total_steps: int) -> float | None:
        times = self.step_times.get(total_steps)
        return statistics.median(times) if times else None

    def snapshot(self, project_dir: str) -> LiveState | None:
        with self.lock:
            state = self.states.get(project_dir)
            return None if state is None else LiveState(**state.__dict__)


BOARD = LiveBoard()


def strip_data_url(frames: np.ndarray) -> str:
    """uint8 frames (N, h, w, 3) side by side, PREVIEW_HEIGHT high, as a PNG data: URL."""
    strip = np.concatenate(list(frames), axis=1)
    picture = Image.fromarray(strip)
    width = max(1, round(picture.width * PREVIEW_HEIGHT / picture.height))
    picture = picture.resize((width, PREVIEW_HEIGHT), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def eta_seconds(state: LiveState, per_step: float | None) -> tuple[float | None, float | None]:
    """(seconds left in this shot, seconds left in the job) at `per_step` seconds a step."""
    if per_step is None or not state.total_steps:
        return None, None
    shot_left = max(0, state.total_steps - state.step) * per_step
    later_shots = max(0, state.job_size - state.job_index - 1)
    return shot_left, shot_left + later_shots * state.total_steps * per_step


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "measuring…"
    if seconds < 60:
        return f"{views.seconds(round(seconds, 1))} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def panel_html(state: LiveState | None, per_step: float | None) -> str:
    """The live panel: progress text (shot i of N, step j of M, ETAs) and the preview strip."""
    if state is None or not state.running:
        return ""
    shot_left, job_left = eta_seconds(state, per_step)
    steps = f"step {state.step} of {state.total_steps}" if state.total_steps else "starting"
    image = (f'<img class="svi-live-image" src="{state.image}" alt="Live preview of shot {state.shot_index + 1}">'
             if state.image else "")
    kind = {"x0": "latent preview (predicted clean frames)", "latents": "latent preview",
            "frames": "frames so far"}.get(state.source, "")
    return (f'<div class="svi-live" data-shot="{state.shot_index + 1}">'
            f'<div class="svi-live-text"><b>Shot {state.shot_index + 1}</b> · '
            f'<span class="svi-live-job">shot {state.job_index + 1} of {state.job_size}</span> · '
            f'<span class="svi-live-steps">{steps}</span> · '
            f'<span class="svi-live-eta">ETA shot {duration(shot_left)}, job {duration(job_left)}</span></div>'
            f'{image}<div class="svi-live-kind">{html.escape(kind)}</div></div>')


# Copies the panel into the card of the shot that is rendering (and removes stale copies).
PANEL_JS = r"""
const place = () => {
  document.querySelectorAll('.svi-live-card').forEach(x => x.remove());
  const live = element.querySelector('.svi-live');
  if (!live) return;
  const card = document.getElementById(`shot-card-${live.dataset.shot}`);
  if (!card) return;
  const copy = live.cloneNode(true);
  copy.classList.add('svi-live-card');
  copy.id = `shot-${live.dataset.shot}-live`;
  card.prepend(copy);
};
watch('value', place);
place();
"""
