"""The director on the tiny engine: render, re-roll one shot from stored motion, stale
marking, export, bundles. Each test can fail: it checks files, bits and counts."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from svi_studio.director import Director
from svi_studio.engines.base import Engine
from svi_studio.project.bundle import BundleError, bundle_project, unbundle_project
from svi_studio.project.model import ProjectError
from svi_studio.project.status import FRESH, MISSING, STALE
from svi_studio.project.store import PARTIAL_PREFIX, ProjectStore
from svi_studio.stitching import film_frame_count, svi_pro_rule
from svi_studio.video_io import probe

SMALL = {"num_frames": 13, "steps": 1}  # 4 latent frames: enough for m = 1..2, fast on 2 cores
PROMPTS = ["a kitten on a windowsill", "it jumps down", "it meets a dog"]


class CountingEngine(Engine):
    """Wraps an engine and records every generate_clip call (shot prompt, seed, motion_in)."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.calls: list[dict] = []
        self.name, self.label, self.is_draft = inner.name, inner.label, inner.is_draft
        self.preset_id, self.max_area = inner.preset_id, inner.max_area

    def default_settings(self):
        return self.inner.default_settings()

    def stitch_rule(self, settings):
        return self.inner.stitch_rule(settings)

    def encode_anchor(self, image, settings):
        return self.inner.encode_anchor(image, settings)

    @property
    def accepts(self):
        return self.inner.accepts

    def used_settings(self, settings, conditions=frozenset()):
        return self.inner.used_settings(settings, conditions)

    def generate_clip(self, request, on_step=None, cancel=None):
        self.calls.append({"prompt": request.prompt, "seed": request.seed, "motion_in": request.motion_in})
        return self.inner.generate_clip(request, on_step, cancel)


@pytest.fixture
def engine(tiny_engine):
    return CountingEngine(tiny_engine)


@pytest.fixture
def director(tmp_path, engine, reference_image):
    return Director.create(tmp_path / "film", engine, reference=reference_image, prompts=PROMPTS,
                           style_prompt="Pixar look", settings=SMALL)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def statuses(director):
    return [s.status for s in director.statuses()]


def test_render_then_regenerate_middle_shot_from_stored_motion(director, engine):
    events = [e for e in director.render() if e.kind == "clip"]
    assert [e.shot_index for e in events] == [0, 1, 2]
    assert statuses(director) == [FRESH, FRESH, FRESH]
    assert len(engine.calls) == 3
    shot1, shot2, shot3 = director.project.shots
    shot1_files = tree_digest(director.store.root / "takes" / shot1.id)
    stored_motion = director.store.motion_out(shot1.id, shot1.selected_take)
    old_take2 = shot2.selected_take

    events = [e for e in director.regenerate(1) if e.kind == "clip"]

    assert [e.shot_index for e in events] == [1]
    assert len(engine.calls) == 4, "regenerate must not re-render upstream or downstream shots"
    assert tree_digest(director.store.root / "takes" / shot1.id) == shot1_files
    consumed = engine.calls[-1]["motion_in"]
    assert consumed.equals(stored_motion)
    for name, tensor in stored_motion.tensors.items():
        assert torch.equal(consumed.tensors[name], tensor)
    new_take = director.store.take(shot2.id, shot2.selected_take)
    assert new_take.upstream_take == shot1.selected_take
    assert new_take.motion_in_fingerprint == stored_motion.fingerprint()
    assert shot2.selected_take != old_take2 and old_take2 in shot2.takes
    assert engine.calls[-1]["seed"] != engine.calls[1]["seed"], "an unlocked re-roll gets a new seed"
    assert statuses(director) == [FRESH, FRESH, STALE]

    events = [e for e in director.regenerate(1, cascade=True) if e.kind == "clip"]
    assert [e.shot_index for e in events] == [1, 2]
    assert len(engine.calls) == 6
    assert statuses(director) == [FRESH, FRESH, FRESH]
    assert engine.calls[-1]["motion_in"].equals(director.store.motion_out(shot2.id, shot2.selected_take))


def test_fresh_shot_motion_in_equals_upstream_motion_out_bit_for_bit(director):
    list(director.render())
    shot1, shot2, _ = director.project.shots
    stored_in = director.store.motion_in(shot2.id, shot2.selected_take)
    assert stored_in.equals(director.store.motion_out(shot1.id, shot1.selected_take))


def test_locked_seed_is_kept_and_given_seed_is_used(director, engine):
    list(director.render())
    director.set_shot(1, seed=1234, seed_locked=True)
    assert statuses(director)[1] == STALE, "changing the seed makes the shot stale"
    list(director.regenerate(1))
    assert engine.calls[-1]["seed"] == 1234
    list(director.regenerate(1, seed=99))
    assert engine.calls[-1]["seed"] == 99


def test_selecting_an_older_take_makes_downstream_stale(director):
    list(director.render())
    first_take = director.project.shots[1].selected_take
    list(director.regenerate(1, cascade=True))
    assert statuses(director) == [FRESH, FRESH, FRESH]
    director.select_take(1, first_take)
    assert statuses(director) == [FRESH, FRESH, STALE]
    assert director.project.shots[1].seed == director.store.take(director.project.shots[1].id, first_take).seed


def test_render_only_renders_missing_and_stale(director, engine):
    list(director.render())
    list(director.render())
    assert len(engine.calls) == 3, "a second render with nothing stale renders nothing"
    director.set_shot(2, prompt="it meets a golden retriever")
    list(director.render())
    assert len(engine.calls) == 4 and engine.calls[-1]["prompt"].startswith("it meets a golden retriever")


def test_insert_delete_move_mark_exactly_the_affected_shots(tmp_path, engine, reference_image):
    director = Director.create(tmp_path / "f", engine, reference=reference_image,
                               prompts=["one", "two", "three", "four"], settings=SMALL)
    list(director.render())
    assert statuses(director) == [FRESH] * 4

    director.insert_shot(2, "inserted")  # one, two, inserted, three, four
    assert statuses(director) == [FRESH, FRESH, MISSING, STALE, FRESH]
    list(director.render())
    assert statuses(director) == [FRESH] * 5

    director.delete_shot(2)  # one, two, three, four
    assert statuses(director) == [FRESH, FRESH, STALE, FRESH]
    list(director.render())

    director.move_shot(3, 1)  # one, four, two, three
    assert [s.prompt for s in director.project.shots] == ["one", "four", "two", "three"]
    assert statuses(director) == [FRESH, STALE, STALE, FRESH]  # "three" still follows "two"

    director.move_shot(1, 3)  # back: one, two, three, four — every take consumed its current upstream
    assert statuses(director) == [FRESH] * 4

    director.delete_shot(0)  # two opens the film now
    assert statuses(director) == [STALE, FRESH, FRESH]


def test_cancel_leaves_no_partial_take_and_keeps_finished_shots(director):
    class CancelOnSecondShot:
        def __init__(self):
            self.armed = False

        def is_set(self):
            return self.armed

    token = CancelOnSecondShot()
    events = []
    for event in director.render(cancel=token):
        events.append(event)
        if event.kind == "clip":
            token.armed = True
    assert [e.kind for e in events] == ["clip", "done"] and events[-1].cancelled
    assert statuses(director) == [FRESH, MISSING, MISSING]
    assert not list((director.store.root / "takes").rglob(f"{PARTIAL_PREFIX}*"))
    assert all(shot.takes == [] for shot in director.project.shots[1:])


def test_render_refuses_without_reference_or_with_empty_prompt(tmp_path, engine, reference_image):
    director = Director.create(tmp_path / "a", engine, prompts=["x"])
    with pytest.raises(ProjectError, match="reference"):
        list(director.render())
    director = Director.create(tmp_path / "b", engine, reference=reference_image, prompts=["fine", "   "])
    with pytest.raises(ProjectError, match="shot 2 has an empty prompt"):
        list(director.render())
    assert engine.calls == []


def test_export_frame_count_audio_and_timeline(director, tmp_path):
    list(director.render())
    settings = director.project.settings
    expected = film_frame_count([settings.num_frames] * 3, svi_pro_rule(settings.num_motion_latents))
    out = tmp_path / "film.mp4"
    timeline = director.export(out)
    assert probe(out)["frames"] == expected == timeline["frames"]
    written = json.loads(out.with_suffix(".timeline.json").read_text())
    assert written == timeline
    assert [s["take_id"] for s in written["shots"]] == [s.selected_take for s in director.project.shots]
    assert written["shots"][0]["start_s"] == 0 and written["shots"][-1]["end_s"] == pytest.approx(expected / settings.fps)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(written["shots"], written["shots"][1:]))

    from moviepy import AudioClip, VideoFileClip

    for audio_seconds in (1.0, 10.0):  # shorter and longer than the film
        tone = AudioClip(lambda t: np.stack([np.sin(440 * 2 * np.pi * t)] * 2, axis=-1) * 0.2,
                         duration=audio_seconds, fps=44100)
        audio_path = tmp_path / f"tone{audio_seconds}.wav"
        tone.write_audiofile(str(audio_path), logger=None)
        with_audio = tmp_path / f"film_audio{audio_seconds}.mp4"
        director.export(with_audio, audio=audio_path)
        clip = VideoFileClip(str(with_audio))
        try:
            assert clip.audio is not None
            assert clip.audio.duration == pytest.approx(expected / settings.fps, abs=0.1)
        finally:
            clip.close()
        assert probe(with_audio)["frames"] == expected


def test_export_crossfade_and_scale(director, tmp_path):
    list(director.render())
    fps = director.project.settings.fps
    plain = director.export(tmp_path / "plain.mp4")
    faded = director.export(tmp_path / "faded.mp4", crossfade=0.25, scale=2.0)
    fade = round(0.25 * fps)
    assert faded["frames"] == plain["frames"] - 2 * fade
    assert probe(tmp_path / "faded.mp4")["frames"] == faded["frames"]
    assert faded["width"] == 2 * plain["width"]


def test_export_refuses_missing_shots_and_bad_audio(director, tmp_path):
    with pytest.raises(ProjectError, match="shot 1 has no usable take"):
        director.export(tmp_path / "x.mp4")
    list(director.render())
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    with pytest.raises(ProjectError, match="not a readable audio file"):
        director.export(tmp_path / "y.mp4", audio=not_audio)
    assert not (tmp_path / "y.mp4").exists()


def test_bundle_round_trip_restores_an_equal_project(director, tmp_path):
    list(director.render())
    zip_path = bundle_project(director.root, tmp_path / "film.zip")
    restored = unbundle_project(zip_path, tmp_path / "restored")
    assert restored.project.to_dict() == director.project.to_dict()
    assert tree_digest(restored.root) == tree_digest(director.root)
    reopened = Director.open(restored.root, director.engine)
    assert statuses(reopened) == [FRESH, FRESH, FRESH]


@pytest.mark.parametrize("evil_name", ["../escape.txt", "/abs/escape.txt", "takes/../../escape.txt"])
def test_bundle_with_escaping_entry_is_refused_and_writes_nothing(director, tmp_path, evil_name):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("project.json", json.dumps(director.project.to_dict()))
        archive.writestr(evil_name, "gotcha")
    target = tmp_path / "inner" / "target"
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(BundleError, match="refused"):
        unbundle_project(zip_path, target)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "escape.txt").exists() and not Path("/abs/escape.txt").exists()


def test_project_reloads_with_same_statuses(director):
    list(director.render())
    director.set_shot(2, prompt="changed")
    reopened = Director.open(director.root, director.engine)
    assert statuses(reopened) == [FRESH, FRESH, STALE]
    assert reopened.project.to_dict() == director.project.to_dict()


def test_opening_with_another_engine_marks_takes_stale_and_keeps_prompts(director, tmp_path):
    list(director.render())

    class Other(CountingEngine):
        pass

    other = Other(director.engine.inner)
    other.preset_id = "tiny-other"
    reopened = Director.open(director.root, other)
    assert statuses(reopened) == [STALE, STALE, STALE]
    assert [s.prompt for s in reopened.project.shots] == PROMPTS
    assert reopened.notices and "tiny-other" in reopened.notices[0]


def test_store_adopts_a_complete_take_written_before_a_crash(director):
    list(director.render())
    shot = director.project.shots[2]
    data = json.loads((director.root / "project.json").read_text())
    data["shots"][2]["takes"] = []
    data["shots"][2]["selected_take"] = None  # as if the crash came between take rename and project.json
    (director.root / "project.json").write_text(json.dumps(data))
    store = ProjectStore.load(director.root)
    assert store.project.shots[2].selected_take == shot.selected_take


def test_leftovers_of_killed_exports_and_imports_are_swept_once_old(director, tmp_path):
    """A SIGKILLed export or import leaves a hidden temp beside its target; the next run removes
    it once it is an hour old, and never touches a fresh one (a write that may still be running)."""
    import os
    import time

    list(director.render())
    out = tmp_path / "film.mp4"
    old_export, fresh_export = tmp_path / ".film.dead1.tmp.mp4", tmp_path / ".film.live2.tmp.mp4"
    old_staging, fresh_staging = tmp_path / ".copy.unpack-dead", tmp_path / ".copy.unpack-live"
    for path in (old_export, fresh_export):
        path.write_bytes(b"half a film")
    for path in (old_staging, fresh_staging):
        path.mkdir()
        (path / "project.json").write_text("{")
    two_hours_ago = time.time() - 7200
    for path in (old_export, old_staging):
        os.utime(path, (two_hours_ago, two_hours_ago))

    director.export(out)
    unbundle_project(bundle_project(director.root, tmp_path / "film.zip"), tmp_path / "copy")

    assert not old_export.exists() and not old_staging.exists()
    assert fresh_export.exists() and fresh_staging.exists()
    assert out.exists() and (tmp_path / "copy" / "project.json").exists()
