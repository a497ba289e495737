"""Reliability of clips, frames and reference pictures, by class of failure (issue 9, part A).

- fps: every frame rate the settings accept renders and exports; a clip holds exactly the
  frames its take records, and a write that does not is refused.
- declared sizes: nothing take.json says about a clip's size, frame count or fps is trusted;
  a clip that is not what its take declares makes the take broken, and is never decoded whole.
- streaming memory: preview, export and seam scoring decode a bounded window, so memory does
  not grow with the clips' or the film's length (bench/bench_stream_memory.py measures RSS).
- reference memory: 16-bit and float pictures are reduced to 8 bits without whole-picture
  float64 copies, and large decodes take turns (bench/bench_reference_memory.py measures RSS).
- transient vs broken: out of memory, an I/O error or a timeout while reading a clip leaves
  the take as it is; only a missing or undecodable clip is broken. Out-of-memory advice on
  the draft engine does not mention GPU offload.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from svi_studio import reference as reference_module
from svi_studio import video_io
from svi_studio.director import Director
from svi_studio.engines.base import OutOfMemory
from svi_studio.export import ExportError
from svi_studio.project import store as store_module
from svi_studio.project.model import ProjectError
from svi_studio.project.status import BROKEN, FRESH
from svi_studio.project.store import BrokenTake, ClipUnavailable
from svi_studio.reference import load_reference
from svi_studio.seams import WINDOW
from svi_studio.settings import LIMITS
from svi_studio.video_io import VideoFileError, probe, probe_clip, write_mp4

from conftest import make_reference
from test_director import CountingEngine
from test_reliability_faults import FlakyEngine

SMALL = {"width": 32, "height": 32, "num_frames": 5}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, draft) -> Path:
    """A 2-shot draft film at 32x32, 9 frames per clip, rendered once, to copy per test."""
    root = tmp_path_factory.mktemp("media") / "film"
    director = Director.create(root, draft, reference=make_reference(96, 64), prompts=["one", "two, pan left"],
                               settings={**SMALL, "num_frames": 9})
    list(director.render())
    return root


def copy_of(rendered: Path, tmp: Path) -> Path:
    shutil.copytree(rendered, tmp / "film")
    return tmp / "film"


def frames_of(count: int, width: int = 32, height: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, height, width, 3), dtype=np.uint8)


def second_take(director: Director) -> tuple[str, str, Path]:
    """(shot id, take id, take folder) of the second shot's selected take."""
    shot = director.project.shots[1]
    return shot.id, shot.selected_take, director.store.take_dir(shot.id, shot.selected_take)


def edit_take_json(folder: Path, **changes) -> None:
    path = folder / "take.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# == fps: every frame rate the settings accept ===================================================

FPS_RANGE = range(LIMITS["fps"][0], LIMITS["fps"][1] + 1)


def test_every_fps_renders_and_exports_with_the_planned_frame_count(tmp_path, draft):
    """Every integer fps from the settings' minimum to maximum: each clip holds the frames its take
    records and the export holds the film's planned frame count (moviepy's duration rounding
    used to lose a clip's last frame at 7, 14, 28, 29 … fps, and export then failed with an
    IndexError). One project per fps, four at a time: the time goes to ffmpeg processes."""
    base = tmp_path / "base"
    Director.create(base, draft, reference=make_reference(96, 64), prompts=["one", "two"], settings=SMALL)

    def render_and_export(fps: int) -> list[tuple]:
        root = tmp_path / f"film-{fps}"
        shutil.copytree(base, root)
        director = Director.open(root, draft)
        director.update_settings(fps=fps)
        list(director.render())
        wrong = []
        for shot in director.project.shots:
            take = director.store.take(shot.id, shot.selected_take)
            held = probe_clip(director.store.clip_path(shot.id, take.id), max_frames=take.num_frames)
            if (take.fps, take.num_frames, held.frames, held.fps) != (fps, 5, 5, fps):
                wrong.append((fps, "take", take.fps, take.num_frames, held.frames, held.fps))
        timeline = director.export(tmp_path / f"film-{fps}.mp4")
        written = probe_clip(tmp_path / f"film-{fps}.mp4", max_frames=20).frames
        if (timeline["frames"], written) != (9, 9):  # 5 + (5 - 1 dropped head frame)
            wrong.append((fps, "export", timeline["frames"], written))
        return wrong

    with ThreadPoolExecutor(4) as pool:
        wrong = [problem for problems in pool.map(render_and_export, FPS_RANGE) for problem in problems]
    assert wrong == []


@pytest.mark.parametrize("fps", [7, 24, 29, 48])
def test_the_film_preview_at_odd_fps_holds_every_frame(tmp_path, draft, fps):
    director = Director.create(tmp_path / "film", draft, reference=make_reference(96, 64), prompts=["one", "two"],
                               settings={**SMALL, "fps": fps})
    list(director.render())
    assert probe(director.preview())["frames"] == 9
    assert [s.status for s in director.statuses()] == [FRESH, FRESH]


@pytest.mark.parametrize("count", [5, 81, 241])
@pytest.mark.parametrize("fps", [7, 12, 24, 29, 48, 59])
def test_write_mp4_holds_exactly_the_frames_given(tmp_path, fps, count):
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames_of(count, 16, 16), fps)
    assert probe(path)["frames"] == count  # decoded, not just counted
    assert probe_clip(path, max_frames=count).frames == count


def test_a_write_that_comes_out_short_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    real = video_io.probe_clip
    monkeypatch.setattr(video_io, "probe_clip", lambda path, max_frames: video_io.ClipInfo(
        **{**real(path, max_frames).__dict__, "frames": max_frames - 1}))
    with pytest.raises(VideoFileError, match="wrote 9 frames .* holds 8"):
        write_mp4(tmp_path / "clip.mp4", frames_of(9), 16)
    assert list(tmp_path.iterdir()) == []


def test_a_render_whose_clip_comes_out_short_makes_no_take(tmp_path, rendered, draft, monkeypatch):
    root = copy_of(rendered, tmp_path)
    director = Director.open(root, draft)
    shot_id, take_id, _ = second_take(director)
    real = video_io.probe_clip
    monkeypatch.setattr(video_io, "probe_clip", lambda path, max_frames: video_io.ClipInfo(
        **{**real(path, max_frames).__dict__, "frames": max_frames - 1}))
    with pytest.raises(VideoFileError):
        list(director.regenerate(1))
    assert director.project.shots[1].takes == [take_id] and director.project.shots[1].selected_take == take_id
    assert sorted(p.name for p in (root / "takes" / shot_id).iterdir()) == [take_id]  # no partial, no new take


def test_write_take_refuses_frames_that_are_not_what_the_take_records(tmp_path, rendered, draft):
    director = Director.open(copy_of(rendered, tmp_path), draft)
    shot_id, take_id, _ = second_take(director)
    take = director.store.take(shot_id, take_id)
    take.id = director.store.new_take_id()
    with pytest.raises(ValueError, match="records 9 frames of 32x32, but 8"):
        director.store.write_take(take, frames_of(8), director.store.motion_out(shot_id, take_id), None, None)
    assert not director.store.take_dir(shot_id, take.id).exists()


def test_an_export_that_comes_out_short_is_refused_and_keeps_the_previous_film(tmp_path, rendered, monkeypatch):
    from svi_studio import export

    director = Director.open(copy_of(rendered, tmp_path), None)
    film = tmp_path / "film.mp4"
    director.export(film)
    before = film.read_bytes()
    real = export.probe_clip
    monkeypatch.setattr(export, "probe_clip", lambda path, max_frames: video_io.ClipInfo(
        **{**real(path, max_frames).__dict__, "frames": max_frames - 1}))
    with pytest.raises(ExportError, match="16 frames long instead of 17"):
        director.export(film)
    assert film.read_bytes() == before and [p.name for p in tmp_path.iterdir() if p.name.startswith(".film")] == []


def test_crossfaded_export_streams_the_same_frames_as_the_stitching_rule(tmp_path, rendered):
    """The streamed film: frame k of the export is the stitched (and crossfaded) frame k."""
    director = Director.open(copy_of(rendered, tmp_path), None)
    timeline = director.export(tmp_path / "faded.mp4", crossfade=0.125)  # 2 frames at 16 fps
    assert timeline["crossfade_frames"] == 2 and timeline["frames"] == 9 + 8 - 2
    assert probe(tmp_path / "faded.mp4")["frames"] == timeline["frames"]


# == declared sizes: take.json is not trusted ====================================================

def clip_with(folder: Path, count: int, width: int = 32, height: int = 32, fps: int = 16) -> None:
    write_mp4(folder / "clip.mp4", frames_of(count, width, height), fps)


LIES = {
    # name: (change to the second take's folder, words the reason holds)
    "far more frames than declared": (lambda f: clip_with(f, 400), "more than the 9 frames"),
    "fewer frames than declared": (lambda f: clip_with(f, 5), "holds 5 frames, not the 9"),
    "declares a huge frame count": (lambda f: edit_take_json(f, num_frames=10**9), "num_frames 1000000000"),
    "declares more frames than the settings allow": (lambda f: edit_take_json(f, num_frames=LIMITS["num_frames"][1] + 4),
                                                     f"from {LIMITS['num_frames'][0]} to {LIMITS['num_frames'][1]}"),
    "declares a huge size": (lambda f: edit_take_json(f, width=65536, height=65536), "width 65536"),
    "declares a size the clip does not have": (lambda f: edit_take_json(f, width=2048, height=2048),
                                               "is 32x32, not the 2048x2048"),
    "clip larger than declared": (lambda f: clip_with(f, 9, 64, 64), "is 64x64, not the 32x32"),
    "declares another fps": (lambda f: edit_take_json(f, fps=60), "plays at 16 fps, not the 60"),
    "declares an fps the settings refuse": (lambda f: edit_take_json(f, fps=100000), "fps 100000"),
    "a fractional frame count": (lambda f: edit_take_json(f, num_frames=9.5), "num_frames 9.5"),
    "a frame count as text": (lambda f: edit_take_json(f, num_frames="9"), "num_frames '9'"),
    "a boolean size": (lambda f: edit_take_json(f, width=True), "width True"),
    "an odd size": (lambda f: edit_take_json(f, width=33), "odd size 33x32"),
    "not a video at all": (lambda f: (f / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000)),
                           "cannot be decoded"),
}


@pytest.mark.parametrize("name", list(LIES))
def test_a_take_whose_clip_is_not_what_it_declares_is_broken_and_never_decoded(tmp_path, rendered, monkeypatch, name):
    change, words = LIES[name]
    root = copy_of(rendered, tmp_path)
    folder = second_take(Director.open(root, None))[2]
    change(folder)
    decoded: list[str] = []
    real = store_module.iter_frames

    def recording(path, *args, **kwargs):
        decoded.append(Path(path).parent.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store_module, "iter_frames", recording)
    director = Director.open(root, None)  # a take.json that declares too much is found broken here already
    with pytest.raises(ProjectError) as info:  # BrokenTake, or "shot 2 has no usable take"
        director.export(tmp_path / "film.mp4")
    assert str(tmp_path) not in str(info.value)
    assert folder.name not in decoded  # refused from the header and packet count, before any decoding
    assert not (tmp_path / "film.mp4").exists()
    statuses = director.statuses()
    assert statuses[1].status == BROKEN and words in statuses[1].reason, statuses[1].reason
    assert str(tmp_path) not in statuses[1].reason
    assert statuses[0].status == FRESH and director.preview(tmp_path / "preview.mp4") is not None  # shot 1 alone


def test_a_broken_take_can_be_rendered_again(tmp_path, rendered, draft):
    root = copy_of(rendered, tmp_path)
    clip_with(second_take(Director.open(root, None))[2], 400)
    director = Director.open(root, draft)
    with pytest.raises(BrokenTake):
        director.preview(tmp_path / "preview.mp4")
    assert [s.status for s in director.statuses()] == [FRESH, BROKEN]
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [1]
    assert director.export(tmp_path / "film.mp4")["frames"] == 17


def test_decoding_never_asks_ffmpeg_for_more_frames_than_the_take_declares(tmp_path):
    """Even if the check were skipped, the reader stops ffmpeg at the frames asked for."""
    path = tmp_path / "long.mp4"
    write_mp4(path, frames_of(200, 16, 16), 16)
    frames = list(video_io.iter_frames(path, 16, 16, start=2, stop=7))
    assert len(frames) == 5 and frames[0].shape == (16, 16, 3)
    with pytest.raises(VideoFileError, match="is 16x16, not the 32x32"):
        next(video_io.iter_frames(path, 32, 32))
    assert probe_clip(path, max_frames=9).frames == 10  # counted only to one past what was asked



@pytest.mark.parametrize("start, stop", [(0, 30), (1, 5), (17, 30), (29, 30), (12, None), (25, 99)])
def test_a_window_read_is_exactly_the_same_frames_as_reading_from_the_start(tmp_path, start, stop):
    """Frames before `start` are dropped inside ffmpeg (seam scoring and regeneration read only a
    clip's tail): the window must still be frame for frame what a read from frame 0 gives."""
    rng = np.random.default_rng(3)
    clip = np.stack([np.full((32, 48, 3), 8 * i, np.uint8) for i in range(30)])
    clip[:, :8, :8] = rng.integers(0, 255, (30, 8, 8, 3), dtype=np.uint8)  # a different corner each frame
    path = tmp_path / "clip.mp4"
    write_mp4(path, clip, 16)
    every = list(video_io.iter_frames(path, 48, 32))
    window = list(video_io.iter_frames(path, 48, 32, start=start, stop=stop))
    assert len(window) == len(every[start:stop]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(window, every[start:stop]))


# == streaming memory ============================================================================

def traced_peak(action) -> int:
    """Peak bytes Python and numpy allocated while `action` ran (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def film(tmp: Path, draft, shots: int, frames: int) -> Director:
    director = Director.create(tmp / f"film-{shots}-{frames}", draft, reference=make_reference(96, 64),
                               prompts=[f"shot {i}" for i in range(shots)],
                               settings={"width": 96, "height": 64, "num_frames": frames})
    list(director.render())
    return Director.open(director.root, None)


def test_export_memory_does_not_grow_with_clip_or_film_length(tmp_path, draft):
    short, longer, more = film(tmp_path, draft, 2, 9), film(tmp_path, draft, 2, 81), film(tmp_path, draft, 5, 9)
    peaks = {name: traced_peak(lambda d=d: d.export(tmp_path / f"{name}.mp4"))
             for name, d in (("short", short), ("longer", longer), ("more", more))}
    clip_bytes = 81 * 96 * 64 * 3  # one whole 81-frame clip, decoded
    assert peaks["longer"] < clip_bytes / 2, peaks  # never a whole clip in memory
    assert peaks["longer"] < 1.5 * peaks["short"] + 200_000 and peaks["more"] < 1.5 * peaks["short"] + 200_000, peaks


def test_seam_scoring_reads_only_the_upstream_takes_last_kept_frames(tmp_path, draft, monkeypatch):
    director = film(tmp_path, draft, 2, 81)
    reads = []
    real = store_module.ProjectStore.iter_frames

    def recording(self, shot_id, take_id, start=0, stop=None):
        reads.append((shot_id, start, stop))
        return real(self, shot_id, take_id, start, stop)

    monkeypatch.setattr(store_module.ProjectStore, "iter_frames", recording)
    director = Director.open(director.root, draft)  # nothing cached
    event = next(e for e in director.regenerate(1) if e.kind == "clip")
    first = director.project.shots[0].id
    assert reads == [(first, 81 - WINDOW, 81)] and event.seam_score is not None


# == reference memory ============================================================================

def high_bit(mode: str, values: np.ndarray) -> Image.Image:
    if mode == "F":
        return Image.fromarray(values.astype(np.float32))
    if mode == "I":
        return Image.fromarray(values.astype(np.int32))
    return Image.fromarray(values.astype(np.uint16))  # I;16


def expected_8_bit(mode: str, values: np.ndarray) -> np.ndarray:
    """The conversion as the old float64 code did it, for comparison."""
    array = values.astype(np.float64)
    finite_max = np.nanmax(array) if not np.isnan(array).all() else 0.0
    if mode == "F" and finite_max <= 1.0:
        array = array * 255.0
    elif mode == "I" and finite_max <= 255:
        pass
    else:
        array = array / 257.0
    return np.nan_to_num(array, nan=0.0).clip(0, 255).round().astype(np.uint8)


HIGH_BIT_CASES = {
    "float 0..1 with NaN": ("F", lambda r: np.where(r.random((40, 50)) < 0.1, np.nan, r.random((40, 50)))),
    "float 0..65535": ("F", lambda r: r.random((40, 50)) * 65535),
    "float with infinities and negatives": ("F", lambda r: np.where(r.random((40, 50)) < 0.2, np.inf, -r.random((40, 50)) * 9 + 3)),
    "16-bit": ("I;16", lambda r: r.integers(0, 65536, (40, 50))),
    "32-bit holding 8-bit values": ("I", lambda r: r.integers(0, 256, (40, 50))),
    "32-bit holding 16-bit values": ("I", lambda r: r.integers(0, 65536, (40, 50))),
}


@pytest.mark.parametrize("name", list(HIGH_BIT_CASES))
def test_high_bit_pictures_convert_exactly_as_before(name, monkeypatch):
    mode, make = HIGH_BIT_CASES[name]
    values = make(np.random.default_rng(0)).astype(np.float64 if mode == "F" else np.int64)
    monkeypatch.setattr(reference_module, "STRIP_PIXELS", 7 * 50)  # several strips, the last one short
    image, notices = load_reference(high_bit(mode, values))
    assert np.array_equal(np.asarray(image)[:, :, 0], expected_8_bit(mode, values))
    assert any("8 bits" in notice for notice in notices)


@pytest.mark.parametrize("mode", ["F", "I;16"])
def test_high_bit_pictures_convert_without_whole_picture_copies(tmp_path, mode):
    """A 4 MP picture: what Python and numpy allocate (the 4 MB uint8 result and a few 4 MB strips,
    about 16 MB) stays below one float64 copy of the picture (32 MB); the old code made several."""
    rng = np.random.default_rng(1)
    path = tmp_path / "deep.tif"
    high_bit(mode, rng.random((2000, 2000)) * (1.0 if mode == "F" else 65535)).save(path)
    peak = traced_peak(lambda: load_reference(path))
    assert peak < 8 * 2000 * 2000, peak


def test_large_pictures_decode_a_few_at_a_time(monkeypatch):
    """Concurrent uploads of large pictures take turns (bounded memory); small ones do not wait."""
    monkeypatch.setattr(reference_module, "LARGE_REFERENCE_PIXELS", 100 * 100)
    at_once, most = [0], [0]
    lock = threading.Lock()
    real = reference_module._normalise

    def slow(image, label, notices):
        with lock:
            at_once[0] += 1
            most[0] = max(most[0], at_once[0])
        time.sleep(0.05)
        try:
            return real(image, label, notices)
        finally:
            with lock:
                at_once[0] -= 1

    monkeypatch.setattr(reference_module, "_normalise", slow)
    large = make_reference(200, 120)
    threads = [threading.Thread(target=load_reference, args=(large,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == reference_module.LARGE_DECODES_AT_ONCE
    most[0] = 0
    small = [threading.Thread(target=load_reference, args=(make_reference(64, 48),)) for _ in range(4)]
    for thread in small:
        thread.start()
    for thread in small:
        thread.join()
    assert most[0] > reference_module.LARGE_DECODES_AT_ONCE  # small pictures never wait


# == transient vs broken =========================================================================

TRANSIENT = {
    "MemoryError": MemoryError(),
    "torch out of memory": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "EIO": OSError(errno.EIO, "Input/output error"),
    "EAGAIN": OSError(errno.EAGAIN, "Resource temporarily unavailable"),
    "timeout": subprocess.TimeoutExpired(["ffmpeg"], 30),
    "ffmpeg reporting an I/O error": RuntimeError("av_read_frame: Input/output error"),
}
BROKEN_ERRORS = {
    "undecodable": RuntimeError("Invalid data found when processing input"),
    "imageio's failure to read meta data": OSError("Could not load meta information"),
    "ffmpeg naming the file by its server path": RuntimeError("/srv/svi/sessions/4f2a/takes/s1/t1/clip.mp4: "
                                                              "Invalid data found when processing input"),
}


def raising(error: BaseException):
    def fail(*args, **kwargs):
        raise error
        yield  # a generator, like the real reader

    return fail


@pytest.mark.parametrize("stage", ["check", "decode"])
@pytest.mark.parametrize("name", list(TRANSIENT))
def test_a_transient_failure_reading_a_clip_leaves_the_take_fresh(tmp_path, rendered, monkeypatch, name, stage):
    root = copy_of(rendered, tmp_path)
    director = Director.open(root, None)
    target = "probe_clip" if stage == "check" else "iter_frames"
    real = getattr(store_module, target)
    with monkeypatch.context() as patch:
        if stage == "check":
            patch.setattr(store_module, target, lambda *a, **k: (_ for _ in ()).throw(TRANSIENT[name]))
        else:
            patch.setattr(store_module, target, raising(TRANSIENT[name]))
        with pytest.raises(ClipUnavailable, match="could not be read just now") as info:
            director.preview(tmp_path / "preview.mp4")
        assert "left as it is" in str(info.value) and str(tmp_path) not in str(info.value)
        assert director.store.broken_takes == {}
        assert [s.status for s in director.statuses()] == [FRESH, FRESH]
    assert getattr(store_module, target) is real
    assert director.preview(tmp_path / "preview.mp4") is not None  # the next try works


@pytest.mark.parametrize("name", list(BROKEN_ERRORS))
def test_an_undecodable_clip_makes_the_take_broken(tmp_path, rendered, monkeypatch, name):
    director = Director.open(copy_of(rendered, tmp_path), None)
    monkeypatch.setattr(store_module, "iter_frames", raising(BROKEN_ERRORS[name]))
    with pytest.raises(BrokenTake, match="cannot be decoded") as info:
        director.preview(tmp_path / "preview.mp4")
    status = director.statuses()[0]
    assert status.status == BROKEN
    for text in (str(info.value), status.reason):
        assert "/srv/" not in text and str(tmp_path) not in text, text


def test_a_missing_clip_makes_the_take_broken(tmp_path, rendered):
    root = copy_of(rendered, tmp_path)
    director = Director.open(root, None)
    (second_take(director)[2] / "clip.mp4").unlink()
    with pytest.raises(BrokenTake, match="clip.mp4 is missing"):
        director.export(tmp_path / "film.mp4")
    assert [s.status for s in director.statuses()] == [FRESH, BROKEN]


OOMS = {
    "MemoryError": MemoryError(),
    "torch.OutOfMemoryError": torch.OutOfMemoryError("CUDA out of memory"),
    "RuntimeError 'out of memory'": RuntimeError("DefaultCPUAllocator: out of memory"),
    "the engine's own OutOfMemory": OutOfMemory("ran out of memory making the crops"),
}


@pytest.mark.parametrize("is_draft", [True, False], ids=["draft", "diffusion"])
@pytest.mark.parametrize("name", list(OOMS))
def test_out_of_memory_advice_fits_the_engine(tmp_path, rendered, draft, name, is_draft):
    engine = FlakyEngine(draft, OOMS[name])
    engine.is_draft = is_draft  # the same draft clips, described as a diffusion engine's
    director = Director.open(copy_of(rendered, tmp_path), engine)
    with pytest.raises(OutOfMemory) as info:
        list(director.regenerate(1))
    message = str(info.value)
    assert "resolution" in message and "frames per shot" in message, message
    if is_draft:
        assert "offload" not in message and "GPU" not in message.replace("the GPU ran", ""), message
    else:
        assert "offload" in message, message
    assert [s.status for s in director.statuses()] == [FRESH, FRESH]


def test_counting_engine_keeps_the_draft_flag(draft):
    assert CountingEngine(draft).is_draft is True  # the OOM tests above rely on it
