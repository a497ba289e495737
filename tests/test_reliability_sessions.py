"""Many users on one app process: own results, one render at a time, a responsive page, and
no client-sent path that leaves the app's data folder.

The app runs in this process on the draft engine (loopback only, a free port). The data
folder is put outside the working and temp folders when possible, so the app serves it
through Gradio's allowed_paths — the configuration where a path escape would matter most.
bench/load_sessions.py is the bigger, stand-alone version of the first test.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
from gradio_raw import raw_call
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


from conftest import make_reference, serve_app  # noqa: E402

SESSIONS = 4
SHOTS = 2
SMALL = {"width": 128, "height": 80, "num_frames": 9}
LONG = {"width": 416, "height": 240, "num_frames": 161}  # one session's clips last long enough to probe during
SECRET = "TOP-SECRET-CONTENT-42"


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A folder outside the app's data folder holding a secret file."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "secret.txt").write_text(SECRET)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(url, demo, data_dir) of the app on the draft engine."""
    parent = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else tmp_path_factory.getbasetemp()
    data_dir = Path(tempfile.mkdtemp(prefix="svi-reliability-", dir=parent))
    try:
        with serve_app("draft", data_dir, max_shots=3) as (url, demo):
            yield url, demo, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def reference_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "reference.png"
    make_reference(160, 96).save(path)
    return path


def start(client: Client, reference: Path, name: str, settings: dict, prompts: list[str]) -> None:
    client.predict(name, api_name="/new_project")
    client.predict(handle_file(str(reference)), api_name="/set_reference")
    client.predict(settings, api_name="/update_settings")
    client.predict(prompts, api_name="/set_shots")


def take_intervals(data_dir: Path) -> list[tuple[float, float, str]]:
    """(started_at, finished_at, take id) of every take any session rendered, by start."""
    spans = []
    for path in data_dir.glob("sessions/*/project/takes/*/*/take.json"):
        take = json.loads(path.read_text())
        spans.append((take["timings"]["started_at"], take["timings"]["finished_at"], take["id"]))
    return sorted(spans)


# == many sessions ===============================================================================

def test_sessions_at_once_get_their_own_films_one_render_at_a_time(server, reference_png):
    url, demo, data_dir = server
    results: dict[str, dict] = {}
    failures: list[str] = []
    probes: list[tuple[float, float, float]] = []  # (sent, answered, seconds) of status calls during the renders
    own_probes: list[tuple[float, float, list[str]]] = []  # status of a session while that session renders
    done = threading.Event()

    def user(number: int) -> None:
        name = f"user{number}"
        prompts = [f"{name} shot {i} 'quoted' \"twice\"" for i in range(SHOTS)]
        try:
            client = Client(url, verbose=False)
            start(client, reference_png, name, LONG if number == 0 else SMALL, prompts)
            if number == 0:  # watch this session's own status while its render runs
                job = client.submit(api_name="/render")
                while not job.done():
                    sent = time.time()
                    status = client.predict(api_name="/status")
                    own_probes.append((sent, time.time(), [s["status"] for s in status["shots"]]))
                    time.sleep(0.05)
                job.result()
            else:
                client.predict(api_name="/render")
            results[name] = client.predict(api_name="/status")
            results[name]["_prompts"] = prompts
            results[name]["_film"] = client.predict(0, None, api_name="/export")
        except Exception as error:  # reported below, with the session that failed
            failures.append(f"{name}: {type(error).__name__}: {error}")

    def prober() -> None:
        client = Client(url, verbose=False)
        client.predict("prober", api_name="/new_project")
        while not done.is_set():
            sent = time.time()
            client.predict(api_name="/status")
            answered = time.time()
            probes.append((sent, answered, answered - sent))
            time.sleep(0.05)

    watcher = threading.Thread(target=prober, daemon=True)
    watcher.start()
    users = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(SESSIONS)]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join(timeout=300)
    done.set()
    watcher.join(timeout=30)

    assert not failures, failures
    assert sorted(results) == [f"user{n}" for n in range(SESSIONS)]
    for name, status in results.items():
        assert [s["prompt"] for s in status["shots"]] == status["_prompts"]  # its own shots, exactly
        assert [s["status"] for s in status["shots"]] == ["fresh"] * SHOTS
        others = [p for other, s in results.items() if other != name for p in s["_prompts"]]
        assert not any(p in json.dumps(status) for p in others)  # and nobody else's
        assert Path(status["_film"]).is_file()

    spans = take_intervals(data_dir)
    assert len(spans) == SESSIONS * SHOTS
    for (start_a, end_a, take_a), (start_b, _, take_b) in zip(spans, spans[1:]):
        assert start_b >= end_a - 1e-3, f"renders {take_a} and {take_b} overlap"  # one GPU job at a time

    # The page stays responsive: status requests were answered while clips were being rendered.
    during = [p for p in probes if any(s <= p[0] and p[1] <= e for s, e, _ in spans)]
    assert during, (probes[:5], spans)
    assert max(seconds for _, _, seconds in probes) < 15
    assert any("rendering" in statuses for _, _, statuses in own_probes), own_probes


# == paths from the client ========================================================================

def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as given (no client-side normalisation of '..' or '%2e')."""
    parsed = httpx.URL(url)
    connection = http.client.HTTPConnection(parsed.host, parsed.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_file_urls_that_leave_the_data_folder_are_refused(server, outside, reference_png):
    url, demo, data_dir = server
    from gradio.utils import get_upload_folder

    secret = outside / "secret.txt"
    client = Client(url, verbose=False)
    start(client, reference_png, "victim", SMALL, ["victim's shot"])
    (data_dir / "link-to-secret").symlink_to(secret)
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    cache_link = cache / f"svi-test-link-{os.getpid()}"
    cache_link.unlink(missing_ok=True)
    cache_link.symlink_to(secret)
    up = "../" * 12
    relative_to_data = os.path.relpath(secret, data_dir)
    attempts = [
        f"/gradio_api/file={secret}",
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={up}etc/passwd",
        f"/gradio_api/file={data_dir}/{relative_to_data}",
        f"/gradio_api/file={data_dir}/sessions/../../{relative_to_data}",
        f"/gradio_api/file={quote(str(secret), safe='')}",
        f"/gradio_api/file={'..%2F' * 12}etc%2Fpasswd",
        f"/gradio_api/file={'%2e%2e/' * 12}etc/passwd",
        f"/gradio_api/file={'%252e%252e%252f' * 12}etc%252fpasswd",
        f"/gradio_api/file={data_dir}/link-to-secret",
        f"/gradio_api/file={quote(str(data_dir / 'link-to-secret'))}",
        f"/gradio_api/file={cache_link}",
        f"/gradio_api/file=file://{secret}",
        f"/gradio_api/file={data_dir}%00/../{relative_to_data}",
    ]
    try:
        for path in attempts:
            status, body = raw_get(url, path)
            assert status != 200 and SECRET.encode() not in body and b"root:" not in body, (path, status)
    finally:
        cache_link.unlink(missing_ok=True)
    assert client.predict(api_name="/status")["shots"][0]["prompt"] == "victim's shot"


def test_file_inputs_that_leave_the_upload_folder_are_refused(server, outside, reference_png):
    url, demo, data_dir = server
    from gradio.utils import get_upload_folder

    secret = outside / "secret.txt"
    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / f"svi-test-input-link-{os.getpid()}.png"
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    paths = [
        str(secret),
        "/etc/passwd",
        f"{cache}/../../{os.path.relpath(secret, '/')}",
        f"{cache}/{'%2e%2e/' * 6}etc/passwd",
        str(link),
        f"http://127.0.0.1:{httpx.URL(url).port}/gradio_api/file={secret}",  # SSRF to ourselves
        f"file://{secret}",
        str(data_dir / "sessions"),
    ]
    try:
        for number, path in enumerate(paths):
            file = {"path": path, "meta": {"_type": "gradio.FileData"}}
            for api_name, data in (("set_reference", [None, file]), ("upload_project", [None, file]),
                                   ("export", [None, 0, file])):
                message = raw_call(url, demo, api_name, data, f"attacker-{number}-{api_name}")
                assert not message.get("success"), (api_name, path, message)
                assert SECRET not in json.dumps(message) and "root:" not in json.dumps(message), (api_name, path)
    finally:
        link.unlink(missing_ok=True)
    assert not list(data_dir.glob("sessions/*/project/reference.png")) or all(
        SECRET.encode() not in p.read_bytes() for p in data_dir.glob("sessions/*/**/*") if p.is_file())


def test_ids_and_names_from_the_client_are_never_paths(server, reference_png, tmp_path):
    url, demo, data_dir = server
    client = Client(url, verbose=False)
    start(client, reference_png, "../../../../etc/evil", SMALL, ["one"])
    client.predict(api_name="/render")
    assert not Path("/etc/evil").exists() and not list(data_dir.parent.glob("evil*"))
    for take_id in ("../../../../etc", "/etc/passwd", "..", "%2e%2e"):
        with pytest.raises(gradio_client.exceptions.AppError, match="(?i)has no take"):
            client.predict(0, take_id, api_name="/select_take")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)no example"):
        client.predict("../../presets/projects/cat-adventure", api_name="/load_example")

    # An uploaded bundle whose project.json names folders outside the project is refused.
    canary = data_dir / "sessions" / "canary"
    canary.mkdir(parents=True, exist_ok=True)
    (canary / "keep.txt").write_text("keep")
    zipped = tmp_path / "download.zip"
    shutil.copy(client.predict(api_name="/download_project"), zipped)
    with zipfile.ZipFile(zipped) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    project = json.loads(entries["project.json"])
    project["shots"][0]["takes"].append("../../../canary")
    entries["project.json"] = json.dumps(project).encode()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)not a valid id"):
        client.predict(handle_file(str(evil)), api_name="/upload_project")
    assert (canary / "keep.txt").read_text() == "keep"
    assert [s["status"] for s in client.predict(api_name="/status")["shots"]] == ["fresh"]


# == idle sessions ================================================================================

def test_idle_sessions_are_removed_but_never_while_rendering(tmp_path):
    from svi_studio.engines.draft import DraftEngine
    from svi_studio.ui.sessions import SessionRegistry

    registry = SessionRegistry(tmp_path, DraftEngine())
    idle, busy = registry.create(), registry.create()
    busy.job = "render"
    removed = registry.sweep(max_idle_s=60, now=time.time() + 120)
    assert removed == [idle.token]
    assert not idle.folder.exists() and busy.folder.is_dir()
    assert registry.get(idle.token) is None  # that page's next request starts a new project
    busy.job = None
    assert registry.sweep(max_idle_s=60, now=time.time() + 120) == [busy.token]
    fresh = registry.create()
    assert registry.sweep(max_idle_s=60) == [] and fresh.folder.is_dir()  # recently used: kept
