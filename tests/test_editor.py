"""The studio as an editor: shots addressed by id and revision, undo/redo, truthful state.

Studio-level tests run the page's handlers in this process on the draft engine at a tiny
size; the stale-revision refusals also go through gradio_client against a served app.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

from svi_studio.project.history import HISTORY_FILE, History  # noqa: E402
from svi_studio.project.status import RENDERING  # noqa: E402
from svi_studio.ui import jobs, runtime, views  # noqa: E402
from svi_studio.ui.app import build_app  # noqa: E402
from svi_studio.ui.presenter import REGENERATE, REGENERATE_LOCKED, card_key  # noqa: E402
from svi_studio.ui.studio import Studio  # noqa: E402

from conftest import serve_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")  # gr.Warning outside a request

PROMPTS = ["one: a cat wakes", "two: it jumps", "three: it runs", "four: it sleeps"]


@pytest.fixture(scope="module")
def draft():
    engine, _ = runtime.get_engine("draft")
    return engine


@pytest.fixture
def studio(draft, tmp_path) -> Studio:
    return Studio(draft, tmp_path, max_shots=6)


def film(studio: Studio, reference, prompts=PROMPTS, render: bool = False):
    """A session whose page shows a film of `prompts` (rendered when asked)."""
    session = studio.registry.create()
    director = session.director
    director.set_reference(reference)
    director.update_settings(num_frames=9, width=128, height=80)
    director.set_shot(0, prompt=prompts[0])
    for prompt in prompts[1:]:
        director.add_shot(prompt)
    if render:
        list(jobs.render_all(session))
    studio.view(session, "")
    return session


def form_of(studio: Studio, session, **changes) -> tuple:
    """The form as the page holds it now (what it was last sent), with `changes` typed in."""
    values = {key: session.shown.get(key) for key in studio.form_keys}
    values.update(changes)
    return tuple(values[key] for key in studio.form_keys)


def act(studio: Studio, session, form: tuple, kind: str, slot: int, shot_id: str, revision, value=None):
    """A card action as the page sends it: the card's shot id and the revision the page saw."""
    from svi_studio.ui.editing import parse_card_action

    raw = json.dumps({"do": kind, "shot": slot, "id": shot_id, "rev": revision, "value": value, "n": 1})
    action = parse_card_action(raw, studio.max_shots)
    handlers = {"up": lambda s: studio.move_shot(s, action.shot_id, -1, action.revision),
                "down": lambda s: studio.move_shot(s, action.shot_id, 1, action.revision),
                "delete": lambda s: studio.delete_shot(s, action.shot_id, action.revision),
                "insert": lambda s: studio.insert_after(s, action.shot_id, action.revision),
                "take": lambda s: studio.select_take(s, action.shot_id, action.value)}
    outputs = studio.page(session.token, form, handlers[kind])
    return outputs[1]["value"] if isinstance(outputs[1], dict) else None


def prompts_of(session) -> list[str]:
    return [shot.prompt for shot in session.director.project.shots]


def saved_prompts(session) -> list[str]:
    data = json.loads((session.project_dir / "project.json").read_text())
    return [shot["prompt"] for shot in data["shots"]]


# -- 1. shots addressed by id, never by position ----------------------------------------------------


def test_text_typed_into_a_card_lands_on_the_shot_it_showed_after_a_move(studio, reference_image):
    """↑ Up on shot 4, then typing in card 3 before the page got the reply: the text is shot 3's."""
    session = film(studio, reference_image)
    ids = [s.id for s in session.director.project.shots]
    before_move = form_of(studio, session)  # the page as it was when Up was clicked
    revision = session.shown["revision"]
    act(studio, session, before_move, "up", 3, ids[3], revision)
    assert [s.id for s in session.director.project.shots] == [ids[0], ids[1], ids[3], ids[2]]
    # Card 3 still shows shot 3 on the page (the reply had not arrived): its id box says so.
    typed = form_of(studio, session, **{"c2.prompt": "typed into card 3", "c2.id": ids[2],
                                        "c3.prompt": PROMPTS[3], "c3.id": ids[3]})
    studio.page(session.token, typed, studio.sync)
    assert saved_prompts(session) == [PROMPTS[0], PROMPTS[1], PROMPTS[3], "typed into card 3"]


def test_a_second_up_against_the_old_revision_is_refused_and_says_where_the_shot_is(studio, reference_image):
    session = film(studio, reference_image)
    ids = [s.id for s in session.director.project.shots]
    form, revision = form_of(studio, session), session.shown["revision"]
    first = act(studio, session, form, "up", 3, ids[3], revision)
    second = act(studio, session, form, "up", 3, ids[3], revision)  # the double click, same page state
    assert "moved to position 3" in first
    assert "the film changed" in second.lower() and "now shot 3" in second
    assert [s.id for s in session.director.project.shots] == [ids[0], ids[1], ids[3], ids[2]]


@pytest.mark.parametrize("kind", ["up", "down", "delete", "insert"])
def test_structural_edits_against_an_older_revision_change_nothing(studio, reference_image, kind):
    session = film(studio, reference_image)
    ids = [s.id for s in session.director.project.shots]
    old_form, old_revision = form_of(studio, session), session.shown["revision"]
    act(studio, session, old_form, "down", 0, ids[0], old_revision)  # someone else's edit first
    before = session.director.project.to_dict()["shots"]
    message = act(studio, session, old_form, kind, 1, ids[1], old_revision)
    assert "the film changed" in message.lower()
    assert session.director.project.to_dict()["shots"] == before


def test_content_edits_with_an_older_revision_still_apply_to_their_shot(studio, reference_image):
    """Typing, then clicking ↑ Up before the reply: the typed text bumped the revision, but the
    shots did not move, so the Up is not refused."""
    session = film(studio, reference_image)
    ids = [s.id for s in session.director.project.shots]
    revision = session.shown["revision"]
    studio.page(session.token, form_of(studio, session, **{"c1.prompt": "two, edited"}), studio.sync)
    message = act(studio, session, form_of(studio, session), "up", 1, ids[1], revision)
    assert "moved to position 1" in message
    assert prompts_of(session)[0] == "two, edited"


def test_an_edit_to_a_deleted_shot_is_reported_and_lands_nowhere(studio, reference_image):
    session = film(studio, reference_image)
    ids = [s.id for s in session.director.project.shots]
    page_before = form_of(studio, session)
    act(studio, session, page_before, "delete", 1, ids[1], session.shown["revision"])
    typed = list(page_before)
    typed[studio.form_keys.index("c1.prompt")] = "typed into the deleted shot"
    outputs = studio.page(session.token, tuple(typed), studio.sync)
    assert "was deleted" in outputs[1]["value"] and "typed into the deleted shot" in outputs[1]["value"]
    assert saved_prompts(session) == [PROMPTS[0], PROMPTS[2], PROMPTS[3]]


# -- 2. structure edits answer at once --------------------------------------------------------------


def test_a_move_replies_before_the_preview_is_rewritten(studio, reference_image, monkeypatch):
    session = film(studio, reference_image, PROMPTS[:3], render=True)
    ids = [s.id for s in session.director.project.shots]
    director = session.director
    slow_preview = director.preview

    def preview(path=None):
        time.sleep(1.0)  # a long film's re-encode
        return slow_preview(path)

    monkeypatch.setattr(director, "preview", preview)
    started = time.perf_counter()
    act(studio, session, form_of(studio, session), "down", 0, ids[0], session.shown["revision"])
    assert time.perf_counter() - started < 0.5
    session.preview.wait(10)
    assert session.preview_path.is_file()


# -- 3. undo / redo ------------------------------------------------------------------------------------


def test_undo_brings_a_deleted_shot_back_with_its_takes_and_redo_deletes_it_again(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:3], render=True)
    director = session.director
    deleted = director.project.shots[1]
    take_folder = director.store.take_dir(deleted.id, deleted.selected_take)
    message = act(studio, session, form_of(studio, session), "delete", 1, deleted.id, session.shown["revision"])
    assert message.startswith("Shot 2 deleted") and "Undo" in message
    assert take_folder.is_dir()  # kept while undo can bring the shot back
    outputs = studio.page(session.token, form_of(studio, session), studio.undo)
    assert "Undid the delete of shot 2" in outputs[1]["value"]
    restored = director.project.shots[1]
    assert (restored.id, restored.prompt, restored.selected_take) == (deleted.id, deleted.prompt, deleted.selected_take)
    assert director.statuses()[1].clip_path  # its clip plays again
    studio.page(session.token, form_of(studio, session), studio.redo)
    assert [s.prompt for s in director.project.shots] == [PROMPTS[0], PROMPTS[2]]


def test_undo_covers_moves_inserts_prompt_edits_and_take_selection(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:2], render=True)
    director = session.director
    first_take = director.project.shots[0].selected_take
    list(jobs.regenerate(session, 0))  # a second take of shot 1
    studio.view(session, "")
    ids = [s.id for s in director.project.shots]
    states = [director.project.to_dict()["shots"]]

    def do(action):
        studio.page(session.token, form_of(studio, session), action)
        states.append(director.project.to_dict()["shots"])

    do(lambda s: studio.select_take(s, ids[0], first_take))
    do(lambda s: studio.move_shot(s, ids[1], -1, None))
    do(lambda s: studio.insert_after(s, ids[0], None))
    studio.page(session.token, form_of(studio, session, **{"c0.prompt": "two, retold"}), studio.sync)
    states.append(director.project.to_dict()["shots"])

    def comparable(shots):
        return [(s["id"], s["prompt"], s["selected_take"], s["seed"]) for s in shots]

    for expected in reversed(states[:-1]):
        studio.page(session.token, form_of(studio, session), studio.undo)
        assert comparable(director.project.to_dict()["shots"]) == comparable(expected)
    outputs = studio.page(session.token, form_of(studio, session), studio.undo)
    assert "nothing to undo" in outputs[1]["value"]
    for expected in states[1:]:
        studio.page(session.token, form_of(studio, session), studio.redo)
        assert comparable(director.project.to_dict()["shots"]) == comparable(expected)


def test_history_survives_a_reload_keeps_twenty_steps_and_frees_takes_it_no_longer_needs(draft, tmp_path,
                                                                                          reference_image):
    studio = Studio(draft, tmp_path, max_shots=6)
    session = film(studio, reference_image, PROMPTS[:3], render=True)
    doomed = session.director.project.shots[2]
    folder = session.director.store.take_dir(doomed.id, doomed.selected_take)
    studio.page(session.token, form_of(studio, session), lambda s: studio.delete_shot(s, doomed.id, None))
    for number in range(35):  # more steps than the history keeps
        studio.page(session.token, form_of(studio, session, **{"c0.prompt": f"edit {number}"}), studio.sync)
    history = json.loads((session.project_dir / HISTORY_FILE).read_text())
    assert len(history["undo"]) >= 20 and not any("delete" in step["label"] for step in history["undo"])
    assert not folder.exists()  # the delete fell off the history: its takes are gone

    studio2 = Studio(draft, tmp_path, max_shots=6)  # a server restart
    reopened = studio2.registry.get(session.token)
    for _ in range(20):
        studio2.page(reopened.token, form_of(studio2, reopened), studio2.undo)
    assert reopened.director.project.shots[0].prompt == "edit 14"


def test_a_damaged_history_file_loses_undo_not_the_project(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:2])
    (session.project_dir / HISTORY_FILE).write_text("{not json")
    history = History(session.director.store)
    assert history.next_undo() is None
    assert [s.prompt for s in session.director.project.shots] == PROMPTS[:2]


# -- 4. truthful state ---------------------------------------------------------------------------------


def test_after_cancel_no_shot_is_left_rendering(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:2])

    class CancelAtFirstStep:
        def __call__(self, fraction, desc=None):
            session.cancel.set()

    pages = list(studio.page_job(session.token, form_of(studio, session),
                                 lambda s: jobs.render_all(s, CancelAtFirstStep())))
    assert RENDERING not in [status.status for status in session.director.statuses()]
    last_head = [update for update in pages[-1][2:] if isinstance(update, dict) and "rendering" in str(update)]
    assert not last_head, "the last page of a cancelled job still shows a shot rendering"


def test_rerolling_a_locked_unchanged_shot_is_refused_without_a_new_take(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:2], render=True)
    director = session.director
    director.set_shot(0, seed_locked=True)
    before = director.project.to_dict()["shots"]
    from svi_studio.ui import editing

    outputs = list(studio.page_job(session.token, form_of(studio, session), lambda s: (
        editing.check_reroll(s.director, 0), jobs.regenerate(s, 0))[1]))
    assert "seed is locked" in outputs[-1][1]["value"] and "Lock seed" in outputs[-1][1]["value"]
    assert director.project.to_dict()["shots"] == before
    assert [s.status for s in director.statuses()] == ["fresh", "fresh"]
    assert session.shown["c0.regen"] == (REGENERATE_LOCKED, False)  # the button says so
    director.set_shot(0, prompt="one, changed")  # a changed recipe is re-rendered even when locked
    editing.check_reroll(director, 0)
    studio.view(session, "")
    assert session.shown["c0.regen"] == (REGENERATE, True)


def test_the_card_shows_the_selected_takes_seed_and_prompt(studio, reference_image):
    session = film(studio, reference_image, PROMPTS[:1], render=True)
    director = session.director
    shot = director.project.shots[0]
    old_take, old_seed = shot.selected_take, shot.seed
    studio.page(session.token, form_of(studio, session, **{"c0.prompt": "one, rewritten"}), studio.sync)
    list(jobs.regenerate(session, 0))
    studio.view(session, "")
    assert session.shown["c0.seed"] != str(old_seed)
    act(studio, session, form_of(studio, session), "take", 0, shot.id, None, value=old_take)
    assert session.shown["c0.seed"] == str(old_seed)
    assert session.shown["c0.prompt"] == PROMPTS[0]
    assert director.statuses()[0].status == "fresh"


def test_the_summary_lists_every_shot_that_will_render_and_stale_shots_show_their_planned_time(studio,
                                                                                               reference_image):
    session = film(studio, reference_image, PROMPTS[:3], render=True)
    studio.page(session.token, form_of(studio, session, **{"c0.prompt": "one, retold"}), studio.sync)
    assert "to render: shot 1, 2, 3" in session.shown["film"]
    ids = [s.id for s in session.director.project.shots]
    studio.page(session.token, form_of(studio, session), lambda s: studio.delete_shot(s, ids[1], None))
    planned = session.director.planned_seconds()
    head = session.shown[card_key(1, "head")]
    assert f"≈ {views.seconds(planned[1][0])}–{views.seconds(planned[1][1])} s (planned)" in head, head


# -- 5. busy states --------------------------------------------------------------------------------------


def test_page_jobs_get_gradios_progress_tracker(draft, tmp_path):
    """A page job's progress parameter must be one Gradio passes (a positional one)."""
    import gradio as gr
    from gradio.helpers import special_args

    demo = build_app("draft", tmp_path / "data", max_shots=2)
    jobs_with_progress = [fn for fn in demo.fns.values() if fn.fn is not None and "progress" in fn.fn.__code__.co_varnames]
    assert jobs_with_progress
    for fn in jobs_with_progress:
        inputs, progress_index, *_ = special_args(fn.fn, inputs=[None] * len(fn.inputs))
        assert progress_index is not None and isinstance(inputs[progress_index], gr.Progress), fn.name


# -- the API: ids and revisions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(draft, tmp_path_factory):
    with serve_app("draft", tmp_path_factory.mktemp("svi-editor"), max_shots=6) as served:
        yield served


def test_api_refuses_structural_edits_against_a_stale_revision_and_edits_to_deleted_shots(server):
    url, _ = server
    client = Client(url, verbose=False)
    client.predict("", api_name="/new_project")
    status = client.predict(PROMPTS, api_name="/set_shots")
    ids = [shot["shot_id"] for shot in status["shots"]]
    stale = status["revision"]
    status = client.predict(ids[3], -1, stale, api_name="/move_shot")
    assert [shot["shot_id"] for shot in status["shots"]] == [ids[0], ids[1], ids[3], ids[2]]
    for name, args in (("/move_shot", (ids[3], -1, stale)), ("/delete_shot", (ids[0], stale)),
                       ("/insert_shot", (ids[0], stale))):
        with pytest.raises(Exception, match="(?i)the film changed"):
            client.predict(*args, api_name=name)
    unchanged = client.predict(api_name="/status")
    assert [shot["shot_id"] for shot in unchanged["shots"]] == [ids[0], ids[1], ids[3], ids[2]]

    status = client.predict(ids[1], unchanged["revision"], api_name="/delete_shot")
    with pytest.raises(Exception, match="no longer exists"):
        client.predict(ids[1], "text for a deleted shot", api_name="/edit_shot")
    with pytest.raises(Exception, match="(?i)revision must be a whole number"):
        client.predict(ids[0], None, api_name="/delete_shot")
    status = client.predict(api_name="/undo")
    assert [shot["shot_id"] for shot in status["shots"]] == [ids[0], ids[1], ids[3], ids[2]]
    status = client.predict(ids[1], "two, by id", api_name="/edit_shot")
    assert status["shots"][1]["prompt"] == "two, by id"
