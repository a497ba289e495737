"""Two programs on one project folder: the app (a folder opened in place with --projects-dir)
and the CLI, or two Directors of one project. What one of them saved must survive the other's
next save (ProjectStore.refresh: the render loop refreshes before each shot, the take record
after a clip, the app before every event).

Without the refresh, each of these loses an edit: the second writer saves its stale copy over
the first writer's project.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from svi_studio import cli
from svi_studio.director import Director
from svi_studio.project.model import ProjectError
from svi_studio.ui import projects
from svi_studio.ui.sessions import SessionRegistry

from conftest import make_reference

TINY = {"width": 64, "height": 48, "num_frames": 9}


def make_film(root: Path, draft, prompts: list[str]) -> Director:
    return Director.create(root, draft, reference=make_reference(96, 64), prompts=prompts, settings=TINY)


def while_each_clip_renders(monkeypatch, draft, action) -> None:
    """Run `action()` after the draft engine made a clip and before its take is recorded."""
    generate = type(draft).generate_clip

    def generate_then_act(self, *args, **kwargs):
        clip = generate(self, *args, **kwargs)
        action()
        return clip

    monkeypatch.setattr(type(draft), "generate_clip", generate_then_act)


def on_disk(root: Path) -> dict:
    return json.loads((root / "project.json").read_text())


def test_an_edit_in_the_app_keeps_what_the_cli_saved_meanwhile(tmp_path, draft):
    """The app has the folder open; the CLI edits shot 2; then the person edits shot 1 in the page."""
    make_film(tmp_path / "films" / "trip", draft, ["one", "two", "three"])
    registry = SessionRegistry(tmp_path / "data", draft)
    token = projects.open_folder(registry, tmp_path / "films", "trip").token

    assert cli.main(["set-shot", str(tmp_path / "films" / "trip"), "--shot", "2", "--prompt", "from the terminal"]) == 0

    session = registry.get(token)  # the page's next event
    assert session.director.project.shots[1].prompt == "from the terminal"  # the page shows the CLI's edit
    session.director.set_shot(0, prompt="from the app")
    prompts = [shot["prompt"] for shot in on_disk(tmp_path / "films" / "trip")["shots"]]
    assert prompts == ["from the app", "from the terminal", "three"]


def test_a_render_follows_edits_another_program_saves_between_shots(tmp_path, draft):
    """The CLI renders the film; meanwhile the app edits shot 3 and renames the film."""
    root = tmp_path / "film"
    renderer = make_film(root, draft, ["one", "two", "three"])
    app = Director.open(root, draft)
    events = renderer.render()
    first = next(event for event in events if event.kind == "clip")
    assert first.shot_index == 0
    assert app.refresh()  # as the page does before every event: it now lists shot 1's take
    app.set_shot(2, prompt="three, rewritten in the app")
    app.set_story(name="Renamed in the app")
    rest = [event for event in events if event.kind == "clip"]

    assert [event.shot_index for event in rest] == [1, 2]
    project = Director.open(root, draft).project
    assert project.name == "Renamed in the app"
    assert project.shots[2].prompt == "three, rewritten in the app"
    third = renderer.store.take(project.shots[2].id, project.shots[2].selected_take)
    assert third.shot_prompt == "three, rewritten in the app"  # rendered with the recipe it had when its turn came
    assert [status.status for status in Director.open(root, draft).statuses()] == ["fresh"] * 3


def test_a_take_recorded_after_an_edit_made_while_its_clip_rendered_keeps_the_edit(tmp_path, draft, monkeypatch):
    root = tmp_path / "film"
    renderer = make_film(root, draft, ["one", "two"])
    app = Director.open(root, draft)
    while_each_clip_renders(monkeypatch, draft, lambda: app.set_shot(1, prompt="typed while shot 1 rendered"))
    event = renderer.render_shot(0)

    shots = on_disk(root)["shots"]
    assert shots[1]["prompt"] == "typed while shot 1 rendered"
    assert shots[0]["selected_take"] == event.take_id and shots[0]["takes"] == [event.take_id]
    assert renderer.project.shots[1].prompt == "typed while shot 1 rendered"  # the renderer's copy caught up


def test_a_take_is_kept_when_another_thread_re_read_the_project_while_its_clip_rendered(tmp_path, draft,
                                                                                         monkeypatch):
    """One Director shared by two threads: the page's event re-reads project.json (after the CLI
    saved) while the render thread's clip is generating. The take must land in the new copy."""
    root = tmp_path / "film"
    shared = make_film(root, draft, ["one", "two"])
    terminal = Director.open(root, draft)
    def terminal_edits_then_page_refreshes():
        terminal.set_shot(1, prompt="from the terminal")
        assert shared.refresh()  # what the page's next event does, on its own thread

    while_each_clip_renders(monkeypatch, draft, terminal_edits_then_page_refreshes)
    event = shared.render_shot(0, seed=11)

    for project in (shared.project, Director.open(root, draft).project):
        assert project.shots[0].takes == [event.take_id] and project.shots[0].selected_take == event.take_id
        assert project.shots[0].seed == 11  # the re-roll's seed came with its take
        assert project.shots[1].prompt == "from the terminal"


def test_a_shot_deleted_elsewhere_while_it_renders_keeps_no_take(tmp_path, draft, monkeypatch):
    root = tmp_path / "film"
    renderer = make_film(root, draft, ["one", "two"])
    list(renderer.render())
    doomed = renderer.project.shots[1].id
    before = set((root / "takes" / doomed).iterdir())
    app = Director.open(root, draft)
    while_each_clip_renders(monkeypatch, draft, lambda: app.delete_shot(1))
    with pytest.raises(ProjectError, match="deleted by another program while it rendered"):
        renderer.render_shot(1, seed=7)

    assert [shot["prompt"] for shot in on_disk(root)["shots"]] == ["one"]
    assert not [p for p in (root / "takes" / doomed).glob("*") if p not in before and not p.name.startswith(".")]
    assert [shot.prompt for shot in renderer.project.shots] == ["one"]


def test_a_project_file_broken_by_hand_leaves_the_open_session_working(tmp_path, draft):
    make_film(tmp_path / "films" / "trip", draft, ["one"])
    registry = SessionRegistry(tmp_path / "data", draft)
    token = projects.open_folder(registry, tmp_path / "films", "trip").token
    (tmp_path / "films" / "trip" / "project.json").write_text("{ half typed")

    session = registry.get(token)
    assert [shot.prompt for shot in session.director.project.shots] == ["one"]
