"""Faults: a process killed mid-way, a full disk, an out-of-memory GPU, a cancel at any step.

After each one the project loads, holds only complete files under their final names, keeps
every finished take (and the previously selected one, selected), and the next render works.
SIGKILLs hit a worker process at a known point (it writes a marker file and waits there);
tests/test_crash_resume.py covers SIGKILL inside a first render's denoising and take write,
this file a re-roll, the project.json save, an export and a bundle import. The disk-full
test runs once against a real 1 MB tmpfs where mounting is allowed (root), and for every
write stage with a writer patched to raise ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from svi_studio.director import Director
from svi_studio.engines.base import Cancelled, Engine, OutOfMemory
from svi_studio.project.bundle import bundle_project, unbundle_project
from svi_studio.project.status import FRESH, MISSING
from svi_studio.project.store import PARTIAL_PREFIX, ProjectStore, StorageError

from conftest import make_reference
from test_director import CountingEngine

TINY = {"width": 64, "height": 48, "num_frames": 9}
TESTS = Path(__file__).parent


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def partials(root: Path) -> list[Path]:
    return list(root.glob(f"takes/*/{PARTIAL_PREFIX}*"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, draft) -> Path:
    """A 3-shot draft film, rendered and exported once (film.mp4), to copy per test."""
    root = tmp_path_factory.mktemp("base") / "film"
    director = Director.create(root, draft, reference=make_reference(96, 64), prompts=["one", "two", "three"],
                               settings=TINY)
    list(director.render())
    return root


def copy_of(rendered: Path, tmp: Path) -> Path:
    shutil.copytree(rendered, tmp / "film")
    return tmp / "film"


# == SIGKILL =====================================================================================

WORKER = r"""
import os, sys, time, pathlib
mode, root, marker, extra = sys.argv[1:5]
root, marker = pathlib.Path(root), pathlib.Path(marker)

def hold(what):
    marker.write_text(what)
    time.sleep(120)  # the test kills us here

if mode == "export":
    from svi_studio.director import Director
    from svi_studio.project.store import ProjectStore
    real, seen = ProjectStore.iter_frames, set()
    def iter_frames(self, shot_id, take_id, *args):
        seen.add(take_id)
        if len(seen) == 2:  # the writer has started: shot 1's frames are already in the temporary file
            hold("export half written")
        return real(self, shot_id, take_id, *args)
    ProjectStore.iter_frames = iter_frames
    Director.open(root, None).export(extra)
elif mode.startswith("unbundle"):
    import zipfile
    from svi_studio.project import bundle
    from svi_studio.project.store import ProjectStore
    if mode == "unbundle-copy":
        real_open, count = zipfile.ZipFile.open, [0]
        def open_entry(self, *args, **kwargs):
            count[0] += 1
            if count[0] == 3:
                hold("third entry being unpacked")
            return real_open(self, *args, **kwargs)
        zipfile.ZipFile.open = open_entry
    else:
        ProjectStore.load = classmethod(lambda cls, path: hold("staging complete, not renamed yet"))
    bundle.unbundle_project(extra, root)
elif mode == "regen":
    from svi_studio.director import Director
    from svi_studio.engines.draft import DraftEngine
    director = Director.open(root, DraftEngine())
    list(director.regenerate(1, on_step=lambda event: hold("re-roll of shot 2, mid-clip")))
elif mode == "save":
    from svi_studio.director import Director
    from svi_studio.engines.draft import DraftEngine
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("project.json") and list(root.glob("takes/*/*/take.json")):
            hold("take complete, project.json not replaced yet")
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
    list(Director.open(root, DraftEngine()).render())
"""


def kill_at_marker(tmp: Path, mode: str, root: Path, extra: str = "") -> None:
    marker = tmp / f"marker-{mode}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", WORKER, mode, str(root), str(marker), extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while not marker.exists():
            if process.poll() is not None:
                raise AssertionError(f"worker ended early: {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("worker never reached its marker")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("earlier_export", [True, False], ids=["over-an-earlier-export", "first-export"])
def test_sigkill_during_export_leaves_no_half_file_under_the_final_name(tmp_path, rendered, earlier_export):
    root = copy_of(rendered, tmp_path)
    film = tmp_path / "out" / "film.mp4"
    if earlier_export:
        Director.open(root, None).export(film)
        before = {p.name: p.read_bytes() for p in film.parent.iterdir()}
    kill_at_marker(tmp_path, "export", root, str(film))
    visible = sorted(p.name for p in film.parent.iterdir() if not p.name.startswith("."))
    if earlier_export:
        assert visible == ["film.mp4", "film.timeline.json"]
        assert all(film.parent.joinpath(name).read_bytes() == data for name, data in before.items())
    else:
        assert visible == []  # only a hidden temporary, never film.mp4
    assert [p.name for p in film.parent.iterdir() if p.name.startswith(".")]  # the kill did hit mid-write
    timeline = Director.open(root, None).export(film)  # and the next export works
    assert film.stat().st_size > 0 and timeline["frames"] > 0


@pytest.mark.parametrize("mode", ["unbundle-copy", "unbundle-load"])
def test_sigkill_during_bundle_import_creates_no_target_and_the_retry_works(tmp_path, rendered, mode):
    bundle = bundle_project(rendered, tmp_path / "film.zip")
    target = tmp_path / "imported" / "film"
    kill_at_marker(tmp_path, mode, target, str(bundle))
    assert not target.exists()  # not created at all, rather than half there
    leftovers = list(target.parent.glob(".film.unpack-*"))
    assert leftovers  # the staging folder the kill left is hidden beside the target...
    store = unbundle_project(bundle, target)  # ...and ignored by the next try
    assert store.project.to_dict() == ProjectStore.load(rendered).project.to_dict()
    assert [s.status for s in Director.open(target, None).statuses()] == [FRESH] * 3


def test_sigkill_during_a_reroll_keeps_the_selected_take(tmp_path, rendered, draft):
    root = copy_of(rendered, tmp_path)
    before = digest(root)
    kill_at_marker(tmp_path, "regen", root)
    assert digest(root) == before  # not even project.json changed: the new seed is saved with the new take
    director = Director.open(root, draft)
    assert [s.status for s in director.statuses()] == [FRESH] * 3 and not partials(root)
    assert [e.shot_index for e in director.regenerate(1) if e.kind == "clip"] == [1]


def test_sigkill_between_take_and_project_json_adopts_the_complete_take(tmp_path, draft):
    root = tmp_path / "film"
    Director.create(root, draft, reference=make_reference(96, 64), prompts=["one", "two"], settings=TINY)
    kill_at_marker(tmp_path, "save", root)
    assert json.loads((root / "project.json").read_text())["shots"][0]["takes"] == []  # the save never landed
    director = Director.open(root, draft)
    assert [s.status for s in director.statuses()] == [FRESH, MISSING]  # the complete take was adopted
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [1]


# == disk full ===================================================================================

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


STAGES = {
    "clip": ("svi_studio.project.store.write_mp4", None),
    "motion": ("svi_studio.motion.MotionState.save", None),
    "take.json": ("svi_studio.project.store.atomic_write_json", "take.json"),
    "rename": ("svi_studio.project.store.os.replace", None),
    "project.json": ("svi_studio.project.store.atomic_write_json", "project.json"),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_disk_full_while_writing_a_take(tmp_path, rendered, draft, monkeypatch, stage):
    import importlib

    root = copy_of(rendered, tmp_path)
    director = Director.open(root, draft)
    shot = director.project.shots[1]
    selected, seed = shot.selected_take, shot.seed
    before = digest(root)
    target, only = STAGES[stage]
    module_name, attribute = target.rsplit(".", 1)
    try:
        owner = importlib.import_module(module_name)
    except ImportError:  # a class attribute (MotionState.save)
        module_name, class_name = module_name.rsplit(".", 1)
        owner = getattr(importlib.import_module(module_name), class_name)
    real = getattr(owner, attribute)

    def failing(*args, **kwargs):
        if only is None or str(args[0]).endswith(only):
            enospc()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, failing)
    with pytest.raises(StorageError, match="the disk is full.*Nothing was lost"):
        list(director.regenerate(1))
    monkeypatch.undo()
    assert shot.selected_take == selected and shot.seed == seed and shot.takes == [selected]
    assert digest(root) == before and not partials(root)  # no new folder, no partial, nothing changed
    assert [s.status for s in director.statuses()] == [FRESH] * 3
    assert [s.status for s in Director.open(root, draft).statuses()] == [FRESH] * 3
    assert [e.shot_index for e in director.regenerate(1) if e.kind == "clip"] == [1]  # space is back: it works


def test_disk_full_on_a_real_small_filesystem(tmp_path, rendered, draft):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the patched-writer test above covers every stage)")
    try:
        root = mount / "film"
        shutil.copytree(rendered, root)
        director = Director.open(root, draft)
        director.update_settings(width=320, height=192, num_frames=33)
        list(director.render())
        selected = director.project.shots[1].selected_take
        before = digest(root)
        stat = os.statvfs(root)
        (mount / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 8192))
        with pytest.raises(StorageError, match="disk is full"):
            list(director.regenerate(1))
        assert director.project.shots[1].selected_take == selected and digest(root) == before
        assert not partials(root)
        (mount / "filler").unlink()
        assert [e.shot_index for e in director.regenerate(1) if e.kind == "clip"] == [1]
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# == out of GPU memory ============================================================================

class FlakyEngine(CountingEngine):
    """Raises `error` from generate_clip (or encode_anchor) for the next `times` calls."""

    def __init__(self, inner: Engine, error: BaseException, times: int = 1, where: str = "generate"):
        super().__init__(inner)
        self.error, self.times, self.where = error, times, where

    def _maybe_fail(self, where: str) -> None:
        if self.where == where and self.times > 0:
            self.times -= 1
            raise self.error

    def encode_anchor(self, image, settings):
        self._maybe_fail("anchor")
        return super().encode_anchor(image, settings)

    def generate_clip(self, *args, **kwargs):
        self._maybe_fail("generate")
        return super().generate_clip(*args, **kwargs)


OOMS = {
    "torch.OutOfMemoryError": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "generate"),
    "engines.base.OutOfMemory without advice": (OutOfMemory("the GPU ran out of memory"), "generate"),
    "RuntimeError 'out of memory' (MPS, older CUDA)": (RuntimeError("MPS backend out of memory"), "generate"),
    "while encoding the reference": (torch.OutOfMemoryError("CUDA out of memory"), "anchor"),
}


@pytest.mark.parametrize("name", list(OOMS))
def test_out_of_memory_says_what_to_do_and_the_session_keeps_working(tmp_path, rendered, draft, name):
    error, where = OOMS[name]
    root = copy_of(rendered, tmp_path)
    engine = FlakyEngine(draft, error, where=where)
    director = Director.open(root, engine)
    before = digest(root)
    with pytest.raises(OutOfMemory) as info:
        list(director.regenerate(2))
    message = str(info.value)
    assert "resolution" in message and "offload" not in message, message  # the draft engine has nothing to offload
    assert digest(root) == before and not director.rendering
    assert [s.status for s in director.statuses()] == [FRESH] * 3
    assert [e.shot_index for e in director.regenerate(2) if e.kind == "clip"] == [2]  # the next render works
    director.set_shot(1, prompt="two, changed")
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [1, 2]


# == cancel ======================================================================================

class CancelAt:
    """A cancel token set from the step callback: shot `shot_index`, step `step`."""

    def __init__(self, shot_index: int, step: int):
        self.shot_index, self.step, self.flag = shot_index, step, False

    def is_set(self) -> bool:
        return self.flag

    def on_step(self, event) -> None:
        if event.shot_index == self.shot_index and event.step == self.step:
            self.flag = True


@pytest.mark.parametrize("step", [1, 2, 3], ids=["first-step", "middle-step", "last-step"])
def test_cancel_during_a_denoising_step_keeps_finished_shots_only(tmp_path, tiny_engine, step):
    torch.set_num_threads(1)
    director = Director.create(tmp_path / "film", tiny_engine, reference=make_reference(96, 64),
                               prompts=["one", "two", "three"], settings={**TINY, "steps": 3})
    token = CancelAt(shot_index=1, step=step)
    events = list(director.render(cancel=token, on_step=token.on_step))
    assert [e.shot_index for e in events if e.kind == "clip"] == [0]
    assert events[-1].kind == "done" and events[-1].cancelled
    assert [s.status for s in director.statuses()] == [FRESH, MISSING, MISSING]
    second = director.project.shots[1]
    assert not (director.root / "takes" / second.id).exists() or not any((director.root / "takes" / second.id).iterdir())
    assert not partials(director.root)
    reopened = Director.open(director.root, tiny_engine)
    assert [s.status for s in reopened.statuses()] == [FRESH, MISSING, MISSING]
    assert [e.shot_index for e in reopened.render() if e.kind == "clip"] == [1, 2]


@pytest.mark.parametrize("step", [1, 2], ids=["first-chunk", "last-chunk"])
def test_cancel_on_the_draft_engine_never_leaves_a_partial_take(tmp_path, draft, step):
    director = Director.create(tmp_path / "film", draft, reference=make_reference(96, 64),
                               prompts=["one", "two", "three"], settings=TINY)  # 9 frames: 2 chunks
    token = CancelAt(shot_index=1, step=step)
    events = list(director.render(cancel=token, on_step=token.on_step))
    assert events[-1].kind == "done" and events[-1].cancelled
    made = [e.shot_index for e in events if e.kind == "clip"]
    assert made in ([0], [0, 1])  # the shot is either whole (cancel after its last chunk) or absent
    assert [s.status for s in director.statuses()][len(made):] == [MISSING] * (3 - len(made))
    assert not partials(director.root)
    assert [s.status for s in Director.open(director.root, draft).statuses()][: len(made)] == [FRESH] * len(made)


def test_cancelled_reroll_keeps_the_old_take_fresh(tmp_path, rendered, draft):
    root = copy_of(rendered, tmp_path)
    director = Director.open(root, draft)
    before = digest(root)
    token = CancelAt(shot_index=1, step=1)
    events = list(director.regenerate(1, cancel=token, on_step=token.on_step))
    assert events[-1].cancelled and not [e for e in events if e.kind == "clip"]
    assert digest(root) == before and [s.status for s in director.statuses()] == [FRESH] * 3


def test_out_of_memory_through_the_cli_is_a_message_not_a_traceback(tmp_path, rendered, draft, monkeypatch, capsys):
    import svi_studio.engines as engines
    from svi_studio import cli

    root = copy_of(rendered, tmp_path)
    monkeypatch.setattr(engines, "load_engine", lambda name, **kw: FlakyEngine(draft, torch.OutOfMemoryError("CUDA")))
    assert cli.main(["regen", str(root), "--shot", "2", "--json"]) == 1
    error = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert error["type"] == "OutOfMemory" and "resolution" in error["error"] and "offload" not in error["error"]
    assert [s.status for s in Director.open(root, draft).statuses()] == [FRESH] * 3


def test_disk_full_while_exporting_keeps_the_previous_film(tmp_path, rendered, monkeypatch):
    from moviepy import VideoClip

    root = copy_of(rendered, tmp_path)
    film = tmp_path / "out" / "film.mp4"
    Director.open(root, None).export(film)
    before = film.read_bytes()
    real = VideoClip.write_videofile

    def half_then_full(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a film")
        enospc()

    monkeypatch.setattr(VideoClip, "write_videofile", half_then_full)
    with pytest.raises(StorageError, match="could not save the film film.mp4: the disk is full"):
        Director.open(root, None).export(film)
    monkeypatch.setattr(VideoClip, "write_videofile", real)
    assert film.read_bytes() == before and sorted(p.name for p in film.parent.iterdir()) == [
        "film.mp4", "film.timeline.json"]  # no temporary left behind either


def test_cancelled_reroll_in_the_app_keeps_the_old_take_fresh(tmp_path, rendered, draft):
    from svi_studio.ui import jobs
    from svi_studio.ui.sessions import SessionRegistry

    registry = SessionRegistry(tmp_path / "data", draft)
    session = registry.create(lambda root: (shutil.copytree(rendered, root), Director.open(root, draft))[1])
    session.cancel.set()
    updates = list(jobs.regenerate(session, 1))
    assert updates[-1].kind == "cancelled"
    assert [s.status for s in session.director.statuses()] == [FRESH] * 3
