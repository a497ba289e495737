"""Rendering one shot: the unit of GPU work (one `@spaces.GPU` call on a Space).

`ShotRenderer.render_shot(index)` does, in order:
    1. gather what the clip depends on: the shot's settings, prompt, seed, its
       conditions (anchor image, end frame, pose video from `Shot.media`), the
       upstream take's motion state and kept frames (read before any GPU time);
    2. build one `ClipRequest` and call `engine.generate_clip` (out-of-memory errors
       become `OutOfMemory` with advice);
    3. score the seam against the upstream take's kept frames;
    4. write the take (atomic) and select it; on a failed save, undo both.

It caches the encoded anchors (a few, by image and resolution) and the decoded frames
of the last two takes, so a job of consecutive shots reads each clip once.
"""

from __future__ import annotations

import logging
from dataclasses import replace
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from ..engines.base import Anchor, CancelToken, OutOfMemory
from ..engines.live_preview import PreviewingStepCallback
from ..engines.request import ANCHOR_IMAGE, ClipRequest
from ..motion import MotionState
from ..project.model import ProjectError, Shot, Take
from ..project.store import image_fingerprint, to_jsonable
from ..reference import load_reference
from ..seams import seam_score, tail_window
from ..settings import ClipSettings, normalise_settings, validate_seed
from .events import ClipEvent, StepCallback, StepEvent

if TYPE_CHECKING:
    from ..director import Director

log = logging.getLogger(__name__)

OUT_OF_MEMORY_ADVICE = ("Turn on CPU offload (offload \"model\", or \"group\" on 24 GB cards, in the model preset) "
                        "or lower the resolution or the frames per shot, then render again; finished shots are kept.")
# The draft engine has no model to offload: it runs on the CPU, in this machine's memory.
DRAFT_OUT_OF_MEMORY_ADVICE = ("The draft engine works in this machine's memory: lower the resolution or the frames "
                              "per shot (or close other programs), then render again; finished shots are kept.")


class ShotRenderer:
    """Renders shots of one Director's project with its engine."""

    def __init__(self, director: "Director"):
        self.director = director
        self._anchors: OrderedDict[tuple, Anchor] = OrderedDict()
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()  # take id → its last kept frames (seams; small LRU)

    @property
    def store(self):
        return self.director.store

    def forget_anchors(self) -> None:
        """Drop the encoded anchors (the reference or a shot's anchor image changed)."""
        self._anchors.clear()

    def render_shot(self, index: int, cancel: CancelToken | None = None, on_step: StepCallback | None = None,
                    job_index: int = 0, job_size: int = 1, seed: int | None = None) -> ClipEvent:
        """Render one clip for shot `index` with its current prompt and seed; select the new take.

        seed: render with this seed instead of the shot's (a re-roll); it becomes the shot's
        seed only together with the new take — if no take comes, the shot keeps its old seed.
        Raises Cancelled (leaving no take behind) if `cancel` is set between steps.
        """
        shot = self.director.shot(index)
        if seed is None:
            return self._render(index, cancel, on_step, job_index, job_size)
        previous_seed, shot.seed = shot.seed, validate_seed(seed)
        try:
            return self._render(index, cancel, on_step, job_index, job_size)
        except BaseException:
            if shot.seed == seed:
                shot.seed = previous_seed
            raise

    def _render(self, index: int, cancel: CancelToken | None, on_step: StepCallback | None,
                job_index: int, job_size: int) -> ClipEvent:
        director, store = self.director, self.store
        project = director.project
        shot = director.shot(index)
        engine = director.require_engine()
        director.check_ready([index])
        # 1. What this clip depends on.
        settings, _ = normalise_settings(director.shot_settings(shot))
        prompt = director.shot_prompt(shot)
        upstream_take: str | None = None
        motion_in: MotionState | None = None
        if index > 0:
            upstream = project.shots[index - 1]
            if upstream.selected_take is None:
                raise ProjectError(f"shot {index} has no take yet; shot {index + 1} continues from it.")
            upstream_take = upstream.selected_take
            motion_in = store.motion_out(upstream.id, upstream_take)
        rule = engine.stitch_rule(settings)
        before = None
        if upstream_take is not None:  # read (and check) the upstream clip before spending GPU time
            upstream_shot = project.shots[index - 1]
            before = self.take_frames(upstream_shot.id, upstream_take)  # its last kept frames
        recipe = director.recipe(shot)
        conditions = director.conditions.load(index, shot, settings)

        # 2. Generate. A PreviewingStepCallback as on_step also asks the engine for live previews.
        report = on_step.on_step if isinstance(on_step, PreviewingStepCallback) else on_step

        def step(done: int, total: int) -> None:
            if report is not None:
                report(StepEvent(index, shot.id, done, total, job_index, job_size))

        engine_step = replace(on_step, on_step=step) if isinstance(on_step, PreviewingStepCallback) else step

        director.rendering.add(shot.id)
        try:
            with out_of_memory_as_message(settings, engine.is_draft):
                anchor = self.anchor(shot, settings)
                if ANCHOR_IMAGE in shot.media:
                    conditions[ANCHOR_IMAGE] = anchor.image
                request = ClipRequest(anchor, motion_in, prompt, project.negative_prompt, shot.seed, settings,
                                      conditions)
                started_at, started = time.time(), time.perf_counter()
                clip = engine.generate_clip(request, on_step=engine_step, cancel=cancel)
            generated, finished_at = time.perf_counter(), time.time()

            # 3. Seam against the upstream take's kept frames, on the rows that show the picture.
            seam = None
            if before is not None:
                rows = engine.picture_rows(settings.height, settings.width)
                seam = {"upstream_take": upstream_take,
                        "score": seam_score(before[:, rows], clip.frames[rule.drop_head:, rows])}

            # 4. Write the take (atomic), then select it. started_at/finished_at (epoch seconds) bracket
            # generate_clip: the load test checks with them that renders never overlap.
            take = Take(
                id=store.new_take_id(), shot_id=shot.id, created=store.now(), prompt=prompt,
                shot_prompt=shot.prompt, negative_prompt=project.negative_prompt, seed=shot.seed,
                settings=settings.to_dict(), engine=engine.describe(), recipe=recipe,
                upstream_take=upstream_take,
                motion_in_fingerprint=motion_in.fingerprint() if motion_in is not None else None,
                motion_out_fingerprint=clip.motion_out.fingerprint(), num_frames=int(clip.frames.shape[0]),
                fps=settings.fps, width=int(clip.frames.shape[2]), height=int(clip.frames.shape[1]),
                has_latents=clip.latents is not None, stitch_rule=rule.to_dict(), seam=seam,
                info=to_jsonable({**clip.info, **({"media": dict(shot.media)} if shot.media else {}),
                                  "recipe_settings": sorted(engine.used_settings(settings, frozenset(shot.media)))}),
                timings={"generate_s": round(generated - started, 3), "started_at": round(started_at, 3),
                         "finished_at": round(finished_at, 3)},
            )
            store.write_take(take, clip.frames, clip.motion_out, motion_in, clip.latents)
            take.timings["write_s"] = round(time.perf_counter() - generated, 3)
            try:
                store.update_take(take)
            except OSError as error:  # the timing is a nicety; the take itself is complete
                log.warning("could not add timings to take %s: %s", take.id, error)
            self._select_new_take(shot, take)
        finally:
            director.rendering.discard(shot.id)
        self.remember_frames(take.id, clip.frames[slice(*tail_window(len(clip.frames), rule.drop_tail))].copy())
        return ClipEvent(index, shot.id, take.id, str(store.clip_path(shot.id, take.id)),
                         seam["score"] if seam else None, take.timings, job_index, job_size)

    def _select_new_take(self, shot: Shot, take: Take) -> None:
        """Add a just-written take to its shot and save; if the save fails (disk full), undo both:
        the previous take stays selected and no folder of the new take is left behind.

        If another program saved project.json while the clip rendered, the take is added to
        the project as it is on disk now (its edits are kept; the shot is found by id, whoever
        re-read the file: this call, or another thread sharing the Director). A shot deleted
        meanwhile gets no take: its folder is removed and ProjectError says so."""
        self.store.refresh()
        current = next((s for s in self.director.project.shots if s.id == shot.id), None)
        if current is None:
            self.store.delete_take_files(shot.id, take.id)
            raise ProjectError("this shot was deleted by another program while it rendered; "
                               "its new clip was not kept.")
        if current is not shot:  # the project was re-read while the clip rendered
            current.seed = take.seed  # a re-roll's seed lived only on the replaced copy (as adopt_take does)
            shot = current
        before = (list(shot.takes), shot.selected_take)
        shot.takes.append(take.id)
        shot.selected_take = take.id
        try:
            self.store.save()
        except BaseException:
            shot.takes, shot.selected_take = before
            self.store.delete_take_files(shot.id, take.id)
            raise

    # -- inputs ---------------------------------------------------------------------------------

    def anchor(self, shot: Shot, settings: ClipSettings) -> Anchor:
        """The encoded anchor of a shot: its own anchor image, else the project's reference."""
        own = shot.media.get(ANCHOR_IMAGE)
        path = self.store.safe_path(own or self.director.project.reference)
        key = (image_fingerprint(path), settings.width, settings.height)
        if key not in self._anchors:
            # The stored file may come from an imported bundle: it is opened as untrusted as an upload.
            image, _ = load_reference(path, name="the anchor image" if own else "the reference image")
            self._anchors[key] = self.director.require_engine().encode_anchor(image, settings)
            while len(self._anchors) > 4:
                self._anchors.popitem(last=False)
        return self._anchors[key]

    def take_frames(self, shot_id: str, take_id: str) -> np.ndarray:
        if take_id not in self._frames:
            self.remember_frames(take_id, self.store.seam_frames(shot_id, take_id))
        self._frames.move_to_end(take_id)
        return self._frames[take_id]

    def remember_frames(self, take_id: str, frames: np.ndarray) -> None:
        self._frames[take_id] = frames
        while len(self._frames) > 2:  # memory must not grow with the film's length
            self._frames.popitem(last=False)


@contextmanager
def out_of_memory_as_message(settings: ClipSettings, is_draft: bool = False) -> Iterator[None]:
    """Any engine's out-of-memory error as engines.base.OutOfMemory with advice the user can act on
    (is_draft: the engine runs on the CPU, so no GPU or offload advice)."""
    advice = DRAFT_OUT_OF_MEMORY_ADVICE if is_draft else OUT_OF_MEMORY_ADVICE
    what = f"{settings.width}x{settings.height}, {settings.num_frames} frames"
    try:
        yield
    except OutOfMemory as error:
        text = str(error)
        raise OutOfMemory(text if "offload" in text and not is_draft else f"{text.rstrip('.')}. {advice}") from None
    except (torch.OutOfMemoryError, MemoryError) as error:
        _free_accelerator_memory()
        where = "the GPU" if isinstance(error, torch.OutOfMemoryError) and not is_draft else "this machine"
        raise OutOfMemory(f"{where} ran out of memory rendering {what}. {advice}") from None
    except RuntimeError as error:
        if "out of memory" not in str(error).lower():
            raise
        _free_accelerator_memory()
        where = "this machine" if is_draft else "the accelerator"
        raise OutOfMemory(f"{where} ran out of memory rendering {what}. {advice}") from None


def _free_accelerator_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
