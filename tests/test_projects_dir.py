"""--projects-dir: project folders made with the CLI, listed in the Projects panel and opened in place.

By class of failure:
1. Listing: only DIR and its direct subfolders holding a regular project.json; a corrupt one is
   listed with its reason; a symlink out of DIR is not listed; a name the client makes up is refused.
2. Linking: the same folder is always the same session; edits land in the folder's project.json;
   a linked render still takes the folder's own render lock (a second process rendering it refuses).
3. Delete, sweep, duplicate: the folder on disk is never removed; a swept link comes back under
   the same token; a duplicate is a copy of its own.
4. app.py: the option is refused on a non-loopback host, with --share, and for a missing folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svi_studio.director import Director
from svi_studio.project.model import ProjectError
from svi_studio.project.store import ProjectBusy
from svi_studio.ui import projects
from svi_studio.ui.sessions import TOKEN_PATTERN, SessionRegistry

from conftest import make_reference

TINY = {"width": 64, "height": 48, "num_frames": 9}
REPO = Path(__file__).resolve().parents[1]


def cli_project(root: Path, draft, name: str, prompts: list[str], render: bool = False) -> Path:
    director = Director.create(root, draft, reference=make_reference(96, 64), prompts=prompts, name=name,
                               settings=TINY)
    if render:
        list(director.render())
    return root


def folder_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def films(tmp_path, draft) -> Path:
    """DIR with two CLI projects, a plain folder, and a folder whose project.json is corrupt."""
    films = tmp_path / "films"
    cli_project(films / "older", draft, "Older film", ["one"])
    time.sleep(0.02)
    cli_project(films / "newer", draft, "Newer film", ["one", "two"])
    (films / "notes").mkdir()
    (films / "notes" / "todo.txt").write_text("not a project")
    (films / "broken").mkdir()
    (films / "broken" / "project.json").write_text("{ not json")
    os.utime(films / "broken" / "project.json", (1, 1))  # the oldest
    return films


@pytest.fixture
def registry(tmp_path, draft) -> SessionRegistry:
    return SessionRegistry(tmp_path / "data", draft)


# == 1. listing ======================================================================================

def test_listing_shows_project_folders_newest_first_and_a_corrupt_one_with_its_reason(films):
    listed = projects.project_folders(films)
    assert [entry.value for entry in listed] == ["newer", "older", "broken"]  # "notes" holds no project
    newer, older, broken = listed
    assert newer.label == "Newer film · 2 shots · newer" and newer.problem is None
    assert older.label == "Older film · 1 shot · older"
    assert broken.problem and "project.json" in broken.problem and "cannot be opened" in broken.label
    assert str(films) not in broken.label  # a name, never a server path


def test_dir_itself_is_listed_when_it_is_a_project(tmp_path, draft):
    root = cli_project(tmp_path / "solo", draft, "Solo", ["one"])
    assert [(e.value, e.label) for e in projects.project_folders(root)] == [(projects.HERE, "Solo · 1 shot · solo")]


def test_symlinks_out_of_dir_are_not_listed_nor_opened(films, tmp_path, draft, registry):
    outside = cli_project(tmp_path / "outside", draft, "Outside", ["one"])
    (films / "sneaky").symlink_to(outside, target_is_directory=True)
    (films / "relinked").mkdir()
    (films / "relinked" / "project.json").symlink_to(outside / "project.json")
    assert {e.value for e in projects.project_folders(films)} == {"newer", "older", "broken"}
    for name in ("sneaky", "relinked", "../outside", str(outside), "notes", None, 3):
        with pytest.raises(ProjectError, match="choose one of the listed project folders"):
            projects.open_folder(registry, films, name)
    assert not (registry.data_dir / "linked.json").exists()  # nothing was linked


def test_a_corrupt_folder_is_refused_with_its_reason_and_leaves_nothing(films, registry):
    before = folder_files(films / "broken")
    with pytest.raises(ProjectError, match="the folder broken cannot be opened: .*project.json"):
        projects.open_folder(registry, films, "broken")
    assert folder_files(films / "broken") == before
    assert list(registry.root.iterdir()) == []


def test_listing_is_capped(tmp_path):
    dir_ = tmp_path / "many"
    for index in range(projects.MAX_FOLDERS + 5):
        (dir_ / f"p{index:03d}").mkdir(parents=True)
        (dir_ / f"p{index:03d}" / "project.json").write_text("{}")
    assert len(projects.project_folders(dir_)) == projects.MAX_FOLDERS


# == 2. linking ======================================================================================

def test_the_same_folder_is_the_same_session_and_edits_land_in_it(films, registry, draft):
    session = projects.open_folder(registry, films, "newer")
    assert TOKEN_PATTERN.fullmatch(session.token) and session.linked
    assert session.project_dir.is_symlink() and session.project_dir.resolve() == (films / "newer").resolve()
    session.director.set_shot(1, prompt="edited in the app")
    session.director.set_story(name="Renamed in the app")
    registry.forget(session.token)  # as after a server restart: the next open reads linked.json
    again = SessionRegistry(registry.data_dir, draft)
    assert projects.open_folder(again, films, "newer").token == session.token
    on_disk = Director.open(films / "newer", draft).project  # the CLI sees the edits
    assert on_disk.shots[1].prompt == "edited in the app" and on_disk.name == "Renamed in the app"
    assert (films / "newer").is_dir() and not (films / "newer").is_symlink()  # renamed the project, not the folder
    assert projects.open_folder(again, films, "older").token != session.token  # one token per folder


def test_a_linked_render_takes_the_folders_own_lock(films, registry):
    """While another process (the CLI) renders the folder, the app's render of it is refused."""
    session = projects.open_folder(registry, films, "older")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom svi_studio.project.store import ProjectStore\n"
         "with ProjectStore.load(sys.argv[1]).render_lock():\n    print('held', flush=True)\n    time.sleep(60)",
         str(films / "older")], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectBusy, match=f"this project is being rendered by another process \\(pid {holder.pid}\\)"):
            list(session.director.render())
    finally:
        holder.kill()
        holder.wait()
    assert not list((films / "older").glob("takes/*/*/clip.mp4"))


def test_a_linked_folder_broken_outside_the_app_drops_out_of_the_browsers_list(films, registry, draft):
    session = projects.open_folder(registry, films, "older")
    stored = projects.remember(None, session.token)
    (films / "older" / "project.json").write_text("{ broken by hand")
    restarted = SessionRegistry(registry.data_dir, draft)
    assert projects.listing(restarted, stored) == []  # the panel still opens
    [older] = [e for e in projects.project_folders(films) if e.value == "older"]
    assert older.problem and "cannot be opened" in older.label


# == 3. delete, sweep, duplicate =====================================================================

def test_delete_removes_the_link_and_never_the_folder(films, tmp_path, draft):
    films_root = tmp_path / "films2"
    cli_project(films_root / "film", draft, "Rendered", ["one"], render=True)
    registry = SessionRegistry(tmp_path / "data2", draft)
    before = folder_files(films_root / "film")
    session = projects.open_folder(registry, films_root, "film")
    (session.exports_dir / "film.mp4").write_bytes(b"an export of the session")
    said = projects.delete(registry, session)
    assert said == "Removed from the app; the folder film on disk was left as it is."
    assert not session.folder.exists()  # the link and the session's exports are gone
    assert folder_files(films_root / "film") == before  # every take and project.json still there
    again = projects.open_folder(registry, films_root, "film")  # it is listed and opens again
    assert again.token == session.token and again.director.project.name == "Rendered"


def test_sweep_drops_an_idle_link_only_and_the_folder_reopens(films, registry):
    session = projects.open_folder(registry, films, "newer")
    before = folder_files(films / "newer")
    assert registry.sweep(max_idle_s=60, now=time.time() + 120) == [session.token]
    assert not session.folder.exists() and registry.get(session.token) is None
    assert folder_files(films / "newer") == before
    assert "newer" in [e.value for e in projects.project_folders(films)]
    assert projects.open_folder(registry, films, "newer").token == session.token


def test_duplicate_of_a_linked_project_is_a_copy_of_its_own(films, registry):
    session = projects.open_folder(registry, films, "newer")
    copy = projects.duplicate(registry, session)
    assert not copy.linked and copy.project_dir.is_dir()
    copy.director.set_shot(0, prompt="only in the copy")
    assert json.loads((films / "newer" / "project.json").read_text())["shots"][0]["prompt"] == "one"


def test_the_linked_folder_does_not_count_towards_the_session_quota(films, tmp_path, draft):
    from svi_studio.ui.serving import MediaShelf

    registry = SessionRegistry(tmp_path / "data", draft, shelf=MediaShelf(tmp_path / "shelf"))
    session = projects.open_folder(registry, films, "newer")
    reference = films / "newer" / session.director.project.reference
    assert registry.shelf.publish(session.token, reference)  # a hard link of a file of the folder
    assert registry.disk_use(session) == 0
    (session.exports_dir / "film.mp4").write_bytes(b"x" * 1000)
    assert registry.disk_use(session) == 1000  # the session's own files still count


# == 4. app.py ======================================================================================

def run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SVI_PROJECTS_DIR": ""})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_are_local(host):
    projects.check_local(host, share=False)


@pytest.mark.parametrize("host,share,why", [("0.0.0.0", False, "instead of '0.0.0.0'"),
                                            ("192.168.1.5", False, "instead of '192.168.1.5'"),
                                            ("127.0.0.1", True, "drop --share")])
def test_a_server_other_machines_reach_is_refused(host, share, why):
    with pytest.raises(ValueError, match="must not be reachable from other machines") as info:
        projects.check_local(host, share)
    assert why in str(info.value)


def test_app_py_refuses_the_option_before_loading_anything(tmp_path):
    remote = run_app("--projects-dir", str(tmp_path), "--host", "0.0.0.0")
    assert remote.returncode == 2 and "must not be reachable from other machines" in remote.stderr
    missing = run_app("--projects-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_launch_refuses_a_public_host_for_an_imported_app(tmp_path, monkeypatch):
    from svi_studio.ui import build_app

    demo = build_app("draft", tmp_path / "data", max_shots=2, projects_dir=tmp_path)
    assert demo.projects_dir == tmp_path.resolve()
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what a Space sets
    with pytest.raises(ValueError, match="must not be reachable from other machines"):
        demo.launch(prevent_thread_lock=True)
    with pytest.raises(ValueError, match="is not a folder"):
        build_app("draft", tmp_path / "data", max_shots=2, projects_dir=tmp_path / "data" / "browser-state.key")
