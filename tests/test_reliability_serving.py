"""What the running app lets out, and what it takes in: files, headers, disk, parameters, order.

Classes of failure, one section each:
1. File serving: no project file is reachable by URL wherever --data-dir is; session media only
   through unguessable per-file links that another session cannot use; safe content types;
   security headers; no server path or session token in any message.
2. Disk: per-session quota before renders, uploads and exports; idle sessions swept by default;
   Gradio's caches aged out; the upload size limit; no folder left by a refused upload.
3. API parameters: NaN, ±Infinity, None, text, huge and fractional numbers each get a message
   that names the parameter; a full disk while zipping the project gets one too.
4. Ordering: page edits are ordered by when they reached the server, never the browser's clock.

The app runs in this process on the draft engine (its clips are camera moves over the reference).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from svi_studio.project.model import ProjectError  # noqa: E402
from svi_studio.project.store import storage_error  # noqa: E402
from svi_studio.ui import jobs, runtime  # noqa: E402
from svi_studio.ui.app import build_app  # noqa: E402
from svi_studio.ui.serving import MediaShelf, SecurityHeaders, redact  # noqa: E402
from svi_studio.ui.studio import Studio  # noqa: E402

from conftest import CHROMIUM, LAUNCH_ARGS, make_reference, serve_app  # noqa: E402
from gradio_raw import raw_call, raw_event  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")

SMALL = {"width": 128, "height": 80, "num_frames": 9}
REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def reference_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "reference.png"
    make_reference(160, 96).save(path)
    return path


def data_dir_at(location: str, tmp_path_factory) -> Path:
    """A fresh data folder inside the repository, inside the temp folder, or elsewhere (/var/tmp
    stands in for a mounted volume: outside both the working and the temp folder)."""
    if location == "repository":
        parent = REPO / "test-artifacts"
        parent.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="svi-serving-", dir=parent))
    if location == "temp":
        return tmp_path_factory.mktemp("svi-serving")
    parent = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else Path.home()
    return Path(tempfile.mkdtemp(prefix="svi-serving-", dir=parent))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, demo, data_dir) on the draft engine, data folder outside the working and temp folders,
    uploads limited to 1 MB."""
    data_dir = data_dir_at("elsewhere", tmp_path_factory)
    try:
        with serve_app("draft", data_dir, max_shots=3, max_upload_mb=1) as (url, demo):
            yield url, demo, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def start(client: Client, reference: Path, prompts: list[str], render: bool = True) -> dict:
    client.predict("film", api_name="/new_project")
    client.predict(handle_file(str(reference)), api_name="/set_reference")
    client.predict(SMALL, api_name="/update_settings")
    status = client.predict(prompts, api_name="/set_shots")
    return client.predict(api_name="/render") if render else status


def session_of(demo, prompt: str):
    """The session whose first shot has this prompt."""
    return next(s for s in demo.studio.registry._sessions.values()
                if s.director.project.shots and s.director.project.shots[0].prompt == prompt)


def file_url(url: str, path: str | Path) -> str:
    return f"{url}gradio_api/file={path}"


# == 1. file serving ===============================================================================

@pytest.mark.parametrize("location", ["repository", "temp", "elsewhere"])
def test_no_project_file_is_served_by_path_wherever_the_data_folder_is(location, tmp_path_factory, reference_png):
    data_dir = data_dir_at(location, tmp_path_factory)
    try:
        with serve_app("draft", data_dir, max_shots=2) as (url, demo):
            client = Client(url, verbose=False)
            start(client, reference_png, [f"shot in {location}"])
            session = session_of(demo, f"shot in {location}")
            take = next(session.project_dir.glob("takes/*/*"))
            for name, text in (("evil.html", "<script>alert(1)</script>"), ("evil.svg", "<svg onload=alert(1)/>"),
                               ("notes.txt", "unknown file from a zip")):
                (take / name).write_text(text)
            client.predict(0, None, api_name="/export")  # exports still work with the data folder blocked
            files = [p for p in session.folder.rglob("*") if p.is_file()]
            names = {p.name for p in files}
            assert {"project.json", "take.json", "reference.png", "clip.mp4", "evil.html", "evil.svg"} <= names
            assert any(n.startswith("motion_") and n.endswith(".safetensors") for n in names)
            with httpx.Client() as http:
                for path in files:
                    for address in (file_url(url, path), file_url(url, quote(str(path)))):
                        response = http.get(address)
                        assert response.status_code in (403, 404), (location, path.name, response.status_code)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_published_media_have_unguessable_urls_another_session_cannot_use(server, reference_png):
    url, demo, data_dir = server
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)
    start(alice, reference_png, ["alice's shot"])
    start(bob, reference_png, ["bob's shot"], render=False)
    alice_session = session_of(demo, "alice's shot")

    film = raw_call(url, demo, "export", [None, 0, None], alice.session_hash)
    bundle = raw_call(url, demo, "download_project", [None], alice.session_hash)
    assert film["success"] and bundle["success"], (film, bundle)
    film_file, bundle_file = film["output"]["data"][1], bundle["output"]["data"][1]
    shelf = demo.studio.shelf
    for published in (film_file, bundle_file):
        path = Path(published["path"])
        assert shelf.contains(path) and path.parent.parent.name == shelf.key(alice_session.token)
        assert re.fullmatch(r"[0-9a-f]{32}", path.parent.name)  # a random folder per published file
        assert alice_session.token not in json.dumps(published) and str(data_dir) not in json.dumps(published)

    with httpx.Client() as http:
        video = http.get(file_url(url, film_file["path"]))
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
        archive = http.get(file_url(url, bundle_file["path"]))
        assert archive.status_code == 200 and archive.headers["content-type"] == "application/octet-stream"
        assert archive.headers["content-disposition"].startswith("attachment")
        guessed = Path(film_file["path"]).parent.with_name("0" * 32) / Path(film_file["path"]).name
        assert http.get(file_url(url, guessed)).status_code in (403, 404)

    # Bob sends Alice's published zip back as if it were his upload: refused, Alice's project stays hers.
    stolen = {"path": bundle_file["path"], "meta": {"_type": "gradio.FileData"}}
    message = raw_call(url, demo, "upload_project", [None, stolen], bob.session_hash)
    assert not message["success"] and "not an upload" in message["output"]["error"]
    assert [s["prompt"] for s in bob.predict(api_name="/status")["shots"]] == ["bob's shot"]


def test_only_media_files_are_published_and_each_session_has_its_own_shelf(tmp_path):
    shelf = MediaShelf(tmp_path / "shelf")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    token, other = "a" * 32, "b" * 32
    first = shelf.publish(token, source)
    assert first and token not in first and shelf.key(token) != shelf.key(other)
    assert shelf.publish(token, source) == first  # unchanged file: the same link
    assert Path(first).read_bytes() == b"video"
    time.sleep(0.01)
    source.write_bytes(b"new take")
    second = shelf.publish(token, source)
    assert second != first and not Path(first).exists()  # a rewritten file (the preview): a new URL, old one gone
    shelf.unpublish(token, source)
    assert not Path(second).exists()
    for name in ("page.html", "image.svg", "take.json", "motion_out.safetensors", "noext"):
        (tmp_path / name).write_text("<script>alert(1)</script>")
        assert shelf.publish(token, tmp_path / name) is None, name
    shelf.remove(token)
    assert not shelf.folder(token).exists()


def test_security_headers_and_no_monitoring_on_every_response(server):
    url, demo, data_dir = server
    with httpx.Client(base_url=url) as http:
        responses = [http.get(""), http.get("config"), http.get("gradio_api/info"),
                     http.get(f"gradio_api/file={data_dir}/sessions"), http.get("monitoring"),
                     http.get("monitoring/summary"), http.post("gradio_api/queue/join", content=b"{")]
    for response in responses:
        assert response.headers.get("x-content-type-options") == "nosniff", response.url
        assert response.headers.get("content-security-policy") == "frame-ancestors 'self'", response.url
    assert responses[5].status_code in (403, 404)  # Gradio's unauthenticated monitoring summary is off
    for page in responses[:3]:  # the page, its config and the API description name no server folder
        assert page.status_code == 200 and str(data_dir) not in page.text and str(REPO) not in page.text


def test_a_space_may_be_framed_by_huggingface(monkeypatch):
    import asyncio

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})

    sent = []

    async def send(message):
        sent.append(message)

    monkeypatch.setenv("SPACE_ID", "someone/svi-studio")
    asyncio.run(SecurityHeaders(app)({"type": "http"}, None, send))
    headers = dict(sent[0]["headers"])
    assert headers[b"content-security-policy"] == b"frame-ancestors 'self' https://huggingface.co https://*.huggingface.co"
    assert headers[b"x-content-type-options"] == b"nosniff"


def test_no_message_or_status_holds_a_server_path_or_session_token(server, reference_png, tmp_path, monkeypatch):
    """A scripted session through every endpoint, its error paths included: nothing the server
    sends back names the data folder or a session token."""
    url, demo, data_dir = server
    client = Client(url, verbose=False)
    hash_ = client.session_hash
    sent: list[str] = []

    def call(api_name: str, *data) -> dict:
        message = raw_call(url, demo, api_name, [None, *data], hash_)
        sent.append(json.dumps(message))
        return message

    not_an_image = tmp_path / "photo.png"
    not_an_image.write_text("not a picture")
    not_a_zip = tmp_path / "project.zip"
    not_a_zip.write_text("not a zip")
    bad_project = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad_project, "w") as archive:
        archive.writestr("project.json", "{ not json")

    sent.append(json.dumps(client.predict("paths", api_name="/new_project")))
    for bad in (not_an_image,):
        with pytest.raises(gradio_client.exceptions.AppError) as caught:
            client.predict(handle_file(str(bad)), api_name="/set_reference")
        sent.append(str(caught.value))
    for bad in (not_a_zip, bad_project):
        with pytest.raises(gradio_client.exceptions.AppError) as caught:
            Client(url, verbose=False).predict(handle_file(str(bad)), api_name="/upload_project")
        sent.append(str(caught.value))
    call("set_shots", ["one", "two"])
    call("render")  # no reference yet: an error
    sent.append(json.dumps(client.predict(handle_file(str(reference_png)), api_name="/set_reference")))
    call("update_settings", SMALL)
    call("update_settings", {"steps": 0})
    call("set_story", "style", "negative")
    call("render")
    call("regenerate", 7, False)
    call("select_take", 0, "../../etc")
    call("export", 0.5, None)
    call("download_project")
    call("status")
    call("cancel")
    session = demo.studio.registry.get(next(t for t in demo.studio.registry.tokens()
                                            if "paths" == demo.studio.registry.get(t).director.project.name))
    for metadata in session.project_dir.glob("takes/*/*/take.json"):
        metadata.unlink()  # broken takes: their reasons name the missing file
    broken = call("status")["output"]["data"][1]
    assert "broken" in [s["status"] for s in broken["shots"]] and "take.json is missing" in json.dumps(broken)
    page = demo.studio.presenter.model(session)
    sent.append(json.dumps([page["c0.head"], page["film"]]))

    # Disk full while zipping the project or writing the film: a message, without the folder.
    import svi_studio.project.bundle as bundle

    def full_disk_zip(project_dir, target):
        raise storage_error(OSError(errno.ENOSPC, "No space left on device"), "the project zip", Path(target).parent)

    def full_disk_export(self, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(bundle, "bundle_project", full_disk_zip)
    monkeypatch.setattr(runtime.Director, "export", full_disk_export)
    zipped, exported = call("download_project"), call("export", 0, None)
    assert "disk is full" in zipped["output"]["error"] and "disk is full" in exported["output"]["error"]

    # The page's own error path (a bug's message) is cleaned too.
    def broken(session):
        raise KeyError(str(session.project_dir / "project.json"))

    outputs = demo.studio.page(session.token, tuple(session.shown.get(k) for k in demo.studio.form_keys), broken)
    sent.append(json.dumps(outputs[1], default=str))

    secrets_ = [str(data_dir), str(data_dir.resolve()), *demo.studio.registry.tokens()]
    assert len(sent) >= 20
    for text in sent:
        assert "Traceback" not in text
        for secret in secrets_:
            assert secret not in text, (secret, text[:300])
    errors = [json.loads(t)["output"].get("error") for t in sent if t.startswith("{") and '"output"' in t]
    assert all(e != "Error" for e in errors if e is not None)  # never Gradio's bare error


def test_redact_drops_session_folders_and_tokens(tmp_path):
    root = tmp_path / "sessions"
    token = "0123456789abcdef" * 2
    text = f"could not save the clip: disk full ({root}/{token}/project/takes/x). Token {token}; data {tmp_path}."
    cleaned = redact(text, root, [tmp_path], [token])
    assert "project/takes/x" in cleaned and str(tmp_path) not in cleaned and token not in cleaned


# == 2. disk: quota, sweeping, caches, upload limit ==================================================

@pytest.fixture
def draft_studio(tmp_path) -> Studio:
    draft, _ = runtime.get_engine("draft")
    return Studio(draft, tmp_path / "data", max_shots=3, shelf=MediaShelf(tmp_path / "shelf"))


def ready_session(studio: Studio, prompts: list[str]):
    session = studio.registry.create()
    director = session.director
    director.set_reference(make_reference(160, 96))
    director.update_settings(**SMALL)
    director.set_shot(0, prompt=prompts[0])
    for prompt in prompts[1:]:
        director.add_shot(prompt)
    return session


QUOTA_MESSAGE = r"(?i)this session uses [\d.]+ (KB|MB|GB) of its [\d.]+ (KB|MB|GB).*Delete shots.*download the project"


def form_of(studio: Studio, session) -> tuple:
    return tuple(session.shown.get(key) for key in studio.form_keys)


def test_a_refused_project_upload_leaves_no_session_folder(draft_studio, tmp_path):
    studio = draft_studio
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("project.json", "{ not json")
    studio.registry.create()
    before = sorted(studio.registry.root.iterdir())
    with pytest.raises(ProjectError, match="damaged"):
        studio.upload_project(None, str(damaged))
    assert sorted(studio.registry.root.iterdir()) == before


def test_quota_is_checked_before_render_upload_and_export_and_says_how_much(draft_studio, tmp_path, reference_png):
    studio = draft_studio
    session = ready_session(studio, ["one", "two"])
    list(jobs.render_all(session))
    used = studio.registry.disk_use(session)
    assert used > 0
    studio.quota_bytes = used  # full
    outputs = list(studio.page_job(session.token, form_of(studio, session), lambda s: jobs.regenerate(s, 0)))
    assert re.search(QUOTA_MESSAGE.replace("(?i)", "(?i)cannot render: "), outputs[-1][1]["value"]), outputs[-1][1]
    with pytest.raises(ProjectError, match=QUOTA_MESSAGE.replace("(?i)", "(?i)cannot export the film: ")):
        studio.export(session, None, 0)
    with pytest.raises(ProjectError, match=QUOTA_MESSAGE.replace("(?i)", "(?i)cannot upload this image: ")):
        studio.set_reference(session, str(reference_png))
    zipped = studio.download_project(session)  # never refused: it is how a user over quota keeps their work
    assert zipped.is_file()

    studio.quota_bytes = zipfile.ZipFile(zipped).infolist()[0].file_size  # smaller than the project unpacked
    before = sorted(studio.registry.root.iterdir())
    with pytest.raises(ProjectError, match="(?i)cannot open this project: .*needs about"):
        studio.upload_project(None, str(zipped))
    assert sorted(studio.registry.root.iterdir()) == before  # no session folder left behind
    assert [s.status for s in session.director.statuses()] == ["fresh", "fresh"]  # nothing lost


def test_a_render_stops_at_the_quota_after_its_current_clip(draft_studio):
    studio = draft_studio
    session = ready_session(studio, ["one", "two", "three"])
    studio.quota_bytes = studio.registry.disk_use(session) + 1  # room for the first clip only
    outputs = list(studio.page_job(session.token, form_of(studio, session), lambda s: jobs.render_all(s)))
    notice = outputs[-1][1]["value"]
    assert re.search(QUOTA_MESSAGE.replace("(?i)", "(?i)render more shots: "), notice) and "Finished shots are kept" in notice
    assert [s.status for s in session.director.statuses()] == ["fresh", "missing", "missing"]
    assert session.job is None


def test_exports_keep_only_the_newest_film(draft_studio):
    studio = draft_studio
    session = ready_session(studio, ["one"])
    list(jobs.render_all(session))
    first, _ = studio.export(session, None, 0)
    first_link = Path(studio.publish(session, first))
    time.sleep(1.1)  # export names carry the second
    second, _ = studio.export(session, None, 0)
    assert not first.exists() and not first_link.exists() and second.is_file()
    assert sorted(p.name for p in session.exports_dir.glob("*.mp4") if p != session.preview_path) == [second.name]


def test_idle_sessions_and_their_published_files_are_swept_by_default(draft_studio, monkeypatch, tmp_path):
    studio = draft_studio
    registry = studio.registry
    registry.max_idle_s = 3600
    idle, active = registry.create(), registry.create()
    clip = idle.exports_dir / "film.mp4"
    clip.write_bytes(b"film")
    published = Path(studio.publish(idle, clip))
    idle.last_used = time.time() - 7200
    registry._last_sweep = 0.0
    assert registry.get(active.token) is active  # any request may run the (rate-limited) sweep
    assert not idle.folder.exists() and not published.exists() and active.folder.is_dir()

    for name in ("SVI_SESSION_TTL_HOURS", "SVI_SESSION_QUOTA_GB", "SVI_MAX_UPLOAD_MB"):
        monkeypatch.delenv(name, raising=False)
    demo = build_app("draft", tmp_path / "defaults", max_shots=1)
    assert demo.studio.registry.max_idle_s == 24 * 3600  # on everywhere, not only on a Space
    assert demo.delete_cache == (3600, 24 * 3600)  # Gradio's uploads and outputs age out too
    assert demo.studio.quota_bytes == 2 * 2**30 and demo.max_upload_bytes == 2 * 2**30
    monkeypatch.setenv("SVI_SESSION_TTL_HOURS", "0")
    monkeypatch.setenv("SVI_SESSION_QUOTA_GB", "0.5")
    demo = build_app("draft", tmp_path / "configured", max_shots=1)
    assert demo.studio.registry.max_idle_s is None and demo.studio.quota_bytes == 2**29
    assert demo.max_upload_bytes == 2**29


def test_uploads_over_the_size_limit_are_refused_by_the_server(server, tmp_path):
    url, demo, data_dir = server
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (1024 * 1024 + 4096))
    with httpx.Client(base_url=url) as http, open(big, "rb") as handle:
        response = http.post("gradio_api/upload", files={"files": ("big.png", handle, "image/png")})
    assert response.status_code == 413, response.text
    assert str(data_dir) not in response.text


def test_building_the_app_writes_nothing_into_the_package(tmp_path):
    build_app("draft", tmp_path / "data", max_shots=1)
    package = REPO / "svi_studio"
    assert not list(package.rglob("*.pyi"))  # Gradio writes one beside a module subclassing a component


def test_a_data_folder_holding_gradios_upload_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "data" / "gradio"))
    with pytest.raises(ValueError, match="contains Gradio's upload folder"):
        build_app("draft", tmp_path / "data", max_shots=1)


# == 3. API parameters ==============================================================================

BAD_PARAMETERS = [
    ("regenerate", [NAN, False], "shot index"),
    ("regenerate", [INF, False], "shot index"),
    ("regenerate", [-INF, False], "shot index"),
    ("regenerate", [None, False], "shot index"),
    ("regenerate", ["second", False], "shot index"),
    ("regenerate", [1.5, False], "shot index"),
    ("regenerate", [10**30, False], "no shot"),
    ("regenerate", [-1, False], "no shot"),
    ("regenerate", [0, "no"], "cascade"),
    ("regenerate", [0, 2], "cascade"),
    ("regenerate", [0, [True]], "cascade"),
    ("select_take", [NAN, "x"], "shot index"),
    ("select_take", [None, "x"], "shot index"),
    ("select_take", ["0; rm -rf /", "x"], "shot index"),
    ("export", [NAN, None], "crossfade"),
    ("export", [INF, None], "crossfade"),
    ("export", ["long", None], "crossfade"),
    ("export", [-0.5, None], "crossfade"),
    ("export", [10**30, None], "crossfade"),
    ("update_settings", [{"steps": NAN}], "steps"),
    ("update_settings", [{"fps": INF}], "fps"),
    ("update_settings", [{"guidance": -INF}], "guidance"),
    ("update_settings", [{"num_frames": None}], "num_frames"),
    ("update_settings", [{"width": "wide"}], "width"),
    ("update_settings", [{"steps": 10**30}], "steps"),
    ("update_settings", [{"height": True}], "height"),
    ("update_settings", ["steps=4"], "JSON object"),
    ("update_settings", [{"speed": 3}], "speed"),
]


@pytest.mark.parametrize("api_name, data, named", BAD_PARAMETERS,
                         ids=[f"{a}-{json.dumps(d)[:30]}" for a, d, _ in BAD_PARAMETERS])
def test_bad_numbers_get_a_message_naming_the_parameter(server, reference_png, api_name, data, named):
    url, demo, data_dir = server
    message = raw_call(url, demo, api_name, [None, *data], f"params-{api_name}-{abs(hash(json.dumps(data)))}")
    assert message.get("success") is False, message
    error = message["output"].get("error")
    assert isinstance(error, str) and error != "Error" and "Traceback" not in error, message
    assert named.lower() in error.lower(), error
    assert str(data_dir) not in error


def test_bad_numbers_through_gradio_client_get_the_same_messages(server):
    url, demo, data_dir = server
    client = Client(url, verbose=False)
    client.predict("", api_name="/new_project")
    for args, api_name, named in (((None, False), "/regenerate", "shot index"), (("two", True), "/regenerate", "shot index"),
                                  ((0, "maybe"), "/regenerate", "cascade"), ((10**20, "x"), "/select_take", "no shot"),
                                  (("loud", None), "/export", "crossfade")):
        with pytest.raises(gradio_client.exceptions.AppError, match=f"(?i){named}"):
            client.predict(*args, api_name=api_name)
    assert client.predict(api_name="/status")["shots"]  # the session still works


def test_bad_numbers_in_the_page_form_get_a_message(server):
    """The page's own events carry the settings form; a hand-made client can put anything in it."""
    url, demo, data_dir = server
    fn_index, inputs = page_event(demo, "style-prompt", "blur")
    components = {c["id"]: c for c in demo.get_config_file()["components"]}
    ids = {components[i].get("props", {}).get("elem_id"): i for i in inputs}
    for elem_id, value, named in (("setting-fps", "fast", "fps"), ("setting-steps", NAN, "steps"),
                                  ("setting-width", INF, "width"), ("setting-frames", 10**30, "num_frames"),
                                  ("setting-guidance", "-Infinity", "guidance")):
        data = [value if i == ids[elem_id] else components[i].get("props", {}).get("value") for i in inputs]
        message = raw_event(url, fn_index, data, f"form-{elem_id}-{time.time_ns()}")
        assert message["success"], message  # the event runs; the bad value is reported, the rest is saved
        notice = message["output"]["data"][1]["value"]
        assert named in notice.lower() and "Traceback" not in notice, notice


def test_bad_seeds_typed_on_the_page_get_a_message(draft_studio):
    studio = draft_studio
    session = studio.registry.create()
    studio.view(session, "")
    seed = session.director.project.shots[0].seed
    for typed in ("NaN", "inf", "1e400", str(2**70), "-1", "twelve"):
        values = dict(zip(studio.form_keys, form_of(studio, session)))
        values["c0.seed"] = typed
        outputs = studio.page(session.token, tuple(values[k] for k in studio.form_keys), studio.sync)
        assert "seed" in outputs[1]["value"].lower(), (typed, outputs[1])
        assert session.director.project.shots[0].seed == seed


# == 4. ordering =====================================================================================

def page_event(demo, elem_id: str, event: str) -> tuple[int, list[int]]:
    """(fn index, input component ids) of the page event `event` of the component `elem_id`."""
    config = demo.get_config_file()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    dependency = next(d for d in config["dependencies"] if [component, event] in [list(t) for t in d["targets"]])
    return dependency["id"], dependency["inputs"]


def test_the_page_never_sends_the_browsers_clock(server):
    url, demo, data_dir = server
    scripts = [d.get("js") or "" for d in demo.get_config_file()["dependencies"]]
    assert not any("Date.now" in js or "new Date" in js for js in scripts)


def test_edits_are_applied_in_the_order_they_reach_the_server(server):
    url, demo, data_dir = server
    fn_index, inputs = page_event(demo, "style-prompt", "blur")
    components = {c["id"]: c for c in demo.get_config_file()["components"]}
    style_id = next(i for i in inputs if components[i].get("props", {}).get("elem_id") == "style-prompt")
    session_hash = f"ordering-{time.time_ns()}"

    def send(style: str) -> None:
        data = [style if i == style_id else components[i].get("props", {}).get("value") for i in inputs]
        assert raw_event(url, fn_index, data, session_hash)["success"]

    before = set(demo.studio.registry.tokens())
    send("first edit")
    session = demo.studio.registry.get(next(iter(set(demo.studio.registry.tokens()) - before)))
    first_arrival = session.form_arrival
    assert session.director.project.style_prompt == "first edit" and isinstance(first_arrival, int)
    send("second edit")
    assert session.director.project.style_prompt == "second edit"
    assert session.form_arrival > first_arrival  # numbered by the server, in arrival order


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_a_browser_clock_that_steps_back_drops_no_edit(server):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    url, demo, data_dir = server
    before = set(demo.studio.registry.tokens())

    def style_of_new_session() -> str | None:
        tokens = set(demo.studio.registry.tokens()) - before
        return demo.studio.registry.get(next(iter(tokens))).director.project.style_prompt if tokens else None

    def wait_for(value: str) -> None:
        deadline = time.time() + 30
        while style_of_new_session() != value and time.time() < deadline:
            time.sleep(0.1)
        assert style_of_new_session() == value

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            box = page.locator("#style-prompt textarea")
            box.wait_for(timeout=60_000)
            page.evaluate("() => { Date.now = () => 2000000000000; }")
            box.fill("typed while the clock read 2033")
            page.locator("#film-summary").click()  # blur: the edit is sent
            wait_for("typed while the clock read 2033")
            page.evaluate("() => { Date.now = () => 1000000000000; }")  # the clock steps back 31 years
            box.fill("typed after the clock stepped back")
            page.locator("#film-summary").click()
            wait_for("typed after the clock stepped back")
        finally:
            browser.close()
