"""Editing while a render runs (issue 10): shots not rendering right now can be edited and shots
appended; each shot is rendered with the recipe it has when its turn comes; an edited shot earlier
in the film than the rendering one is re-rendered, not skipped; structure edits that would move
shots under the render are refused with a message.

The render is the page's own job (ui/jobs.render_all) on the draft engine, driven step by step:
each `next()` of the job is one page update, so edits land between two clips exactly as a user's
would while the job waits for the next shot.
"""

from __future__ import annotations

import pytest

from svi_studio.project.model import ProjectError
from svi_studio.ui import jobs, runtime
from svi_studio.ui.studio import Studio


@pytest.fixture
def studio_session(tmp_path, reference_image):
    engine, _ = runtime.get_engine("draft")  # the app's engine registry: renders run through ui/runtime.py
    studio = Studio(engine, tmp_path / "app", max_shots=6)
    session = studio.new_project(None).session
    session.director.set_reference(reference_image)
    session.director.update_settings(num_frames=9, fps=8, width=96, height=64)
    prompts = ["a cat wakes up, push in", "it jumps down, pan left", "it meets a dog, tilt up"]
    while len(session.director.project.shots) < len(prompts):
        session.director.add_shot("")
    for index, prompt in enumerate(prompts):
        session.director.set_shot(index, prompt=prompt)
    return studio, session


def run_until_clip(job, shot_index: int) -> None:
    for update in job:
        if update.kind == "clip" and update.shot_index == shot_index:
            return
    raise AssertionError(f"the job ended before shot {shot_index + 1} was rendered")


def selected_prompt(session, index: int) -> str:
    shot = session.director.project.shots[index]
    return session.director.store.take(shot.id, shot.selected_take).shot_prompt


def test_a_later_shot_edited_during_the_render_is_rendered_with_its_new_prompt(studio_session):
    studio, session = studio_session
    job = jobs.render_all(session)
    run_until_clip(job, 0)
    third = session.director.project.shots[2].id
    with session.lock:
        studio.edit_prompt(session, third, "they run off together, pan right")
        studio.add_shot(session)  # appending a shot never moves the one being rendered
        studio.edit_prompt(session, session.director.project.shots[3].id, "sunset, pull back")
    updates = list(job)
    assert updates[-1].kind == "done"
    assert selected_prompt(session, 2) == "they run off together, pan right"
    assert selected_prompt(session, 3) == "sunset, pull back"
    assert [s.status for s in session.director.statuses()] == ["fresh"] * 4


def test_an_earlier_shot_edited_during_the_render_is_rendered_again_not_skipped(studio_session):
    studio, session = studio_session
    job = jobs.render_all(session)
    run_until_clip(job, 1)
    with session.lock:
        studio.edit_prompt(session, session.director.project.shots[0].id, "a cat yawns, push in")
        assert session.director.statuses()[0].status == "stale"
    list(job)
    assert selected_prompt(session, 0) == "a cat yawns, push in"
    assert [s.status for s in session.director.statuses()] == ["fresh"] * 3


def test_structure_edits_under_a_running_render_are_refused_with_a_message(studio_session):
    studio, session = studio_session
    job = jobs.render_all(session)
    run_until_clip(job, 0)
    shots = [shot.id for shot in session.director.project.shots]
    for attempt in (lambda: studio.move_shot(session, shots[1], -1),
                    lambda: studio.delete_shot(session, shots[0]),
                    lambda: studio.insert_after(session, shots[0])):
        with session.lock, pytest.raises(ProjectError, match="while rendering"):
            attempt()
    assert [shot.id for shot in session.director.project.shots] == shots
    list(job)


def test_a_blank_shot_appended_during_the_render_ends_the_job_cleanly(studio_session):
    studio, session = studio_session
    job = jobs.render_all(session)
    run_until_clip(job, 0)
    with session.lock:
        studio.add_shot(session)  # not written yet when the render reaches the end of the film
    updates = list(job)
    assert updates[-1].kind == "done" and updates[-1].done == 3
    assert [s.status for s in session.director.statuses()] == ["fresh", "fresh", "fresh", "missing"]
