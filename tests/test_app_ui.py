"""The web app without a browser: handlers, sessions, and the named API through gradio_client.

The app runs on the tiny engine (random weights: its clips are noise) at 21 frames
per shot, in this process, on a free port, with a temporary data folder.
"""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import httpx
from gradio_raw import raw_call
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from svi_studio.engines.base import Cancelled, OutOfMemory  # noqa: E402
from svi_studio.project.model import ProjectError  # noqa: E402
from svi_studio.settings import ClipSettings  # noqa: E402
from svi_studio.ui import gpu, jobs, runtime, uploads, views  # noqa: E402
from svi_studio.ui.editing import parse_card_action  # noqa: E402
from svi_studio.ui.sessions import CancelFlag  # noqa: E402
from svi_studio.ui.studio import Studio  # noqa: E402
from svi_studio.video_io import probe  # noqa: E402

from conftest import serve_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")  # gr.Warning outside a request

FRAMES = 21  # 4k+1; with one motion latent every later shot keeps 21 - 5 = 16 frames
PROMPTS = ['A cat wakes up, "slow" push-in,\nthen looks left', "It jumps down, pan left", "It runs off; tracking shot"]


@pytest.fixture(scope="module")
def tiny():
    engine, _ = runtime.get_engine("tiny")
    return engine


@pytest.fixture(scope="module")
def reference_png(reference_image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "reference.png"
    reference_image.save(path)
    return path


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    """(url, demo) of the app on the tiny engine, served from a thread."""
    with serve_app("tiny", tmp_path_factory.mktemp("svi-data"), max_shots=6) as served:
        yield served


def client_for(url: str) -> Client:
    return Client(url, verbose=False)


def start_film(client: Client, reference: Path, prompts: list[str]) -> dict:
    client.predict("", api_name="/new_project")
    status = client.predict(handle_file(str(reference)), api_name="/set_reference")
    assert "Clips will be" in " ".join(status["notices"])
    client.predict({"num_frames": FRAMES}, api_name="/update_settings")
    return client.predict(prompts, api_name="/set_shots")


def session_folders(demo) -> dict[str, Path]:
    return {token: session.folder for token, session in demo.studio.registry._sessions.items()}


# -- end to end through the named API ------------------------------------------------------------


def test_named_endpoints_are_listed(server):
    url, _ = server
    names = set(client_for(url).view_api(print_info=False, return_format="dict")["named_endpoints"])
    for name in ("new_project", "load_example", "upload_project", "set_reference", "set_story", "set_shots",
                 "update_settings", "render", "regenerate", "select_take", "cancel", "export",
                 "download_project", "status"):
        assert f"/{name}" in names


def test_client_drives_a_film_end_to_end(server, reference_png, tmp_path):
    url, _ = server
    client = client_for(url)
    status = start_film(client, reference_png, PROMPTS)
    assert [shot["prompt"] for shot in status["shots"]] == PROMPTS  # newlines, commas and quotes kept
    assert [shot["status"] for shot in status["shots"]] == ["missing"] * 3

    status = client.predict(api_name="/render")
    assert [shot["status"] for shot in status["shots"]] == ["fresh"] * 3
    assert all(shot["seam_score"] is not None for shot in status["shots"][1:])
    assert "clip_path" not in status["shots"][0]  # no server paths leave the server
    first_takes = [shot["selected_take"] for shot in status["shots"]]

    status = client.predict(1, False, api_name="/regenerate")
    shots = status["shots"]
    assert shots[0]["selected_take"] == first_takes[0]  # upstream never re-rendered
    assert shots[1]["selected_take"] != first_takes[1] and len(shots[1]["takes"]) == 2
    assert shots[2]["status"] == "stale" and "different take" in shots[2]["reason"]

    status = client.predict(1, True, api_name="/regenerate")  # regenerate from here
    assert [shot["status"] for shot in status["shots"]] == ["fresh"] * 3
    assert len(status["shots"][2]["takes"]) == 2

    exported = client.predict(0, None, api_name="/export")
    assert probe(exported)["frames"] == FRAMES + 2 * (FRAMES - 5)

    # Going back to an earlier take makes the shot after it stale.
    status = client.predict(1, first_takes[1], api_name="/select_take")
    assert status["shots"][1]["selected_take"] == first_takes[1]
    assert status["shots"][2]["status"] == "stale"


def test_examples_load_with_their_reference(server):
    url, demo = server
    presets = [path.stem for path in demo.studio.presets]
    if not presets:
        pytest.skip("no project presets installed")
    assert presets[0] == "cat-adventure" or "cat-adventure" not in presets  # Cat Adventure first
    status = client_for(url).predict(presets[0], api_name="/load_example")
    assert status["has_reference"] and len(status["shots"]) >= 1
    assert all(shot["prompt"].strip() for shot in status["shots"])
    with pytest.raises(gradio_client.exceptions.AppError, match="no example"):
        client_for(url).predict("../../etc/passwd", api_name="/load_example")


def test_user_errors_come_back_as_messages(server, tmp_path):
    url, _ = server
    client = client_for(url)
    client.predict("", api_name="/new_project")
    client.predict(["a shot"], api_name="/set_shots")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)no reference image"):
        client.predict(api_name="/render")
    not_an_image = tmp_path / "photo.png"
    not_an_image.write_text("this is not a picture")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)not an image"):
        client.predict(handle_file(str(not_an_image)), api_name="/set_reference")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)steps must be at least 1"):
        client.predict({"steps": 0}, api_name="/update_settings")
    with pytest.raises(gradio_client.exceptions.AppError, match="(?i)no usable take"):
        client.predict(0, None, api_name="/export")
    assert client.predict(api_name="/status")["shots"][0]["prompt"] == "a shot"  # the project survived


# -- sessions ---------------------------------------------------------------------------------------


def test_two_sessions_see_only_their_own_project(server, reference_png):
    url, demo = server
    alice, bob = client_for(url), client_for(url)
    results: dict[str, dict] = {}

    def work(name: str, client: Client, prompts: list[str]) -> None:
        start_film(client, reference_png, prompts)
        results[name] = client.predict(api_name="/render")

    threads = [threading.Thread(target=work, args=("alice", alice, ["alice one", "alice two"])),
               threading.Thread(target=work, args=("bob", bob, ["bob only"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert [s["prompt"] for s in results["alice"]["shots"]] == ["alice one", "alice two"]
    assert [s["prompt"] for s in results["bob"]["shots"]] == ["bob only"]
    assert [s["prompt"] for s in alice.predict(api_name="/status")["shots"]] == ["alice one", "alice two"]

    alice_film, bob_film = alice.predict(0, None, api_name="/export"), bob.predict(0, None, api_name="/export")
    assert probe(alice_film)["frames"] == FRAMES + FRAMES - 5 and probe(bob_film)["frames"] == FRAMES

    # On disk: each project in its own session folder, holding only its own shots.
    owners = {}
    for token, folder in session_folders(demo).items():
        project = json.loads((folder / "project" / "project.json").read_text())
        owners[tuple(shot["prompt"] for shot in project["shots"])] = folder
    alice_folder, bob_folder = owners[("alice one", "alice two")], owners[("bob only",)]
    assert alice_folder != bob_folder and alice_folder.parent == bob_folder.parent
    assert list(alice_folder.glob("exports/*.mp4")) and list(bob_folder.glob("exports/*.mp4"))


def test_crafted_requests_cannot_reach_another_session(server, reference_png):
    url, demo = server
    victim = client_for(url)
    start_film(victim, reference_png, ["victim's secret shot"])
    victim_token, victim_folder = next((token, folder) for token, folder in session_folders(demo).items()
                                       if "victim's secret shot" in (folder / "project" / "project.json").read_text())
    reference_file = victim_folder / "project" / "reference.png"

    # 1. Sending the victim's token where the session state goes: State comes from the server, not the request.
    message = raw_call(url, demo, "status", [victim_token], "attacker-session-1")
    assert message["success"]
    status = message["output"]["data"][1]
    assert "victim's secret shot" not in json.dumps(status)

    # 2. A file input pointing at the victim's files is refused (only uploads are accepted).
    message = raw_call(url, demo, "set_reference",
                        [None, {"path": str(reference_file), "meta": {"_type": "gradio.FileData"}}], "attacker-session-2")
    assert not message["success"]

    # 3. Session files are not served by path.
    with httpx.Client(base_url=url) as http:
        assert http.get(f"gradio_api/file={reference_file}").status_code == 403

    # 4. Session tokens and card actions from the page are validated, never used as paths.
    studio = demo.studio
    with pytest.raises(ProjectError):
        studio.registry.folder("../" + victim_token)
    assert studio.registry.get("0" * 32) is None
    assert parse_card_action('{"do": "delete", "shot": -1}', 6) is None
    assert parse_card_action("not json", 6) is None
    assert parse_card_action('{"do": "delete", "shot": 0, "id": 7, "rev": "x"}', 6).shot_id is None
    assert victim.predict(api_name="/status")["shots"][0]["prompt"] == "victim's secret shot"


# -- handlers without a server -------------------------------------------------------------------


@pytest.fixture
def studio(tiny, tmp_path) -> Studio:
    return Studio(tiny, tmp_path, max_shots=4)


def form_of(studio: Studio, session, **changes) -> tuple:
    values = {key: session.shown.get(key) for key in studio.form_keys}
    values.update(changes)
    return tuple(values[key] for key in studio.form_keys)


def test_page_keeps_prompts_exactly_and_only_saves_what_changed(studio):
    session = studio.registry.create()
    studio.view(session, "")
    typed = '  "Quoted", commas,\nand a second line  '
    studio.page(session.token, form_of(studio, session, **{"c0.prompt": typed}), studio.sync)
    assert session.director.project.shots[0].prompt == typed
    seed_before = session.director.project.shots[0].seed
    # An invalid seed is reported, not saved; the rest of the form still is.
    studio.page(session.token, form_of(studio, session, **{"c0.seed": "twelve", "style": "watercolour"}), studio.sync)
    assert session.director.project.shots[0].seed == seed_before
    assert session.director.project.style_prompt == "watercolour"


def test_an_older_form_snapshot_never_overrides_a_newer_one(studio):
    """A render that waited in the queue carries the form from when it was clicked; edits the
    user made while it waited (applied by later events) must survive it."""
    session = studio.registry.create()
    studio.view(session, "")
    clicked = form_of(studio, session, **{"c0.prompt": "as typed before clicking"})  # arrives first (number 1)
    studio.page(session.token, form_of(studio, session, **{"c0.prompt": "edited while queued"}),
                studio.sync, arrival=2)
    studio.page(session.token, clicked, studio.sync, arrival=1)
    assert session.director.project.shots[0].prompt == "edited while queued"


def test_page_turns_errors_into_messages(studio, tmp_path):
    session = studio.registry.create()
    studio.view(session, "")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\x00" * 64)
    outputs = studio.page(session.token, form_of(studio, session), lambda s: studio.set_reference(s, str(junk)))
    assert "not an image" in outputs[1]["value"]
    outputs = list(studio.page_job(session.token, form_of(studio, session), lambda s: jobs.render_all(s)))
    assert "No reference image" in outputs[-1][1]["value"]
    assert session.director.project.shots  # the project is intact


def test_upload_helpers_refuse_bad_files(tmp_path):
    (tmp_path / "x.png").write_text("no")
    with pytest.raises(uploads.UploadError, match="safetensors"):
        uploads.keep_lora(tmp_path / "x.ckpt", tmp_path, "style")
    with pytest.raises(uploads.UploadError, match="not a project zip"):
        uploads.check_zip(tmp_path / "x.png")


def _ready_session(studio: Studio, prompts: list[str], reference: Image.Image):
    session = studio.registry.create()
    director = session.director
    director.set_reference(reference)
    director.update_settings(num_frames=FRAMES)
    director.set_shot(0, prompt=prompts[0])
    for prompt in prompts[1:]:
        director.add_shot(prompt)
    return session


def test_render_job_streams_start_and_clip_per_shot_and_cancel_keeps_finished(studio, reference_image):
    session = _ready_session(studio, ["one", "two", "three"], reference_image)
    kinds = []
    cancel_after_first = []

    class Progress:
        def __call__(self, fraction, desc=None):
            if cancel_after_first and not session.cancel.is_set():
                session.cancel.set()

    for update in jobs.render_all(session, Progress()):
        kinds.append((update.kind, update.shot_index))
        if update.kind == "clip":
            cancel_after_first.append(True)
    assert kinds[:3] == [("start", 0), ("clip", 0), ("start", 1)]
    assert kinds[-1][0] == "cancelled"
    statuses = [s.status for s in session.director.statuses()]
    assert statuses == ["fresh", "missing", "missing"]  # the finished shot is kept, nothing half-written
    assert not session.cancel.is_set() and session.job is None
    assert [u.kind for u in jobs.render_all(session)].count("clip") == 2  # and the rest renders later


def test_out_of_memory_is_a_message_and_earlier_shots_survive(studio, tiny, monkeypatch, reference_image):
    session = _ready_session(studio, ["one", "two"], reference_image)
    real = tiny.generate_clip
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OutOfMemory("the GPU ran out of memory rendering 96x64; lower the resolution.")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny, "generate_clip", flaky)
    outputs = list(studio.page_job(session.token, form_of(studio, session), lambda s: jobs.render_all(s)))
    assert "ran out of memory" in outputs[-1][1]["value"]
    assert [s.status for s in session.director.statuses()] == ["fresh", "missing"]
    assert session.job is None


def test_gpu_unit_takes_and_returns_plain_data(studio, tmp_path, reference_image):
    """ZeroGPU pickles the GPU function's arguments and result."""
    flag = CancelFlag(tmp_path / "cancel")
    copy = pickle.loads(pickle.dumps(flag))
    flag.set()
    assert copy.is_set()  # the forked worker sees the flag file
    flag.clear()
    assert not copy.is_set()
    session = _ready_session(studio, ["one"], reference_image)
    result = runtime.render_shot_on_gpu(str(session.project_dir), 0, session.director.project.shots[0].id,
                                        studio.engine.preset_id, copy)
    assert result["ok"] and pickle.loads(pickle.dumps(result)) == result
    event = runtime.ClipEvent(**result["event"])
    session.director.adopt_take(event.shot_id, event.take_id)
    assert session.director.statuses()[0].status == "fresh"
    flag.set()
    with pytest.raises(Cancelled):
        runtime.render_shot(session.director, 0, flag)


def test_gpu_duration_estimate():
    small = gpu.estimate_seconds(ClipSettings(steps=4, guidance=1.0), "wan")
    big = gpu.estimate_seconds(ClipSettings(steps=40, guidance=5.0), "wan")
    assert gpu.MIN_S <= small < big <= gpu.MAX_S
    assert gpu.estimate_seconds(ClipSettings(width=1280, height=720, steps=4, guidance=1.0), "wan") > small
    assert gpu.estimate_seconds(ClipSettings(), "draft") == gpu.DRAFT_S


def test_views_flag_seams_and_escape_text():
    assert "svi-cut-warn" in views.cut_marker(2, views.SEAM_WARN + 0.5)
    assert "svi-cut-ok" in views.cut_marker(2, 1.0)
    assert "&lt;script&gt;" in views.status_badge("stale", "<script>")
    assert views.parse_lora_weights("a = 0.5\n# note\nb=1") == {"a": 0.5, "b": 1.0}
    with pytest.raises(ValueError):
        views.parse_lora_weights("just a name")


def test_a_style_lora_that_changes_nothing_is_refused_by_name(studio, tiny, tmp_path):
    import torch
    from safetensors.torch import save_file

    session = studio.registry.create()
    foreign = tmp_path / "anime-style.safetensors"
    save_file({"unet.down.0.lora_A.weight": torch.zeros(4, 4), "unet.down.0.lora_B.weight": torch.zeros(4, 4)}, foreign)
    with pytest.raises(ValueError, match="anime-style.safetensors: no key of this LoRA names a Wan transformer module"):
        studio.add_style_lora(session, str(foreign))
    pickled = tmp_path / "style.ckpt"
    pickled.write_bytes(b"\x80\x04")
    with pytest.raises(uploads.UploadError, match="safetensors"):
        studio.add_style_lora(session, str(pickled))
    assert not tiny.loras.specs and session.director.project.settings.lora_weights == ()


def test_style_loras_are_unavailable_on_the_draft_engine(tmp_path):
    draft, _ = runtime.get_engine("draft")
    studio = Studio(draft, tmp_path, max_shots=2)
    assert not studio.has_loras
    with pytest.raises(Exception, match="unavailable on the draft engine"):
        studio.add_style_lora(studio.registry.create(), str(tmp_path / "x.safetensors"))
    assert "not diffusion output" in views.engine_banner(draft)


def _forked_gpu_worker(arguments, results):  # runs in the forked child, like a ZeroGPU worker
    results.put(runtime.render_shot_on_gpu(*pickle.loads(arguments)))


def test_gpu_call_in_a_forked_worker_keeps_the_parents_edits(tmp_path, reference_image):
    """ZeroGPU runs each @spaces.GPU call in a forked process with pickled arguments: the take it
    writes must reach the parent's project, and edits made in the parent meanwhile must survive."""
    import multiprocessing

    draft, _ = runtime.get_engine("draft")
    studio = Studio(draft, tmp_path, max_shots=3)
    session = _ready_session(studio, ["a slow push-in", "pan left"], reference_image)
    session.director.update_settings(width=160, height=96)
    shot = session.director.project.shots[0]
    arguments = pickle.dumps((str(session.project_dir), 0, shot.id, draft.preset_id, session.cancel, None, 0, 1))

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    worker = context.Process(target=_forked_gpu_worker, args=(arguments, results), daemon=True)
    worker.start()
    session.director.set_shot(1, prompt="pan left, then tilt up")  # the user keeps editing meanwhile
    result = results.get(timeout=120)
    worker.join(timeout=30)
    assert result["ok"], result

    event = runtime.ClipEvent(**result["event"])
    session.director.adopt_take(event.shot_id, event.take_id)
    reopened = runtime.Director.open(session.project_dir, draft)
    assert reopened.project.shots[0].selected_take == result["event"]["take_id"]
    assert reopened.project.shots[1].prompt == "pan left, then tilt up"
    assert [s.status for s in reopened.statuses()] == ["fresh", "missing"]


def test_a_cancelled_reroll_keeps_the_shot_as_it_was(studio, reference_image):
    session = _ready_session(studio, ["one", "two"], reference_image)
    list(jobs.render_all(session))

    def shot():  # looked up each time: a job may reload project.json that its GPU call wrote
        return session.director.project.shots[1]

    seed, take = shot().seed, shot().selected_take
    session.cancel.set()
    assert list(jobs.regenerate(session, 1))[-1].kind == "cancelled"
    assert (shot().seed, shot().selected_take) == (seed, take)
    assert [s.status for s in session.director.statuses()] == ["fresh", "fresh"]
    reroll = [u for u in jobs.regenerate(session, 1) if u.kind == "clip"][0]  # and a real one rolls the seed
    assert shot().selected_take == reroll.event.take_id != take and shot().seed != seed


def test_idle_session_folders_are_swept_and_the_page_starts_over(studio):
    import time

    idle, busy = studio.registry.create(), studio.registry.create()
    busy.job = "render"
    later = time.time() + 3600
    assert studio.registry.sweep(max_idle_s=60, now=later) == [idle.token]
    assert not idle.folder.exists() and busy.folder.is_dir()
    replacement = studio.registry.ensure(idle.token)  # that page's next action
    assert replacement.token != idle.token and replacement.shown == {}  # redrawn in full
