"""SIGKILL a render mid-clip and mid-write: the project still loads, holds only complete
takes, and resuming renders only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from svi_studio.director import Director
from svi_studio.project.status import FRESH, MISSING
from svi_studio.project.store import PARTIAL_PREFIX, ProjectStore

from test_director import CountingEngine

WORKER = r"""
import sys, time, pathlib
tests_dir, root, marker, mode = sys.argv[1:5]
sys.path.insert(0, tests_dir)
from conftest import make_reference
from svi_studio.engines import load_engine
from svi_studio.director import Director
import svi_studio.project.store as store_module

root, marker = pathlib.Path(root), pathlib.Path(marker)
director = Director.create(root, load_engine("tiny"), reference=make_reference(),
                           prompts=["one", "two", "three"], settings={"num_frames": 13, "steps": 3})

def hold(what):
    marker.write_text(what)
    time.sleep(120)  # the test kills us here

def on_step(event):
    if mode == "step" and event.shot_index == 1 and event.step == 2:
        hold("inside the second clip's denoising loop")

real_write_mp4 = store_module.write_mp4
def write_mp4_then_hold(path, frames, fps, **kwargs):
    real_write_mp4(path, frames, fps, **kwargs)
    if mode == "write" and len(director.project.shots[0].takes) == 1:
        hold("second take half written")
store_module.write_mp4 = write_mp4_then_hold

for event in director.render(on_step=on_step):
    print(event.kind, flush=True)
"""


def run_and_kill(tmp_path: Path, mode: str) -> Path:
    root, marker = tmp_path / "film", tmp_path / "marker"
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", WORKER, tests_dir, str(root), str(marker), mode],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker ended early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("worker never reached the second clip")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return root


@pytest.mark.parametrize("mode", ["step", "write"])
def test_sigkill_during_second_clip_then_resume(tmp_path, mode, tiny_engine):
    root = run_and_kill(tmp_path, mode)
    if mode == "write":
        assert list(root.glob(f"takes/*/{PARTIAL_PREFIX}*")), "the kill should have left a partial take behind"

    store = ProjectStore.load(root)
    assert not list(root.glob(f"takes/*/{PARTIAL_PREFIX}*")), "loading removes partial takes"
    assert store.broken_takes == {}
    first, second, third = store.project.shots
    assert len(first.takes) == 1 and first.selected_take == first.takes[0]
    assert second.takes == [] and third.takes == []
    assert sorted(p.name for p in (root / "takes" / first.id).iterdir()) == [first.selected_take]

    engine = CountingEngine(tiny_engine)
    director = Director(store, engine)
    assert [s.status for s in director.statuses()] == [FRESH, MISSING, MISSING]
    rendered = [e.shot_index for e in director.render() if e.kind == "clip"]
    assert rendered == [1, 2] and len(engine.calls) == 2
    assert [s.status for s in director.statuses()] == [FRESH, FRESH, FRESH]
