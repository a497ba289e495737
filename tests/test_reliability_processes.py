"""Two processes on one project, and saves that fail: by class of failure.

1. Another process renders (it holds the render lock): opening the project (`status` in
   another terminal, the app) leaves its partial take alone and saves nothing; a second
   render is refused with a message naming the renderer's pid and changes nothing; once the
   renderer is gone (even by SIGKILL) the next open sweeps what it left. Real second
   processes (subprocess), not threads.
2. A failed save changes nothing: when project.json cannot be written (disk full, permission)
   the in-memory project returns to what is on disk, for every kind of edit.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svi_studio import cli
from svi_studio.director import Director
from svi_studio.project import store as store_module
from svi_studio.project.status import FRESH
from svi_studio.project.store import OWNER_FILE, PARTIAL_PREFIX, ProjectBusy, ProjectStore, StorageError, render_lock

from conftest import make_reference

TINY = {"width": 64, "height": 48, "num_frames": 9}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, draft) -> Path:
    """A 2-shot draft film whose second shot has two takes."""
    root = tmp_path_factory.mktemp("rendered") / "film"
    director = Director.create(root, draft, reference=make_reference(96, 64), prompts=["one", "two"], settings=TINY)
    list(director.render())
    list(director.regenerate(1))
    return root


@pytest.fixture
def root(tmp_path, rendered) -> Path:
    import shutil

    shutil.copytree(rendered, tmp_path / "film")
    return tmp_path / "film"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def partials(root: Path) -> list[Path]:
    return sorted(root.glob(f"takes/*/{PARTIAL_PREFIX}*"))


# == 1. two processes ==============================================================================

CHILD = r"""
import os, sys, time, pathlib
mode, root, marker, go = sys.argv[1], *map(pathlib.Path, sys.argv[2:5])

def wait_here(what):
    marker.write_text(what)
    while not go.exists():
        time.sleep(0.02)

if mode == "render":  # a real re-roll, paused once its clip is written into the partial folder
    import svi_studio.project.store as store
    from svi_studio.director import Director
    from svi_studio.engines.draft import DraftEngine
    real = store.write_mp4
    def write_mp4(path, *args, **kwargs):
        real(path, *args, **kwargs)
        wait_here("clip written into the partial folder")
    store.write_mp4 = write_mp4
    list(Director.open(root, DraftEngine()).regenerate(1))
else:  # hold the lock with a partial of our own, as a render does between its clip and its rename
    from svi_studio.project.store import PARTIAL_PREFIX, _write_owner, render_lock
    with render_lock(root):
        partial = next(root.glob("takes/*")) / f"{PARTIAL_PREFIX}child"
        partial.mkdir()
        _write_owner(partial)
        (partial / "clip.mp4").write_bytes(b"half a clip")
        wait_here("holding the lock")
"""


class Child:
    """A second process on the project; waits at its marker until `release()`."""

    def __init__(self, tmp: Path, mode: str, root: Path):
        self.marker, self.go = tmp / f"marker-{mode}", tmp / f"go-{mode}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(root), str(self.marker), str(self.go)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while not self.marker.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"child ended early: {self.process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "child never reached its marker"
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> int:
        self.go.write_text("go")
        return self.process.wait(timeout=120)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def __del__(self):
        if self.process.poll() is None:
            self.kill()


def status_in_another_process(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "svi_studio", "status", str(root)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_status_while_another_process_renders_keeps_its_partial_and_the_render_finishes(tmp_path, root, draft):
    selected = json.loads((root / "project.json").read_text())["shots"][1]["selected_take"]
    child = Child(tmp_path, "render", root)
    [partial] = partials(root)
    saved = (root / "project.json").read_bytes()
    done = status_in_another_process(root)
    assert done.returncode == 0, done.stderr
    assert "shot 2: fresh" in done.stdout
    assert Director.open(root, None).statuses()[1].selected_take == selected  # and an open in this process
    assert partial.is_dir() and (partial / "clip.mp4").is_file()  # still there: its writer is alive
    assert (root / "project.json").read_bytes() == saved  # readers saved nothing
    assert child.release() == 0, child.process.stderr.read().decode()[-2000:]
    assert not partials(root)
    director = Director.open(root, draft)
    assert director.project.shots[1].selected_take not in (None, selected)  # the render's take is there and selected
    assert [s.status for s in director.statuses()] == [FRESH, FRESH]


def test_a_second_render_is_refused_with_the_renderers_pid_and_changes_nothing(tmp_path, root, draft, capsys,
                                                                               monkeypatch):
    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.2)
    child = Child(tmp_path, "hold", root)
    before = digest(root)
    for argv in (["regen", str(root), "--shot", "1", "--engine", "draft"], ["render", str(root), "--engine", "draft"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert f"this project is being rendered by another process (pid {child.pid}); wait for it" in err, err
    director = Director.open(root, draft)
    with pytest.raises(ProjectBusy, match=f"pid {child.pid}"):
        list(director.render())
    with pytest.raises(ProjectBusy):
        director.render_shot(0)  # the unit of GPU work the app runs refuses too
    assert digest(root) == before and director.statuses()[0].status == FRESH
    child.release()
    assert [e.shot_index for e in director.regenerate(0) if e.kind == "clip"] == [0]  # free again: it renders


def test_a_killed_renderers_partial_is_swept_by_the_next_open(tmp_path, root):
    child = Child(tmp_path, "hold", root)
    [partial] = partials(root)
    assert status_in_another_process(root).returncode == 0
    ProjectStore.load(root)
    assert partial.is_dir()
    child.kill()  # SIGKILL: no cleanup ran, the kernel dropped its lock
    assert partial.is_dir()
    ProjectStore.load(root)
    assert not partials(root)


def test_while_one_process_renders_a_dead_processes_partial_is_still_swept(tmp_path, root):
    """Partials record pid and host: one whose writer is gone is abandoned even while
    another process holds the lock; one without an owner file is left until the lock is free."""
    child = Child(tmp_path, "hold", root)
    shot_dir = partials(root)[0].parent
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = shot_dir / f"{PARTIAL_PREFIX}orphan"
    orphan.mkdir()
    (orphan / OWNER_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename,
                                                 "started": time.time()}))
    unknown = shot_dir / f"{PARTIAL_PREFIX}unknown"
    unknown.mkdir()
    ProjectStore.load(root)
    assert not orphan.exists() and unknown.is_dir() and (shot_dir / f"{PARTIAL_PREFIX}child").is_dir()
    child.release()
    ProjectStore.load(root)
    assert not partials(root)


def test_the_lock_is_reentrant_in_one_process_and_free_after(root, draft):
    director = Director.open(root, draft)
    with render_lock(root), director.store.render_lock():
        assert [e.shot_index for e in director.regenerate(0) if e.kind == "clip"] == [0]
        assert director.store._recover() is None and director.statuses()[0].status == FRESH
    with render_lock(root, wait_s=0):  # released: taking it again at once works
        pass


# == 2. a failed save changes nothing ================================================================

EDITS = {
    "prompt edit": lambda d: d.set_shot(0, prompt="one, changed"),
    "shot add": lambda d: d.add_shot("three"),
    "take selection": lambda d: d.select_take(1, d.project.shots[1].takes[0]),
    "settings change": lambda d: d.update_settings(steps=3),
    "story and name": lambda d: d.set_story(style_prompt="noir", name="Renamed"),
    "shot move": lambda d: d.move_shot(0, 1),
    "shot delete": lambda d: d.delete_shot(0),
    "take delete": lambda d: d.delete_take(1, d.project.shots[1].takes[0]),
}
ERRORS = {"disk full": (errno.ENOSPC, "the disk is full"), "permission": (errno.EACCES, "permission was denied")}


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("edit", list(EDITS))
def test_a_failed_save_leaves_the_project_as_it_is_on_disk(root, draft, monkeypatch, edit, error):
    director = Director.open(root, draft)
    before, files = director.project.to_dict(), digest(root)
    code, reason = ERRORS[error]
    real = store_module.atomic_write_json

    def failing(path, obj):
        if Path(path).name == "project.json":
            raise OSError(code, os.strerror(code))
        return real(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", failing)
    with pytest.raises(StorageError, match=f"could not save the project: {reason}") as info:
        EDITS[edit](director)
    assert str(root.parent) not in str(info.value)
    on_disk = json.loads((root / "project.json").read_text())
    assert director.project.to_dict() == on_disk == before  # what the app and `status` show is what is on disk
    assert digest(root) == files  # no take file deleted either
    assert [s.status for s in director.statuses()] == [FRESH, FRESH]
    monkeypatch.undo()
    EDITS[edit](director)  # space is back: the same edit works and is saved
    assert ProjectStore.load(root).project.to_dict() == director.project.to_dict() != before
