"""Storyboard, take gallery and live progress: the model and store parts (no browser).

Draft engine at 64×48, 9 frames: a render takes a fraction of a second."""

from __future__ import annotations

import json

import numpy as np
import pytest

from svi_studio.director import Director
from svi_studio.engines import load_engine
from svi_studio.engines.live_preview import PreviewingStepCallback
from svi_studio.project.model import ProjectError, Take
from svi_studio.project.store import ProjectStore
from svi_studio.ui import gallery, live, storyboard


@pytest.fixture(scope="module")
def draft():
    return load_engine("draft")


@pytest.fixture
def film(tmp_path, draft, reference_image):
    director = Director.create(tmp_path / "film", draft, reference=reference_image, prompts=["a", "b pan left"])
    director.update_settings(width=64, height=48, num_frames=9)
    list(director.render())
    return director


def test_old_take_json_without_star_or_note_loads_with_defaults(film):
    shot = film.project.shots[0]
    path = film.store.take_dir(shot.id, shot.selected_take) / "take.json"
    data = json.loads(path.read_text())
    data.pop("starred"), data.pop("note")
    take = Take.from_dict(data)
    assert take.starred is False and take.note == ""
    assert Take.from_dict({**data, "starred": "yes", "note": 5}).starred is False  # mistyped: defaults


def test_star_and_note_are_saved_in_take_json_and_change_no_status(film):
    before = [s.status for s in film.statuses()]
    shot = film.project.shots[1]
    film.mark_take(1, shot.selected_take, starred=True, note="  keeper: best paw landing  ")
    reopened = Director.open(film.root, film.engine)
    take = reopened.store.take(shot.id, shot.selected_take)
    assert take.starred is True and take.note == "keeper: best paw landing"
    assert [s.status for s in reopened.statuses()] == before == ["fresh", "fresh"]
    with pytest.raises(ProjectError, match="no take"):
        film.mark_take(1, "nope", starred=True)


def test_delete_take_refuses_the_selected_one_and_removes_another_whole(film):
    shot = film.project.shots[1]
    first = shot.selected_take
    list(film.regenerate(1))
    second = shot.selected_take
    assert second != first
    with pytest.raises(ProjectError, match="select another take"):
        film.delete_take(1, second)
    folder = film.store.take_dir(shot.id, first)
    film.delete_take(1, first)
    assert not folder.exists() and shot.takes == [second]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no trash left behind
    assert Director.open(film.root, film.engine).project.shots[1].takes == [second]


def test_an_interrupted_delete_is_finished_on_load(film):
    shot = film.project.shots[0]
    trash = film.store.take_dir(shot.id, shot.selected_take).parent / ".trash-x-1"
    trash.mkdir()
    (trash / "clip.mp4").write_bytes(b"half")
    ProjectStore.load(film.root)
    assert not trash.exists()


def test_strip_has_a_tile_per_shot_with_id_status_thumbnail_and_film_times(film):
    strip = storyboard.strip_html(film, film.statuses())
    shots = film.project.shots
    for shot in shots:
        assert f'data-shot-id="{shot.id}" data-status="fresh"' in strip.template
        assert (film.store.take_dir(shot.id, shot.selected_take) / storyboard.THUMB_FILE).is_file()
    assert len(strip.files) == 2  # the two thumbnails, published by the presenter
    html = strip.render(lambda path: "/served/" + path.rsplit("/", 3)[-2] + ".jpg")
    assert "gradio_api/file=/served/" in html and "@@svi-media" not in html
    assert 'data-start="0"' in html and 'data-cut="1"' in html
    film.set_shot(0, prompt="changed")
    assert 'data-status="stale"' in storyboard.strip_html(film, film.statuses()).template


def test_user_text_cannot_spell_a_media_mark(film):
    film.set_shot(0, prompt="@@svi-media:0@@ <b>")
    template = storyboard.strip_html(film, film.statuses()).template
    assert "@@svi-media:0@@ <b>" not in template and "&lt;b&gt;" in template


def test_strip_and_gallery_events_become_card_actions():
    move = json.loads(storyboard.strip_action({"do": "down", "shot": 2}))
    assert (move["do"], move["shot"], move["value"]) == ("down", 2, None)
    assert json.loads(storyboard.strip_action({"do": "move", "shot": 0, "to": 3}))["value"] == "3"
    assert storyboard.strip_action({"do": "delete", "shot": 0}) is None
    assert storyboard.strip_action({"do": "up", "shot": "0"}) is None
    assert storyboard.move_offset(1, "3") == 2 and storyboard.move_offset(1, "x") == 0
    note = json.loads(gallery.gallery_action(4, {"do": "note", "take": "t1", "note": "hi"}))
    assert note["shot"] == 4 and json.loads(note["value"]) == {"take": "t1", "note": "hi"}
    assert gallery.gallery_action(0, {"do": "select", "take": "t1"}) is None
    assert gallery.gallery_action(0, {"do": "star"}) is None


def test_gallery_offers_delete_only_for_takes_not_in_use(film):
    list(film.regenerate(1))
    html = gallery.gallery_html(film, 1).template
    assert html.count('class="svi-take ') + html.count('class="svi-take"') == 2
    assert html.count("svi-take-delete") == 1 and "data-tail-url" in html


def test_live_board_reports_steps_previews_and_etas(film):
    board = live.LiveBoard()
    ticks = iter(np.arange(0, 100, 0.5))
    board.clock = lambda: next(ticks)
    seen = []
    callback = board.callback(str(film.root), on_step=seen.append)
    assert isinstance(callback, PreviewingStepCallback)
    board.start(str(film.root), 1, 0, 2)
    film.render_shot(1, on_step=callback, job_index=0, job_size=2)
    assert seen and seen[-1].step == seen[-1].total_steps
    state = board.snapshot(str(film.root))
    assert state.image.startswith("data:image/png;base64,") and state.source == "frames"
    per_step = board.seconds_per_step(state.total_steps)
    assert per_step == pytest.approx(0.5)
    state.step = 0
    shot_left, job_left = live.eta_seconds(state, per_step)
    assert shot_left == pytest.approx(state.total_steps * 0.5) and job_left == pytest.approx(2 * shot_left)
    text = live.panel_html(state, per_step)
    assert "shot 1 of 2" in text and f"step 0 of {state.total_steps}" in text and "ETA shot" in text
    assert "measuring" in live.panel_html(state, None)


def test_settings_the_draft_engine_ignores_do_not_make_takes_stale(film):
    assert [s.status for s in film.statuses()] == ["fresh", "fresh"]
    film.update_settings(steps=30, guidance=7.5)
    assert [s.status for s in film.statuses()] == ["fresh", "fresh"]
    film.update_settings(fps=12)
    assert [s.status for s in film.statuses()] == ["stale", "stale"]


def test_wan_engines_keep_every_setting_they_read_in_the_recipe(tiny_engine):
    used = tiny_engine.used_settings(tiny_engine.default_settings())
    assert "steps" in used and "guidance" in used


@pytest.mark.parametrize("seconds, fps, frames", [(5, 16, 81), (5.06, 16, 81), (1, 16, 17), (0.1, 16, 5), (3, 24, 73)])
def test_shot_length_in_seconds_rounds_to_a_valid_frame_count(seconds, fps, frames):
    from svi_studio.ui.params import frames_for_seconds, shot_seconds

    assert frames_for_seconds(seconds, fps) == frames and (frames - 1) % 4 == 0
    assert frames_for_seconds(shot_seconds(frames, fps), fps) == frames  # what the page shows maps back


@pytest.mark.parametrize("bad", ["abc", None, float("nan"), -2, 0, float("inf")])
def test_shot_length_that_is_not_a_length_is_refused_with_a_message(bad):
    from svi_studio.settings import SettingsError
    from svi_studio.ui.params import frames_for_seconds

    with pytest.raises(SettingsError, match="shot length"):
        frames_for_seconds(bad, 16)
