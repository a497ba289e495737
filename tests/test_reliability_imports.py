"""Hostile and unlucky project imports (and the project zip download), by class of failure.

Every refused import must: raise a BundleError/ProjectError whose message says what is
wrong and what to do, with no server path and no traceback; leave nothing behind (no
target, no staging folder); and read the same from the Python API, the CLI (`unbundle`)
and the app's project upload, since all three go through `unbundle_project` and
`Project.from_dict`. tests/test_reliability_inputs.py covers the older bundle cases
(traversal, links, duplicates, one big-ratio entry, a lying size header, non-zips).

Classes:
1. sizes: zip bombs, many small bombs, declared sizes over the budget, over the free disk,
   too many entries (refused before zipfile lists them), compression without a bound;
2. entry names and kinds: encrypted, over-long, over-long in bytes, control characters;
3. project.json: nesting, invalid UTF-8, paths outside the project, the editor's limits;
4. take.json inside a bundle: a bad stitch rule, invalid UTF-8, nesting → a broken take with a reason;
5. the editor and the loader share one set of limits;
6. downloading a project on a full disk.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from svi_studio import cli
from svi_studio.director import Director
from svi_studio.project import bundle as bundle_module
from svi_studio.project.bundle import BundleError, bundle_project, unbundle_project
from svi_studio.project.model import MAX_JSON_DEPTH, ProjectError
from svi_studio.project.status import BROKEN, FRESH
from svi_studio.project.store import ProjectStore, StorageError

from conftest import make_reference

TINY = {"width": 64, "height": 48, "num_frames": 9}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, draft) -> Path:
    """A rendered 2-shot draft project."""
    root = tmp_path_factory.mktemp("rendered") / "film"
    director = Director.create(root, draft, reference=make_reference(96, 64), prompts=["one", "two"], settings=TINY)
    list(director.render())
    return root


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory, rendered) -> Path:
    return bundle_project(rendered, tmp_path_factory.mktemp("good") / "film.zip")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, draft):
    from svi_studio.ui.studio import Studio

    return Studio(draft, tmp_path_factory.mktemp("app"))


def project_dict(rendered: Path) -> dict:
    return json.loads((rendered / "project.json").read_text())


def rewrite(good_zip: Path, out: Path, changes: dict[str, bytes | None] | None = None,
            compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A copy of `good_zip` with entries replaced (bytes), removed (None) or added."""
    changes = dict(changes or {})
    with zipfile.ZipFile(good_zip) as source, zipfile.ZipFile(out, "w", compression=compression) as sink:
        for info in source.infolist():
            if info.filename in changes:
                data = changes.pop(info.filename)
                if data is not None:
                    sink.writestr(info.filename, data)
            else:
                sink.writestr(info.filename, source.read(info))
        for name, data in changes.items():
            if data is not None:
                sink.writestr(name, data)
    return out


def with_project(good_zip: Path, out: Path, project: dict | bytes) -> Path:
    data = project if isinstance(project, bytes) else json.dumps(project).encode()
    return rewrite(good_zip, out, {"project.json": data}, zipfile.ZIP_STORED)  # stored: no ratio check in the way


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def assert_refused(archive: Path, tmp: Path, studio, match: str, capsys) -> str:
    """The import is refused alike by the API, the CLI and the app, and leaves nothing behind."""
    imports = tmp / "imports"
    imports.mkdir(exist_ok=True)
    before = tree(tmp)
    with pytest.raises(ProjectError, match=match) as info:
        unbundle_project(archive, imports / "film")
    message = str(info.value)
    assert str(tmp) not in message and "Traceback" not in message and not message.startswith("/")
    assert tree(tmp) == before  # no target, no staging folder
    capsys.readouterr()
    assert cli.main(["unbundle", str(archive), str(imports / "film")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert tree(tmp) == before
    with pytest.raises(ProjectError) as app_info:
        studio.upload_project(None, str(archive))
    assert str(app_info.value) == message  # the app's upload says the same
    return message


# == 1. sizes ======================================================================================

def test_many_small_bombs_are_refused_by_the_whole_archives_ratio(tmp_path, good_zip, studio, capsys):
    """Each entry is under the 1 MiB a single-entry ratio check looks at; together they are a bomb."""
    zeros = b"\0" * (64 * 1024)
    bombs = {f"takes/x/y{i}/clip.mp4": zeros for i in range(800)}  # 50 MiB from about 100 KiB
    archive = rewrite(good_zip, tmp_path / "many.zip", bombs)
    assert archive.stat().st_size < 1024**2
    assert_refused(archive, tmp_path, studio, "compressed .*:1 together, like a zip bomb", capsys)


def _claim_size(archive: Path, entry: str, size: int) -> None:
    """Rewrite the uncompressed size the central directory declares for `entry`."""
    raw = bytearray(archive.read_bytes())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        name_length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46: at + 46 + name_length].decode() == entry:
            struct.pack_into("<I", raw, at + 24, size)
            archive.write_bytes(bytes(raw))
            return
        at = raw.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{entry} not in {archive}")


def test_declared_sizes_over_the_budget_are_refused_before_unpacking(tmp_path, good_zip, studio, capsys):
    archive = rewrite(good_zip, tmp_path / "huge.zip", {"takes/x/y/clip.mp4": b"small"}, zipfile.ZIP_STORED)
    _claim_size(archive, "takes/x/y/clip.mp4", 0xF000_0000)  # declares 3.75 GiB
    assert_refused(archive, tmp_path, studio, "unpacks to more than the [0-9,]+ MiB .*refused before anything", capsys)


def test_an_import_never_fills_the_servers_disk(tmp_path, good_zip, studio, capsys, monkeypatch):
    import shutil

    real = shutil.disk_usage
    free = bundle_module.FREE_DISK_MARGIN + 1024**2  # 1 MiB above the margin

    def disk_usage(path):
        return real(path)._replace(free=free)

    monkeypatch.setattr(bundle_module.shutil, "disk_usage", disk_usage)
    archive = rewrite(good_zip, tmp_path / "big.zip", {"takes/x/y/clip.mp4": os.urandom(2 * 1024**2)})
    assert_refused(archive, tmp_path, studio, "the 1 MiB the server's disk can spare", capsys)


def test_too_many_entries_are_refused_before_zipfile_lists_them(tmp_path, good_zip, monkeypatch):
    archive = rewrite(good_zip, tmp_path / "many.zip", {f"takes/x/y/{i}": b"" for i in range(60)})
    monkeypatch.setattr(bundle_module, "MAX_ENTRIES", 50)
    opened = []
    real = zipfile.ZipFile
    monkeypatch.setattr(zipfile, "ZipFile", lambda *args, **kwargs: opened.append(args) or real(*args, **kwargs))
    with pytest.raises(BundleError, match="lists [0-9]+ entries .*at most 50"):
        unbundle_project(archive, tmp_path / "out")
    assert opened == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_compression_that_inflates_without_a_bound_is_refused(tmp_path, good_zip, studio, capsys, method):
    """bzip2 and LZMA entries are decompressed a whole block at a time (no output bound per read)."""
    archive = rewrite(good_zip, tmp_path / "packed.zip", compression=method)
    assert_refused(archive, tmp_path, studio, f"compression .*method {method}.*only stored and deflate", capsys)


# == 2. entry names and kinds =======================================================================

def _encrypted(good_zip: Path, out: Path) -> Path:
    rewrite(good_zip, out)
    raw = bytearray(out.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = raw.find(signature)
        while at != -1:
            struct.pack_into("<H", raw, at + flag_at, struct.unpack_from("<H", raw, at + flag_at)[0] | 0x1)
            at = raw.find(signature, at + 4)
    out.write_bytes(bytes(raw))
    return out


NAMES = [
    ("300 characters", "takes/" + "a" * 294, "300 characters long; names in a project are at most 255"),
    ("256 bytes in one folder name", "takes/" + "é" * 130 + "/clip.mp4", "a folder or file name of 260 bytes; file systems allow 255"),
    ("control character", "takes/x/y/clip\x07.mp4", "control characters in its name"),
    ("newline", "anchors/a\nb.png", "control characters in its name"),
]


@pytest.mark.parametrize("name, entry, match", NAMES, ids=[n[0] for n in NAMES])
def test_odd_entry_names_are_refused_with_a_short_message(tmp_path, good_zip, studio, capsys, name, entry, match):
    archive = rewrite(good_zip, tmp_path / "names.zip", {entry: b"x"})
    message = assert_refused(archive, tmp_path, studio, match, capsys)
    assert len(message) < 400  # the name is shown cut short, not 300 characters of it


@pytest.mark.parametrize("entries", [{"project.json": None, "Project.JSON": b"{}"},
                                     {"project.json": None, "project.json/": b""}], ids=["other case", "a folder"])
def test_a_project_json_by_another_name_or_kind_is_not_a_project(tmp_path, good_zip, studio, capsys, entries):
    archive = rewrite(good_zip, tmp_path / "odd.zip", entries)
    assert_refused(archive, tmp_path, studio, "has no project.json at its top level", capsys)


def test_encrypted_entries_are_refused(tmp_path, good_zip, studio, capsys):
    archive = _encrypted(good_zip, tmp_path / "locked.zip")
    assert_refused(archive, tmp_path, studio, "encrypted \\(password-protected\\).*without a password", capsys)


def test_files_outside_the_project_layout_are_dropped(tmp_path, good_zip, rendered):
    shot = project_dict(rendered)["shots"][0]
    extra = {"index.html": b"<script>alert(1)</script>", "anchors/evil.svg": b"<svg/>",
             f"takes/{shot['id']}/{shot['selected_take']}/notes.txt": b"x", "takes/unknown/t/clip.mp4": b"x"}
    store = unbundle_project(rewrite(good_zip, tmp_path / "extra.zip", extra), tmp_path / "film")
    assert not any((tmp_path / "film" / name).exists() for name in extra)
    assert tree(tmp_path / "film") == tree(rendered)
    assert [s.status for s in Director.open(store.root, None).statuses()] == [FRESH, FRESH]


# == 3. project.json ===============================================================================

def _nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return {"notes": value}


PROJECTS = [
    ("nested 40 levels", lambda p: {**p, **_nested(40)}, f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ("nested 100,000 levels", lambda p: (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
     f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ("invalid UTF-8", lambda p: json.dumps(p).replace('"one"', '"on\\u00e9"').encode().replace(b"\\u00e9", b"\xe9"),
     "not UTF-8 text \\(byte 0xe9 at position"),
    ("reference climbs out", lambda p: {**p, "reference": "../../../etc/passwd"}, "reference '../../../etc/passwd' is not a path inside"),
    ("reference absolute", lambda p: {**p, "reference": "/etc/passwd"}, "not a path inside the project"),
    ("anchor with backslashes", lambda p: {**p, "shots": [{**p["shots"][0], "anchor_image": "..\\..\\x.png"}]},
     "anchor_image .* is not a path inside the project"),
    ("anchor with a drive", lambda p: {**p, "shots": [{**p["shots"][0], "anchor_image": "C:/x.png"}]},
     "not a path inside the project"),
    ("too many shots", lambda p: {**p, "shots": [{"prompt": f"shot {i}"} for i in range(25)]},
     "has 25 shots; SVI Studio holds up to 24 \\(set SVI_MAX_SHOTS=25"),
    ("long prompt", lambda p: {**p, "shots": [{**p["shots"][0], "prompt": "x" * 100_001}]},
     "prompt is 100,001 characters long; the limit is 100,000"),
    ("long style prompt", lambda p: {**p, "style_prompt": "x" * 100_001}, "style prompt is 100,001 characters"),
    ("long name", lambda p: {**p, "name": "n" * 201}, "name is 201 characters long; the limit is 200"),
    ("over 32 MiB", lambda p: {**p, "notes": "x" * (33 * 1024**2)}, "is 33 MiB; no SVI Studio project file is over 32 MiB"),
]


@pytest.mark.parametrize("name, change, match", PROJECTS, ids=[p[0] for p in PROJECTS])
def test_hostile_project_json_is_refused_before_unpacking(tmp_path, good_zip, rendered, studio, capsys,
                                                          name, change, match):
    archive = with_project(good_zip, tmp_path / "evil.zip", change(project_dict(rendered)))
    assert_refused(archive, tmp_path, studio, match, capsys)


def test_a_hand_edited_project_folder_gets_the_same_messages(tmp_path, rendered, capsys):
    import shutil

    for name, change, match in PROJECTS[:-1]:
        root = tmp_path / "copy"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(rendered, root)
        data = change(project_dict(rendered))
        (root / "project.json").write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        with pytest.raises(ProjectError, match=match):
            ProjectStore.load(root)
        assert cli.main(["status", str(root)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err and str(tmp_path) not in err, name


def test_a_byte_order_mark_is_accepted(tmp_path, good_zip, rendered):
    archive = with_project(good_zip, tmp_path / "bom.zip", b"\xef\xbb\xbf" + json.dumps(project_dict(rendered)).encode())
    assert unbundle_project(archive, tmp_path / "film").project.to_dict() == ProjectStore.load(rendered).project.to_dict()


# == 4. take.json inside a bundle ===================================================================

TAKES = [
    ("unknown stitch-rule key", lambda t: json.dumps({**t, "stitch_rule": {**t["stitch_rule"], "drop_middle": 3}}).encode(),
     "stitch rule has an unknown key 'drop_middle'"),
    ("stitch rule not a number", lambda t: json.dumps({**t, "stitch_rule": {"drop_head": "all"}}).encode(),
     "drop_head must be a whole number"),
    ("invalid UTF-8", lambda t: json.dumps(t).encode().replace(b'"prompt"', b'"pr\xffompt"'), "not UTF-8 text"),
    ("nested", lambda t: json.dumps({**t, "info": _nested(50)}).encode(), "nested more than"),
]


@pytest.mark.parametrize("name, change, reason", TAKES, ids=[t[0] for t in TAKES])
def test_a_bad_take_json_makes_a_broken_take_with_a_reason(tmp_path, good_zip, rendered, draft, name, change, reason):
    shot = project_dict(rendered)["shots"][1]
    entry = f"takes/{shot['id']}/{shot['selected_take']}/take.json"
    take = json.loads((rendered / entry).read_text())
    archive = rewrite(good_zip, tmp_path / "take.zip", {entry: change(take)})
    director = Director.open(unbundle_project(archive, tmp_path / "film").root, draft)
    statuses = director.statuses()
    assert [s.status for s in statuses] == [FRESH, BROKEN] and reason in statuses[1].reason
    assert [e.shot_index for e in director.render() if e.kind == "clip"] == [1]  # and it renders again


# == 5. one set of limits for the editor and the loader ==============================================

def test_the_editor_and_the_loader_share_the_shot_limit(tmp_path, draft, good_zip, rendered, monkeypatch):
    monkeypatch.setenv("SVI_MAX_SHOTS", "3")
    director = Director.create(tmp_path / "film", draft, prompts=["a", "b", "c"], settings=TINY)
    saved = (director.root / "project.json").read_bytes()
    with pytest.raises(ProjectError, match="holds up to 3"):
        director.add_shot("d")
    assert len(director.project.shots) == 3 and (director.root / "project.json").read_bytes() == saved
    with pytest.raises(ProjectError, match="up to 3 shots; got 4"):
        Director.create(tmp_path / "film2", draft, prompts=["a", "b", "c", "d"])
    assert not (tmp_path / "film2").exists()  # refused before anything was written

    project = project_dict(rendered)
    project["shots"] += [{"prompt": "three"}, {"prompt": "four"}]
    archive = with_project(good_zip, tmp_path / "four.zip", project)
    with pytest.raises(ProjectError, match="has 4 shots; SVI Studio holds up to 3"):
        unbundle_project(archive, tmp_path / "a")
    monkeypatch.setenv("SVI_MAX_SHOTS", "4")
    assert len(unbundle_project(archive, tmp_path / "b").project.shots) == 4


def test_the_editor_refuses_the_texts_the_loader_refuses(tmp_path, draft):
    director = Director.create(tmp_path / "film", draft, prompts=["a"], settings=TINY)
    with pytest.raises(ProjectError, match="limit is 100,000"):
        director.set_story(style_prompt="x" * 100_001)
    director.set_story(name="n" * 500)  # names are cut to the limit, as before
    assert ProjectStore.load(director.root).project.name == "n" * 200
    with pytest.raises(ProjectError, match="limit is 100,000"):
        Director.create(tmp_path / "film2", draft, style_prompt="x" * 100_001)
    assert not (tmp_path / "film2").exists()


# == 6. downloading a project on a full disk ========================================================

def test_download_on_a_full_disk_leaves_no_partial_zip(tmp_path, rendered, monkeypatch):
    out = tmp_path / "exports" / "film.zip"
    earlier = bundle_project(rendered, out).read_bytes()
    real = zipfile.ZipFile.write
    calls = []

    def write(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:  # two files are already in the temporary zip
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", write)
    with pytest.raises(StorageError, match="could not save the project zip film.zip: the disk is full") as info:
        bundle_project(rendered, out)
    assert str(tmp_path) not in str(info.value)
    assert sorted(p.name for p in out.parent.iterdir()) == ["film.zip"] and out.read_bytes() == earlier


def test_download_is_refused_up_front_when_the_zip_cannot_fit(tmp_path, rendered, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(bundle_module.shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    written = []
    monkeypatch.setattr(zipfile.ZipFile, "write", lambda *args, **kwargs: written.append(args))
    with pytest.raises(StorageError, match="needs about .* MiB and the disk has 0 MiB free. Nothing was written"):
        bundle_project(rendered, tmp_path / "exports" / "film.zip")
    assert written == [] and list((tmp_path / "exports").iterdir()) == []
