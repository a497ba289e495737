"""Bad input, every way it arrives: each gets a message that says what was wrong and what to
do, and the project loses nothing.

References, prompts, settings and seeds (the same verdict from the Python API, the CLI and
the app's handlers), LoRA files, hand-damaged project files and take folders, hostile
bundles, and soundtracks. Renders use the draft engine at 64x48, 9 frames; LoRAs the
shared tiny engine. Property-based tests (hypothesis) feed structured inputs: images in
every mode and format, cut or bit-flipped image files, arbitrary text, arbitrary settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import struct
import wave
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings as hsettings, strategies as st
from PIL import Image

from svi_studio import cli
from svi_studio.director import Director, clean_text
from svi_studio.engines.loras import LoraError, LoraSpec
from svi_studio.export import ExportError
from svi_studio.project.bundle import BundleError, bundle_project, unbundle_project
from svi_studio.project.model import SCHEMA_VERSION, ProjectError
from svi_studio.project.status import BROKEN, FRESH, MISSING, STALE
from svi_studio.project.store import PARTIAL_PREFIX, BrokenTake, ProjectStore
from svi_studio.reference import MAX_REFERENCE_PIXELS, NEUTRAL_BACKGROUND, ReferenceError, load_reference
from svi_studio.settings import SEED_MAX, ClipSettings, SettingsError, normalise_settings

from conftest import make_reference

TINY = {"width": 64, "height": 48, "num_frames": 9}  # a draft clip in well under 0.1 s
def examples(count: int):
    """Hypothesis settings: `count` examples, no deadline (the 2 cores are shared), no example database."""
    return hsettings(max_examples=count, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return make_reference(96, 64, seed=3)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def png16_rgb(array: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one itself)."""
    height, width, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def animation(frames: list[Image.Image], fmt: str) -> bytes:
    options = {"lossless": True} if fmt == "WEBP" else {}
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def new_director(root: Path, engine, picture: Image.Image, prompts=("a cat wakes up",), **options) -> Director:
    return Director.create(root, engine, reference=picture, prompts=list(prompts), settings=dict(TINY), **options)


# == reference images ==========================================================================

def _refusals(tmp: Path, picture: Image.Image) -> dict[str, tuple[object, str]]:
    """name → (source, a fragment the message must hold)."""
    folder = tmp / "a-folder.png"
    folder.mkdir()
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "notes.png").write_text("this is not a picture")
    png, jpeg = encoded(picture.convert("RGB")), encoded(picture.convert("RGB"), "JPEG", quality=90)
    flipped = bytearray(png)
    flipped[len(png) // 2] ^= 0xFF  # a bit error inside the image data: the chunk CRC no longer matches
    return {
        "missing": (tmp / "nowhere.png", "not found"),
        "folder": (folder, "folder"),
        "empty file": (tmp / "empty.png", "empty"),
        "text named .png": (tmp / "notes.png", "not an image"),
        "pdf": (b"%PDF-1.4\n1 0 obj <<>> endobj\n", "not an image"),
        "eps (runs Ghostscript)": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n", "not an image"),
        "truncated png": (png[: len(png) // 2], "damaged or incomplete"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "damaged or incomplete"),
        "bit-flipped png": (bytes(flipped), "damaged or incomplete"),
        "jpeg header only": (jpeg[:200], "damaged or incomplete"),
        "bomb 100000x100000": (declared_png(100_000, 100_000), "megapixels"),
        "bomb 10000x10000 (Pillow only warns)": (declared_png(10_000, 10_000), "megapixels"),
        "bomb 7000x7000 (over our limit)": (declared_png(7_000, 7_000), "7000×7000"),
        "1x1": (encoded(Image.new("RGB", (1, 1), "red")), "at least 16 pixels"),
        "15x300": (encoded(Image.new("RGB", (15, 300), "red")), "at least 16 pixels"),
        "nothing": (None, "no reference image"),
        "an int": (42, "not int"),
    }


def test_every_bad_reference_is_refused_with_a_message(tmp_path, picture):
    cases = _refusals(tmp_path, picture)
    for name, (source, fragment) in cases.items():
        with pytest.raises(ReferenceError) as info:
            load_reference(source)
        assert fragment in str(info.value), (name, str(info.value))
        assert isinstance(info.value, ProjectError)  # every caller already turns these into messages
    assert len(cases) >= 17


def test_a_bad_reference_changes_nothing_in_the_project(tmp_path, draft, picture):
    director = new_director(tmp_path / "film", draft, picture)
    before = digest(director.root)
    (tmp_path / "inputs").mkdir()
    for source, _ in _refusals(tmp_path / "inputs", picture).values():
        with pytest.raises(ProjectError):
            director.set_reference(source)
    assert digest(director.root) == before
    # ...and creating a project with one writes nothing, so the same command can simply be run again
    with pytest.raises(ReferenceError):
        Director.create(tmp_path / "second", draft, reference=declared_png(9000, 9000), prompts=["x"])
    assert not (tmp_path / "second" / "project.json").exists()
    Director.create(tmp_path / "second", draft, reference=picture, prompts=["x"])


ACCEPTED = [
    # name, image factory, notice fragment (None: no notice beyond "small")
    ("cmyk jpeg", lambda p: encoded(p.convert("CMYK"), "JPEG", quality=95), "CMYK"),
    ("16-bit grey png", lambda p: encoded(Image.fromarray(
        (np.asarray(p.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))), "8 bits"),
    ("palette png", lambda p: encoded(p.convert("P")), None),
    ("palette with transparency", lambda p: encoded(_transparent(p).convert("P")), "transparent"),
    ("rgba with a transparent band", lambda p: encoded(_transparent(p)), "transparent"),
    ("opaque rgba", lambda p: encoded(p.convert("RGBA")), None),
    ("LA", lambda p: encoded(p.convert("LA")), None),
    ("bilevel", lambda p: encoded(p.convert("1")), None),
    ("tiff", lambda p: encoded(p, "TIFF"), None),
    ("bmp", lambda p: encoded(p, "BMP"), None),
    ("1:10", lambda p: encoded(p.resize((40, 400))), "1:10"),
    ("10:1", lambda p: encoded(p.resize((400, 40))), "10:1"),
    ("16x16", lambda p: encoded(p.resize((16, 16))), "small"),
]


def _transparent(image: Image.Image) -> Image.Image:
    rgba = np.array(image.convert("RGBA"))
    rgba[:8, :, 3] = 0
    return Image.fromarray(rgba)


@pytest.mark.parametrize("name, make, notice", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_odd_but_usable_references_are_converted_with_a_notice(picture, name, make, notice):
    image, notices = load_reference(make(picture), name=name)
    assert image.mode == "RGB" and min(image.size) >= 16
    text = " ".join(notices)
    if notice:
        assert notice in text, notices
    else:
        assert "transparent" not in text and "CMYK" not in text
    assert all(n.startswith(name) for n in notices), notices  # each notice names the picture


def test_conversions_keep_the_picture(picture):
    grey = np.asarray(picture.convert("L"), dtype=np.float64)
    image, _ = load_reference(encoded(Image.fromarray((grey * 257).astype(np.uint16))))
    # 16-bit is scaled, not clipped (Pillow's own convert() turns it nearly all white)
    assert np.abs(np.asarray(image)[..., 0] - grey).max() <= 1
    rgb16, _ = load_reference(png16_rgb(np.asarray(picture, dtype=np.uint16) * 257))
    assert np.abs(np.asarray(rgb16, dtype=int) - np.asarray(picture, dtype=int)).max() <= 1
    flat, _ = load_reference(_transparent(picture))
    assert (np.asarray(flat)[:8] == NEUTRAL_BACKGROUND).all()  # alpha composited on neutral grey
    assert (np.asarray(flat)[8:] == np.asarray(picture)[8:]).all()
    cmyk, _ = load_reference(encoded(picture.convert("CMYK"), "JPEG", quality=95))
    assert np.abs(np.asarray(cmyk, dtype=int) - np.asarray(picture, dtype=int)).mean() < 12


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_use_their_first_frame_and_say_so(picture, fmt):
    first, second, third = (picture, picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                            picture.transpose(Image.Transpose.ROTATE_180))
    image, notices = load_reference(animation([first, second, third], fmt), name=f"wave.{fmt.lower()}")
    assert any("first frame" in n and "3 frames" in n for n in notices), notices
    distance = [np.abs(np.asarray(image, dtype=int) - np.asarray(frame, dtype=int)).mean()
                for frame in (first, second, third)]
    assert distance[0] < 20 and distance[0] * 3 < min(distance[1:]), distance  # frame 0 (GIF: re-quantised)


def test_exif_orientation_is_applied(picture):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image, _ = load_reference(encoded(picture, "JPEG", exif=exif.tobytes()))
    assert image.size == (picture.height, picture.width)


def test_the_reference_is_fitted_to_a_4_to_1_clip_at_most(tmp_path, draft, picture):
    director = Director.create(tmp_path / "tall", draft, reference=encoded(picture.resize((40, 400))), prompts=["a"])
    s = director.project.settings
    assert s.height / s.width == pytest.approx(4, rel=0.1) and s.width % 16 == 0 and s.height % 16 == 0
    assert any("1:10" in n for n in director.notices) and any("Clips will be" in n for n in director.notices)
    list(director.render())  # and it renders
    assert director.statuses()[0].status == FRESH


def test_a_bomb_inside_an_imported_bundle_is_refused_when_rendering(tmp_path, draft, picture):
    director = new_director(tmp_path / "film", draft, picture)
    (director.root / "reference.png").write_bytes(declared_png(60_000, 60_000))  # as a crafted bundle would
    with pytest.raises(ReferenceError, match="megapixels"):
        list(Director.open(director.root, draft).render())


def app_session(tmp: Path, engine):
    from svi_studio.ui.studio import Studio

    studio = Studio(engine, tmp / "app", max_shots=2)
    return studio, studio.registry.create()


def test_the_apps_reference_upload_refuses_what_the_loader_refuses(tmp_path, draft, picture):
    studio, session = app_session(tmp_path, draft)
    (tmp_path / "inputs").mkdir()
    for name, (source, _) in _refusals(tmp_path / "inputs", picture).items():
        if isinstance(source, bytes):
            path = tmp_path / "inputs" / "upload.png"
            path.write_bytes(source)
            source = path
        if isinstance(source, (str, Path)) and name != "folder":
            with pytest.raises(ProjectError):
                studio.set_reference(session, str(source))
    assert session.director.project.reference is None


@pytest.mark.parametrize("kind", ["16-bit", "alpha"])
def test_the_apps_reference_upload_converts_like_the_loader(tmp_path, draft, picture, kind):
    studio, session = app_session(tmp_path, draft)
    path = tmp_path / f"{kind}.png"
    if kind == "16-bit":
        Image.fromarray((np.asarray(picture.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)).save(path)
    else:
        _transparent(picture).save(path)
    studio.set_reference(session, str(path))
    stored = np.asarray(Image.open(session.director.store.reference_path()).convert("RGB"))
    assert (stored == np.asarray(load_reference(path)[0])).all()


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"]
FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]


@examples(60)
@given(mode=st.sampled_from(MODES), fmt=st.sampled_from(FORMATS), width=st.integers(1, 80),
       height=st.integers(1, 80), seed=st.integers(0, 2**16))
def test_property_any_mode_and_format_gives_rgb_or_a_message(mode, fmt, width, height, seed):
    assume(not (mode == "YCbCr" and fmt == "TIFF"))  # Pillow cannot read back the YCbCr TIFFs it writes
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    try:
        if mode in ("I;16", "I", "F"):
            image = Image.fromarray(rng.integers(0, 65536, (height, width)).astype(
                {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]), mode)
        else:
            image = base.convert(mode)
        data = encoded(image, fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # this format cannot store this mode
    try:
        result, notices = load_reference(data)
    except ReferenceError as error:
        assert min(width, height) < 16 and "at least 16" in str(error)
        return
    assert result.mode == "RGB" and result.size == (width, height) and min(width, height) >= 16
    assert all(isinstance(n, str) and n for n in notices)


SEEDS_FILES = {
    "png": encoded(make_reference(48, 32, seed=1)),
    "jpeg": encoded(make_reference(48, 32, seed=1), "JPEG"),
    "gif": animation([make_reference(48, 32, seed=1), make_reference(48, 32, seed=2)], "GIF"),
    "webp": encoded(make_reference(48, 32, seed=1), "WEBP"),
    "tiff": encoded(make_reference(48, 32, seed=1), "TIFF"),
    "bmp": encoded(make_reference(48, 32, seed=1), "BMP"),
}


@examples(150)
@given(kind=st.sampled_from(sorted(SEEDS_FILES)), cut=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=4))
@example(kind="gif", cut=0.5625, flips=[])  # a GIF cut inside a frame header: Pillow raised struct.error
def test_property_cut_or_corrupted_files_never_escape_as_anything_but_a_message(kind, cut, flips):
    data = bytearray(SEEDS_FILES[kind])
    data = data[: max(1, int(len(data) * cut))] if cut < 0.999 else data
    for where, mask in flips:
        data[min(len(data) - 1, int(len(data) * where))] ^= mask
    try:
        image, _ = load_reference(bytes(data))
    except ReferenceError as error:
        assert str(error)
        return
    # Decoded whole, or refused: never half. A flipped byte in the header can declare another
    # valid size (a 22-px-wide JPEG decodes fine); the picture must then have the declared size.
    with Image.open(io.BytesIO(bytes(data))) as declared:
        assert image.mode == "RGB" and image.size == declared.size


# == prompts =====================================================================================

PROMPTS = {
    "20,000 characters": "a slow push-in on the cat, " * 740 + "end",
    "emoji": "🐈 jumps 🚀 over the 🌙 — 👩‍👩‍👧‍👦 watch, 🏳️‍🌈",
    "right-to-left": "القطة تقفز من النافذة ثم تركض — שלום, the cat",
    "newlines": "line one\nline two\r\nline three\n\n",
    "quotes": 'He said "hi" and \'bye\', then `echo pwned` \\n \\" ',
    "python": "__import__('os').system('touch PWNED'); eval('1+1'); {**{}}",
    "json": '{"shots": [{"prompt": "injected"}], "schema_version": 99}", "x": "',
    "nul and controls": "a\x00b\x07c\x1bd\u200ee\u202e",
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_prompts_round_trip_byte_exact_and_render(tmp_path, draft, picture, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = PROMPTS[name]
    director = new_director(tmp_path / "film", draft, picture, prompts=["placeholder"])
    notices = director.set_shot(0, prompt=text)
    director.set_story(style_prompt=text, negative_prompt=text)
    reopened = Director.open(director.root, draft)
    assert reopened.project.shots[0].prompt == text and reopened.project.style_prompt == text
    raw = (director.root / "project.json").read_bytes()
    assert json.dumps(text, ensure_ascii=False).encode("utf-8") in raw  # stored as written, as text
    assert raw.decode("utf-8")  # valid UTF-8, always
    if len(text) > 2000:
        assert any("reads only about the first" in n for n in notices)
    [event] = [e for e in reopened.render() if e.kind == "clip"]
    assert reopened.store.take(event.shot_id, event.take_id).shot_prompt == text
    assert not (tmp_path / "PWNED").exists()  # never evaluated


@pytest.mark.parametrize("blank", ["", "   ", "\n\t \r\n"])
def test_empty_prompt_is_an_error_for_the_shot_rendered_and_a_warning_elsewhere(tmp_path, draft, picture, blank):
    director = new_director(tmp_path / "film", draft, picture, prompts=["shot one", "shot two"])
    list(director.render())
    notices = director.set_shot(1, prompt=blank)
    assert any("no prompt yet" in n and "shot 2" in n for n in notices)  # a warning while editing
    with pytest.raises(ProjectError, match="shot 2 has an empty prompt"):
        list(director.render())
    with pytest.raises(ProjectError, match="shot 2 has an empty prompt"):
        list(director.regenerate(1))
    assert director.statuses()[0].status == FRESH  # rendering another shot is not blocked by it
    list(director.regenerate(0))
    assert len(director.project.shots[0].takes) == 2


def test_lone_surrogates_cannot_brick_the_project(tmp_path, draft, picture):
    """A lone UTF-16 surrogate (JSON "\\ud800" from any client) used to make project.json
    unwritable: that save and every later one raised UnicodeEncodeError."""
    director = new_director(tmp_path / "film", draft, picture)
    notices = director.set_shot(0, prompt="a cat \ud800 jumps \ud83d\ude00")
    assert director.project.shots[0].prompt == "a cat \ufffd jumps \U0001F600"
    assert any("not valid text" in n for n in notices)
    director.set_story(style_prompt="later edits still save")
    assert Director.open(director.root, draft).project.style_prompt == "later edits still save"
    list(director.render())


def test_prompt_over_the_hard_limit_is_refused_and_changes_nothing(tmp_path, draft, picture):
    director = new_director(tmp_path / "film", draft, picture)
    before = digest(director.root)
    with pytest.raises(ProjectError, match="limit is 100,000"):
        director.set_shot(0, prompt="x" * 100_001)
    assert digest(director.root) == before


@examples(60)
@given(text=st.text(st.characters(exclude_categories=()), max_size=300))
def test_property_any_text_round_trips_through_project_json(tmp_path_factory, draft, picture, text):
    root = tmp_path_factory.mktemp("prop") / "film"
    director = new_director(root, draft, picture, prompts=["x"])
    director.set_shot(0, prompt=text)
    director.set_story(style_prompt=text, name=text or "n")
    stored = ProjectStore.load(root).project
    expected = clean_text(text, "p")
    assert stored.shots[0].prompt == expected and stored.style_prompt == expected
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert expected == text  # only lone surrogates are ever changed
    assert ProjectStore.load(root).project.to_dict() == stored.to_dict()


# == settings and seeds: one verdict from the Python API, the CLI and the app ====================

SETTING_CASES = [
    ("num_frames", 80), ("num_frames", 0), ("width", 100), ("height", 40), ("steps", 2.5), ("steps", 0),
    ("steps", -3), ("guidance", 25), ("guidance", -1), ("guidance", "abc"), ("num_motion_latents", 0),
    ("num_motion_latents", 5), ("flow_shift", float("nan")), ("fps", 0), ("stepz", 4), ("steps", "4"),
]
SEED_CASES = [-1, 2**64, SEED_MAX, "12", "twelve", 3.5, " 7 ", 0]


def verdict_api(tmp: Path, draft, picture, changes: dict):
    try:
        director = Director.create(tmp / "api", draft, reference=picture, prompts=["a"], settings=changes)
    except (ProjectError, SettingsError) as error:
        return "refused", str(error).lower()
    return director.project.settings, " ".join(n for n in director.notices if "Clips will be" not in n
                                               and not n.startswith("the image"))


def verdict_cli(tmp: Path, reference: Path, changes: dict, capsys):
    sets = [arg for key, value in changes.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    code = cli.main(["render", "--engine", "draft", "--reference", str(reference), "--prompt", "a",
                     "--project-dir", str(tmp / "cli"), "--json", *sets])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    if code != 0:
        assert code == 1
        return "refused", lines[-1]["error"].lower()
    notices = " ".join(line["notice"] for line in lines if "notice" in line and "Clips will be" not in line["notice"]
                       and not line["notice"].startswith("reference.png"))
    return ProjectStore.load(tmp / "cli").project.settings, notices


def verdict_ui(tmp: Path, draft, picture, changes: dict):
    import gradio as gr

    from svi_studio.ui.studio import Studio

    studio = Studio(draft, tmp / "ui", max_shots=2)
    session = studio.registry.create()
    session.director.set_reference(picture)
    try:
        _, status = studio.api_call(session.token, lambda s: studio.update_settings(s, changes))
    except gr.Error as error:
        return "refused", str(error.message).lower()
    return session.director.project.settings, " ".join(status["notices"])


@pytest.mark.parametrize("key, value", SETTING_CASES, ids=[f"{k}={v!r}" for k, v in SETTING_CASES])
def test_settings_get_the_same_verdict_everywhere(tmp_path, draft, picture, capsys, key, value):
    reference = tmp_path / "reference.png"
    picture.save(reference)
    changes = {**TINY, key: value}
    api = verdict_api(tmp_path, draft, picture, changes)
    from_cli = verdict_cli(tmp_path, reference, changes, capsys)
    ui = verdict_ui(tmp_path, draft, picture, changes)
    assert api == from_cli == ui
    if api[0] == "refused":
        assert key in api[1] or key == "stepz"
        assert not (tmp_path / "cli" / "project.json").exists()  # a refused setting writes nothing
    else:
        settings = api[0]
        assert settings.width % 16 == 0 and settings.height % 16 == 0 and settings.num_frames % 4 == 1
        assert 1 <= settings.num_motion_latents <= 3 and settings.steps >= 1


def test_unknown_setting_is_named(tmp_path, draft, picture):
    director = new_director(tmp_path / "film", draft, picture)
    with pytest.raises(SettingsError, match="unknown setting 'stepz'"):
        director.update_settings(stepz=4)


@pytest.mark.parametrize("seed", SEED_CASES, ids=[repr(s) for s in SEED_CASES])
def test_seeds_get_the_same_verdict_everywhere(tmp_path, draft, picture, capsys, seed):
    from svi_studio.ui.studio import Studio

    director = new_director(tmp_path / "film", draft, picture)
    list(director.render())
    try:
        director.set_shot(0, seed=seed)
        api = ("ok", director.project.shots[0].seed)
    except SettingsError as error:
        api = ("refused", str(error))

    code = cli.main(["regen", str(director.root), "--shot", "1", "--seed", str(seed), "--json"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    from_cli = ("ok", out[-1]["shots"][0]["seed"]) if code == 0 else ("refused", out[-1]["error"])

    studio = Studio(draft, tmp_path / "ui", max_shots=2)
    session = studio.registry.create()
    form = {key: session.shown.get(key) for key in studio.form_keys}
    form["c0.seed"] = str(seed)  # the page's seed box is text
    problems = studio.apply_form(session, form)
    ui = ("refused", problems[0]) if problems else ("ok", session.director.project.shots[0].seed)

    assert api[0] == from_cli[0] == ui[0], (api, from_cli, ui)
    if api[0] == "ok":
        assert api[1] == from_cli[1] == ui[1] == int(str(seed).strip())
    else:
        def same(text: str) -> str:  # the API got a float or int, the CLI and the page text: repr() differs
            return text.lower().replace("'", "")
        assert same(api[1]) == same(from_cli[1]) == same(ui[1]) and "seed" in api[1]


def test_spec_file_seeds_and_settings_use_the_same_gate(tmp_path, draft, picture):
    reference = tmp_path / "ref.png"
    picture.save(reference)
    spec = tmp_path / "film.json"
    spec.write_text(json.dumps({"name": "x", "reference": str(reference), "shots": [{"prompt": "a", "seed": "12"}],
                                "settings": {**TINY, "num_frames": 80}}))
    director = Director.from_spec(spec, tmp_path / "a", draft)
    assert director.project.shots[0].seed == 12 and director.project.settings.num_frames == 81
    assert any("4k+1" in n for n in director.notices)
    spec.write_text(json.dumps({"name": "x", "reference": str(reference), "shots": [{"prompt": "a", "seed": 2**64}]}))
    with pytest.raises(ProjectError, match="seed must be between 0 and"):
        Director.from_spec(spec, tmp_path / "b", draft)
    assert not (tmp_path / "b" / "project.json").exists()


@examples(120)
@given(changes=st.dictionaries(
    st.sampled_from(["width", "height", "num_frames", "fps", "steps", "guidance", "guidance_2", "flow_shift",
                     "boundary_ratio", "num_motion_latents"]),
    st.one_of(st.integers(-2**70, 2**70), st.integers(-10**300, 10**300), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
              st.none(), st.booleans()), max_size=4))
def test_property_settings_are_valid_or_refused_with_a_settings_error(changes):
    try:
        settings, notices = normalise_settings(changes)
    except SettingsError as error:
        assert str(error)
        return
    assert settings.width % 16 == 0 and settings.height % 16 == 0 and settings.num_frames % 4 == 1
    assert settings.steps >= 1 and settings.num_motion_latents in (1, 2, 3)
    assert math.isfinite(settings.guidance) and math.isfinite(settings.flow_shift)


@pytest.mark.parametrize("changes", [{"steps": 10**400}, {"lora_weights": 5}, {"lora_weights": "abc"},
                                     {"lora_weights": [1, 2]}, {"lora_weights": {"a": 10**400}}])
def test_settings_values_of_the_wrong_shape_are_settings_errors(changes):
    with pytest.raises(SettingsError):
        normalise_settings(changes)


# == LoRA files (the cases tests/test_loras.py does not cover) ====================================

def _safetensors_header(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _no_adapters(engine) -> bool:
    return all(not getattr(getattr(engine.pipe, name), "peft_config", None)
               for name in ("transformer", "transformer_2") if getattr(engine.pipe, name, None) is not None)


def test_lora_files_that_lie_are_refused_and_never_unpickled(tmp_path, tiny_engine):
    marker = tmp_path / "UNPICKLED"
    files = {
        "pickle-protocol-0.safetensors": (pickle.dumps({"x": Payload(str(marker))}, protocol=0), "safetensors"),
        "pickle-protocol-5.safetensors": (pickle.dumps({"x": Payload(str(marker))}, protocol=5), "pickle"),
        "claims-more-bytes.safetensors": (_safetensors_header(
            {"blocks.0.self_attn.q.lora_A.weight": {"dtype": "F32", "shape": [4, 24], "data_offsets": [0, 384]}},
            b"\0" * 16), "truncated"),
        "header-length-2^40.safetensors": (struct.pack("<Q", 2**40) + b"{}", "truncated"),
        "header-not-utf8.safetensors": (struct.pack("<Q", 10) + b"\xff\xfe garbage", "safetensors"),
        "empty.safetensors": (b"", "truncated"),
        "five-bytes.safetensors": (b"12345", "truncated"),
    }
    for name, (data, fragment) in files.items():
        (tmp_path / name).write_bytes(data)
    full_model = tmp_path / "wan-transformer-weights.safetensors"  # a valid file, but a model, not a LoRA
    from safetensors.torch import save_file

    save_file({"blocks.0.attn1.to_q.weight": torch.zeros(24, 24), "proj_out.weight": torch.zeros(64, 24)},
              str(full_model))
    files[full_model.name] = (None, "change nothing")
    for name, (_, fragment) in files.items():
        with pytest.raises(LoraError) as info:
            tiny_engine.loras.add(LoraSpec(name="bad", path=str(tmp_path / name)))
        assert name in str(info.value) and fragment in str(info.value), str(info.value)
        assert not tiny_engine.loras.specs and _no_adapters(tiny_engine)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["int8", "3-D", "NaN"])
def test_lora_tensors_of_the_wrong_kind_are_refused_cleanly(tmp_path, tiny_engine, kind):
    from safetensors.torch import save_file

    a, b = torch.randn(4, 24), torch.randn(24, 4)
    if kind == "int8":
        a, b = a.to(torch.int8), b.to(torch.int8)
    elif kind == "3-D":
        a, b = a[..., None], b[..., None]
    else:
        a[0, 0] = float("nan")
    path = tmp_path / f"{kind}.safetensors"
    save_file({"blocks.0.self_attn.q.lora_A.default.weight": a.contiguous(),
               "blocks.0.self_attn.q.lora_B.default.weight": b.contiguous()}, str(path))
    try:
        with pytest.raises(LoraError):
            tiny_engine.loras.add(LoraSpec(name=f"odd_{kind.replace('-', '')}", path=str(path)))
        assert _no_adapters(tiny_engine)
    finally:  # leave the shared engine clean whatever happened
        for name in list(tiny_engine.loras.specs):
            tiny_engine.loras.remove(name)
        for attribute in ("transformer", "transformer_2"):
            transformer = getattr(tiny_engine.pipe, attribute, None)
            for adapter in list(getattr(transformer, "peft_config", {}) or {}):
                transformer.delete_adapters(adapter)


# == project files ================================================================================

@pytest.fixture(scope="module")
def rendered(tmp_path_factory, draft):
    """A rendered 3-shot draft project to copy and damage."""
    root = tmp_path_factory.mktemp("rendered") / "film"
    director = new_director(root, draft, make_reference(96, 64), prompts=["one", "two", "three"])
    list(director.render())
    return root


def copy_of(rendered: Path, tmp: Path) -> Path:
    import shutil

    target = tmp / "copy"
    shutil.copytree(rendered, target)
    return target


def test_truncated_project_json_is_reported_and_left_alone(tmp_path, rendered, capsys):
    root = copy_of(rendered, tmp_path)
    data = (root / "project.json").read_bytes()
    (root / "project.json").write_bytes(data[: len(data) // 2])
    before = digest(root)
    with pytest.raises(ProjectError, match="damaged.*left as they are"):
        ProjectStore.load(root)
    assert cli.main(["status", str(root)]) == 1 and "damaged" in capsys.readouterr().err
    assert digest(root) == before


def test_future_schema_is_refused_untouched(tmp_path, rendered):
    root = copy_of(rendered, tmp_path)
    data = json.loads((root / "project.json").read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    (root / "project.json").write_text(json.dumps(data))
    partial = root / "takes" / data["shots"][0]["id"] / f"{PARTIAL_PREFIX}x"
    partial.mkdir()
    before = digest(root)
    with pytest.raises(ProjectError, match="newer than this SVI Studio understands"):
        ProjectStore.load(root)
    assert digest(root) == before and partial.is_dir()  # not even crash leftovers are touched


def test_unknown_keys_are_kept_and_mentioned(tmp_path, rendered, draft):
    root = copy_of(rendered, tmp_path)
    data = json.loads((root / "project.json").read_text())
    data["colour_grade"] = {"lut": "warm"}
    data["shots"][1]["director_note"] = "hold longer"
    (root / "project.json").write_text(json.dumps(data))
    director = Director.open(root, draft)
    assert any("colour_grade" in n and "kept unchanged" in n for n in director.notices)
    assert [s.status for s in director.statuses()] == [FRESH] * 3
    director.set_shot(0, prompt="one, edited")
    saved = json.loads((root / "project.json").read_text())
    assert saved["colour_grade"] == {"lut": "warm"} and saved["shots"][1]["director_note"] == "hold longer"


WRONG_TYPES = [
    ("name", 5, "'name' must be str"),
    ("shots", {}, "'shots' must be list"),
    ("shots", [1], "every entry of 'shots'"),
    ("settings", "fast", "'settings' must be dict"),
    ("settings.steps", "many", "steps must be a number"),
    ("settings.width", None, "width must be a number"),
    ("settings.guidance", 99, "guidance must be between"),
    ("settings.lora_weights", 5, "settings are malformed"),
    ("shot.prompt", 5, "'prompt' must be str"),
    ("shot.seed", "12", "'seed' must be int"),
    ("shot.seed", -5, "seed must be between"),
    ("shot.seed", 2**70, "seed must be between"),
    ("shot.takes", "abc", "'takes' must be list"),
    ("shot.selected_take", 5, "'selected_take' must be str"),
    ("shot.overrides", {"steps": "x"}, "overrides are malformed"),
    ("shot.id", "same", "every shot needs its own id"),
    ("shot.id", "../../escape", "not a valid id"),
    ("shot.takes", ["../../../.."], "not a valid id"),
    ("shot.selected_take", "../x", "not a valid id"),
]


@pytest.mark.parametrize("where, value, message", WRONG_TYPES, ids=[f"{w}={v!r}" for w, v, _ in WRONG_TYPES])
def test_hand_edited_wrong_types_are_named_and_the_file_left_alone(tmp_path, rendered, where, value, message):
    root = copy_of(rendered, tmp_path)
    data = json.loads((root / "project.json").read_text())
    if where.startswith("settings."):
        data["settings"][where.split(".")[1]] = value
    elif where.startswith("shot."):
        for shot in data["shots"][: 2 if value == "same" else 1]:
            shot[where.split(".")[1]] = value
    else:
        data[where] = value
    (root / "project.json").write_text(json.dumps(data))
    before = digest(root)
    with pytest.raises(ProjectError) as info:
        ProjectStore.load(root)
    assert message in str(info.value) and "project.json" in str(info.value)
    assert digest(root) == before


@pytest.mark.parametrize("missing", ["clip.mp4", "motion_out.safetensors", "take.json", "the whole folder"])
def test_take_with_missing_files_is_broken_kept_and_rerenderable(tmp_path, rendered, draft, missing):
    import shutil

    root = copy_of(rendered, tmp_path)
    project = json.loads((root / "project.json").read_text())
    shot = project["shots"][1]
    folder = root / "takes" / shot["id"] / shot["selected_take"]
    if missing == "the whole folder":
        shutil.rmtree(folder)
    else:
        (folder / missing).unlink()
    before = digest(root)
    director = Director.open(root, draft)
    assert digest(root) == before  # opening deletes nothing
    statuses = director.statuses()
    assert [s.status for s in statuses] == [FRESH, BROKEN, FRESH]  # shot 3 did consume that take's motion
    assert "missing" in statuses[1].reason
    with pytest.raises(ProjectError, match="shot 2 has no usable take"):
        director.export(tmp_path / "film.mp4")
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [1, 2]
    assert [s.status for s in director.statuses()] == [FRESH] * 3
    assert shot["selected_take"] in director.project.shots[1].takes  # the broken take is still listed
    if missing != "the whole folder":
        assert folder.is_dir()  # and its remaining files are still there
    director.export(tmp_path / "film.mp4")


def test_take_with_a_corrupt_clip_becomes_broken_on_first_read(tmp_path, rendered, draft):
    root = copy_of(rendered, tmp_path)
    director = Director.open(root, draft)
    shot = director.project.shots[0]
    clip = director.store.clip_path(shot.id, shot.selected_take)
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(BrokenTake, match="cannot be decoded"):
        director.export(tmp_path / "film.mp4")
    assert not (tmp_path / "film.mp4").exists()
    assert director.statuses()[0].status == BROKEN
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [0, 1, 2]
    director.export(tmp_path / "film.mp4")


# == bundles ======================================================================================

def _evil_zip(path: Path, project: dict, entries: list[tuple]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("project.json", json.dumps(project))
        for entry in entries:
            name, data, *mode = entry
            info = zipfile.ZipInfo(name)
            if mode:
                info.external_attr = mode[0] << 16
            archive.writestr(info, data)
    return path


BUNDLES = [
    ("backslash traversal", [("..\\evil.txt", "x")], "outside"),
    ("nested traversal", [("takes/a/../../../evil.txt", "x")], "outside"),
    ("drive letter", [("C:/evil.txt", "x")], "absolute"),
    ("windows absolute", [("\\evil.txt", "x")], "absolute"),
    ("symlink", [("takes/link", "/etc/passwd", 0o120777)], "link"),
    ("fifo", [("takes/pipe", "", 0o010644)], "link or special"),
    ("duplicate name", [("reference.png", "a"), ("reference.png", "b")], "twice"),
    ("duplicate by case", [("Reference.PNG", "a"), ("reference.png", "b")], "twice"),
    ("duplicate project.json", [("project.json", "{}")], "twice"),
]


@pytest.mark.parametrize("name, entries, message", BUNDLES, ids=[b[0] for b in BUNDLES])
def test_hostile_bundles_are_refused_and_write_nothing(tmp_path, rendered, name, entries, message):
    import warnings

    project = json.loads((rendered / "project.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicated names we write on purpose
        bundle = _evil_zip(tmp_path / "evil.zip", project, entries)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(BundleError, match=message):
        unbundle_project(bundle, tmp_path / "out" / "film")
    assert sorted(tmp_path.rglob("*")) == before  # no target, no staging folder, nothing outside


def test_bundle_whose_ids_climb_out_of_the_project_cannot_touch_other_folders(tmp_path, rendered, draft):
    """Shot and take ids name folders. A bundle whose project.json said takes: ["../../../.."]
    used to load, and deleting that shot then ran shutil.rmtree on a folder outside the
    project (in the app: every session's folder). Ids are now checked on load, and take.json
    must name its own folder."""
    canary = tmp_path / "sessions" / "someone-else" / "keep.txt"
    canary.parent.mkdir(parents=True)
    canary.write_text("other user's work")
    project = json.loads((rendered / "project.json").read_text())
    project["shots"][0]["takes"].append("../../../../sessions")
    bundle = _evil_zip(tmp_path / "evil.zip", project, [])
    with pytest.raises(ProjectError, match="not a valid id"):
        unbundle_project(bundle, tmp_path / "imports" / "film")
    assert canary.read_text() == "other user's work" and not (tmp_path / "imports" / "film").exists()

    root = copy_of(rendered, tmp_path)  # a take.json that names another take is a broken take, never followed
    shot = json.loads((root / "project.json").read_text())["shots"][0]
    take_json = root / "takes" / shot["id"] / shot["selected_take"] / "take.json"
    take = json.loads(take_json.read_text())
    take["id"] = "../../../../sessions/someone-else"
    take_json.write_text(json.dumps(take))
    director = Director.open(root, draft)
    assert director.statuses()[0].status == BROKEN and "belongs to another take" in director.statuses()[0].reason
    director.delete_shot(0)
    assert canary.read_text() == "other user's work"


def test_zip_bombs_are_refused_before_or_while_unpacking(tmp_path, rendered, monkeypatch):
    import svi_studio.project.bundle as bundle_module

    project = json.loads((rendered / "project.json").read_text())
    ratio = tmp_path / "ratio.zip"
    with zipfile.ZipFile(ratio, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("project.json", json.dumps(project))
        archive.writestr("takes/bomb.bin", b"\0" * (8 * 1024**2))  # 8 MiB of zeros → about 8 KiB
    with pytest.raises(BundleError, match="zip bomb"):
        unbundle_project(ratio, tmp_path / "a")

    # a header that understates the size: caught while streaming (a clip's path: files outside
    # the project's layout are dropped unread)
    lying = tmp_path / "lying.zip"
    shot = project["shots"][0]
    with zipfile.ZipFile(lying, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("project.json", json.dumps(project))
        archive.writestr(f"takes/{shot['id']}/{shot['selected_take']}/clip.mp4", b"\1" * 200_000)
    raw = bytearray(lying.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last central-directory entry is takes/big.bin
    struct.pack_into("<I", raw, central + 24, 1000)  # its uncompressed size, claimed
    lying.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="damaged|MiB"):
        unbundle_project(lying, tmp_path / "b", max_unpacked=50_000)

    monkeypatch.setattr(bundle_module, "MAX_ENTRIES", 5)
    many = _evil_zip(tmp_path / "many.zip", project, [(f"takes/f{i}", "x") for i in range(10)])
    with pytest.raises(BundleError, match="entries"):
        unbundle_project(many, tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")
    assert not list(tmp_path.glob(".*unpack*"))


def test_bundles_that_are_not_projects(tmp_path, rendered):
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(BundleError, match="not a readable zip"):
        unbundle_project(tmp_path / "text.zip", tmp_path / "a")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.raises(BundleError, match="no project.json"):
        unbundle_project(tmp_path / "empty.zip", tmp_path / "a")
    project = json.loads((rendered / "project.json").read_text())
    project["schema_version"] = SCHEMA_VERSION + 1
    future = _evil_zip(tmp_path / "future.zip", project, [])
    with pytest.raises(ProjectError, match="newer"):
        unbundle_project(future, tmp_path / "a")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.unpack-*"))
    good = bundle_project(rendered, tmp_path / "good.zip")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(BundleError, match="not empty"):
        unbundle_project(good, tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"


# == audio for export =============================================================================

def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def audio_seconds(path: Path) -> float:
    from moviepy import AudioFileClip

    clip = AudioFileClip(str(path))
    try:
        return clip.duration
    finally:
        clip.close()


def test_soundtracks_longer_shorter_and_not_audio(tmp_path, rendered):
    director = Director.open(copy_of(rendered, tmp_path), None)
    film = tmp_path / "film.mp4"
    timeline = director.export(film)
    seconds = timeline["seconds"]
    first_export = film.read_bytes()

    (tmp_path / "song.mp3").write_text("la la la, not audio at all")
    silent_video = tmp_path / "silent.mp4"
    silent_video.write_bytes(first_export)
    for bad in (tmp_path / "song.mp3", silent_video, tmp_path / "missing.wav"):
        with pytest.raises(ExportError, match="not a readable audio file|audio track is empty"):
            director.export(film, audio=bad)
        assert film.read_bytes() == first_export  # the previous export is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".film.")]  # no temporary left over

    for length in (seconds * 4, seconds / 4):
        director.export(film, audio=write_wav(tmp_path / f"tone-{length:.2f}.wav", length))
        assert audio_seconds(film) == pytest.approx(seconds, abs=0.1)  # cut, or padded with silence
