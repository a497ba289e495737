"""The studio as an editor in headless Chromium: shots addressed by id while replies are slow,
a double click on ↑ Up, undo of a delete, the badge after Cancel, and prompts edited while
Render all runs.

The app runs in this process on the draft engine. A reply is made slow on purpose (the
server's move sleeps while holding the session) so that the clicks and keystrokes below
reach the server before the page has the answer — the situation in which card positions
used to point at the wrong shot. Likewise Render all is held before one shot (HeldShot)
while the test types, so the edit lands while that shot renders on any machine.
Screenshots go to test-artifacts/editor-e2e/.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")]

from conftest import CHROMIUM, LAUNCH_ARGS, make_reference, serve_app  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); this test never downloads a browser",
                allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
PlaywrightTimeout = pytest.importorskip("playwright.sync_api").TimeoutError

from studio_page import start_film  # noqa: E402

from svi_studio.engines.base import Cancelled  # noqa: E402
from svi_studio.ui import runtime  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "editor-e2e"
FOURTH = "The cat curls up by the fire and falls asleep"
THREE = ["A ginger cat wakes up on a windowsill, slow push-in", "The cat jumps down to the floor, pan left",
         "It trots out of the room, tilt up"]
NEW_THIRD = "It chases a butterfly into the garden, pan right"
NEW_FIRST = "A ginger cat yawns and stretches, slow push-in"


@pytest.fixture(scope="module")
def editor_app(tmp_path_factory):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with serve_app("draft", tmp_path_factory.mktemp("svi-editor-browser"), max_shots=6) as served:
        yield served


@pytest.fixture
def page(editor_app):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(editor_app[0])
        page.wait_for_selector("#render-all")
        yield page
        browser.close()


@pytest.fixture
def slow_moves(editor_app, monkeypatch):
    """Every move takes `delay` seconds on the server (while holding the session, as a slow
    preview re-encode once did)."""
    studio = editor_app[1].studio
    move = studio.move_shot
    delay = {"s": 1.5}

    def slow(session, *args, **kwargs):
        time.sleep(delay["s"])
        return move(session, *args, **kwargs)

    monkeypatch.setattr(studio, "move_shot", slow)
    return delay


def four_shot_film(page, editor_app):
    """Cat Adventure plus a fourth shot; returns the session behind the page."""
    page.click("#example-cat-adventure")
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Loaded example')")
    page.click("#add-shot")
    page.wait_for_selector("#shot-card-4", state="visible")
    box = page.locator("#shot-4-prompt textarea")
    box.fill(FOURTH)
    box.blur()
    return session_where(editor_app, lambda shots: len(shots) == 4 and shots[3].prompt == FOURTH,
                         "the fourth shot's prompt never reached the server")


def session_where(editor_app, holds, failure: str, timeout: float = 30, earlier=()):
    """The app's session whose shots satisfy `holds(shots)` once the page's edits arrived
    (never one of the sessions `earlier`: another test's film may look the same)."""
    studio = editor_app[1].studio
    deadline = time.time() + timeout
    while time.time() < deadline:
        for session in list(studio.registry._sessions.values()):
            if session not in earlier and holds(session.director.project.shots):
                return session
        time.sleep(0.1)
    raise AssertionError(failure)


def saved_shots(session) -> list[dict]:
    return json.loads((session.project_dir / "project.json").read_text())["shots"]


def status(page) -> str:
    return page.inner_text("#job-status")


def settle(page, session, seconds: float = 2.5) -> None:
    """Wait until the session's lock is free and the page had time to take the replies."""
    time.sleep(seconds)
    with session.lock:
        pass
    page.wait_for_timeout(500)


def test_typing_into_a_card_right_after_up_keeps_each_shots_text(page, editor_app, slow_moves):
    session = four_shot_film(page, editor_app)
    before = saved_shots(session)
    page.screenshot(path=str(ARTIFACTS / "01-four-shots.png"), full_page=True)
    page.click("#shot-4-up")
    box = page.locator("#shot-3-prompt textarea")  # still shows shot 3: the reply is on its way
    box.fill("typed into card 3 before the reply")
    page.locator("#style-prompt textarea").click()  # the box loses focus: its edit is sent
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('moved to position 3')")
    settle(page, session)
    page.screenshot(path=str(ARTIFACTS / "02-moved-then-typed.png"), full_page=True)
    after = {shot["id"]: shot["prompt"] for shot in saved_shots(session)}
    assert after[before[3]["id"]] == FOURTH, "shot 4's prompt was overwritten"
    assert after[before[2]["id"]] == "typed into card 3 before the reply"
    assert [shot["id"] for shot in saved_shots(session)] == [before[i]["id"] for i in (0, 1, 3, 2)]
    # The page shows each shot's text in the card where the shot now is.
    page.wait_for_function(
        "(text) => document.querySelector('#shot-4-prompt textarea').value === text",
        arg="typed into card 3 before the reply", timeout=5_000)
    assert page.locator("#shot-3-prompt textarea").input_value() == FOURTH


def test_a_double_click_on_up_moves_once_and_says_where_the_shot_is(page, editor_app, slow_moves):
    slow_moves["s"] = 0.7
    session = four_shot_film(page, editor_app)
    before = saved_shots(session)
    page.evaluate("""() => { window.__statuses = [];
      new MutationObserver(() => { const text = document.querySelector('#job-status')?.innerText ?? '';
        if (window.__statuses[window.__statuses.length - 1] !== text) window.__statuses.push(text); })
      .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    page.dblclick("#shot-4-up")
    settle(page, session, 3.0)
    page.screenshot(path=str(ARTIFACTS / "03-double-up.png"), full_page=True)
    assert [shot["id"] for shot in saved_shots(session)] == [before[i]["id"] for i in (0, 1, 3, 2)]
    # Every status line shown is true of the film as it ends: shot 4 moved once, to position 3;
    # a second click that reached the server is refused and says where the shot is now.
    shown = [text.lower() for text in page.evaluate("() => window.__statuses")
             if "moved" in text.lower() or "changed" in text.lower()]
    assert shown, "no status was shown"
    for text in shown:
        assert ("shot 4 moved to position 3" in text
                or ("the film changed" in text and "now shot 3" in text)), shown
    assert "moved to position 2" not in " ".join(shown)


def test_undo_brings_back_a_deleted_shot(page, editor_app):
    session = four_shot_film(page, editor_app)
    page.click("#shot-2-delete")
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Shot 2 deleted')")
    page.wait_for_selector("#shot-card-4", state="hidden")
    page.screenshot(path=str(ARTIFACTS / "04-deleted-with-undo.png"), full_page=True)
    prompt_two = saved_shots(session)[1]["prompt"]
    assert page.locator("#undo").is_enabled()
    page.click("#undo")
    page.wait_for_selector("#shot-card-4", state="visible")
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Undid')")
    page.screenshot(path=str(ARTIFACTS / "05-undone.png"), full_page=True)
    assert len(saved_shots(session)) == 4
    assert page.locator("#shot-4-prompt textarea").input_value() == FOURTH
    assert page.locator("#shot-2-prompt textarea").input_value() != prompt_two  # card 2 is shot 2 again
    assert page.locator("#redo").is_enabled()


def test_after_cancel_the_badge_leaves_rendering_within_a_second(page, editor_app, monkeypatch):
    started = threading.Event()

    def render_until_cancelled(director, index, cancel, *args, **kwargs):
        started.set()
        while not cancel.is_set():
            time.sleep(0.05)
        raise Cancelled()

    monkeypatch.setattr(runtime, "render_shot", render_until_cancelled)
    session = four_shot_film(page, editor_app)
    page.click("#render-all")
    page.wait_for_function("() => document.querySelector('#shot-1-head').innerText.toLowerCase().includes('rendering')")
    page.screenshot(path=str(ARTIFACTS / "06-rendering.png"), full_page=True)
    page.click("#cancel")
    clicked = time.time()
    page.wait_for_function(
        "() => !document.querySelector('#shot-1-head').innerText.toLowerCase().includes('rendering')", timeout=3_000)
    assert time.time() - clicked < 1.5
    page.screenshot(path=str(ARTIFACTS / "07-cancelled.png"), full_page=True)
    assert "missing" in page.inner_text("#shot-1-head").lower()


class HeldShot:
    """runtime.render_shot that, the first time the job reaches the shot at film position
    `index` (0-based), waits until `release()`: `reached` is set when that shot's turn has
    come, so whatever the test types meanwhile surely lands while that shot renders, on a fast
    machine or a slow one."""

    def __init__(self, render, index: int):
        self.render, self.index = render, index
        self.reached, self.released = threading.Event(), threading.Event()

    def __call__(self, director, index, cancel, *args, **kwargs):
        if index == self.index and not self.reached.is_set():
            self.reached.set()
            self.released.wait(60)  # a failed test never leaves the job hanging for good
        return self.render(director, index, cancel, *args, **kwargs)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def hold_shot(monkeypatch):
    """hold_shot(index): Render all waits before shot `index` (0-based) until released."""
    held: list[HeldShot] = []

    def hold(index: int) -> HeldShot:
        held.append(HeldShot(runtime.render_shot, index))
        monkeypatch.setattr(runtime, "render_shot", held[-1])
        return held[-1]

    yield hold
    for one in held:
        one.release()


def three_shot_film(page, editor_app, reference: Path):
    """Three written shots on a small reference, 9 frames each; returns the page's session."""
    earlier = list(editor_app[1].studio.registry._sessions.values())
    make_reference(160, 96).save(reference)
    start_film(page, reference, 9, THREE)
    for name, pixels, note in (("width", 320, "320×"), ("height", 192, "320×192")):  # small, quick clips
        box = page.locator(f"#setting-{name} input")
        box.fill(str(pixels))
        box.blur()  # one at a time: the reply to the first must not land while the second is typed
        page.wait_for_function("(note) => document.querySelector('#resolution-note').innerText.includes(note)",
                               arg=note, timeout=10_000)
    return session_where(editor_app, lambda shots: [shot.prompt for shot in shots] == THREE,
                         "the three prompts never reached the server", earlier=earlier)


def render_all_held_at(page, hold_shot, number: int) -> "HeldShot":
    """Click Render all and return once shot `number` (1-based) is rendering and held there."""
    held = hold_shot(number - 1)
    page.click("#render-all")
    assert held.reached.wait(30), f"Render all never reached shot {number}"
    page.wait_for_function(f"() => document.querySelector('#shot-{number}-head').innerText.toLowerCase()"
                           ".includes('rendering')")
    return held


def edit_prompt(page, session, number: int, text: str) -> None:
    """Type a new prompt into card `number` and wait until the server has it."""
    box = page.locator(f"#shot-{number}-prompt textarea")
    box.fill(text)
    page.locator("#style-prompt textarea").click()  # the box loses focus: its edit is sent
    deadline = time.time() + 10
    while session.director.project.shots[number - 1].prompt != text:
        assert time.time() < deadline, f"shot {number}'s new prompt never reached the server"
        time.sleep(0.05)


def head(page, number: int) -> str:
    return page.inner_text(f"#shot-{number}-head").lower()


def taken_prompts(session) -> list[str | None]:
    """Each shot's selected take's recipe prompt, read from project.json and its take.json."""
    store = session.director.store
    return [store.take(shot["id"], shot["selected_take"]).shot_prompt if shot.get("selected_take") else None
            for shot in saved_shots(session)]


def wait_until_done(page, clips: int) -> None:
    """Wait for the job's last update: its status line, then every storyboard tile fresh."""
    try:
        page.wait_for_function(
            "(text) => document.querySelector('#job-status').innerText.includes(text)",
            arg=f"Done: {clips} clips rendered.", timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#storyboard [data-shot-id]')].every(t => t.dataset.status === 'fresh')",
            timeout=5_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(ARTIFACTS / "never-done.png"), full_page=True)
        raise AssertionError(f"the render never ended with {clips} clips: status {status(page)!r}, "
                             f"tiles {tile_statuses(page)}, heads {[head(page, n) for n in (1, 2, 3)]}") from None


def tile_statuses(page) -> list[str]:
    return page.eval_on_selector_all("#storyboard [data-shot-id]", "tiles => tiles.map(t => t.dataset.status)")


def test_a_later_shot_edited_during_render_all_is_rendered_with_its_new_prompt(page, editor_app, tmp_path,
                                                                                 hold_shot):
    session = three_shot_film(page, editor_app, tmp_path / "reference.png")
    held = render_all_held_at(page, hold_shot, 1)
    edit_prompt(page, session, 3, NEW_THIRD)
    page.wait_for_function("() => document.querySelector('#undo').innerText.includes(\"shot 3's prompt\")",
                           timeout=5_000)  # the edit's reply has reached the page
    page.screenshot(path=str(ARTIFACTS / "11-shot-3-edited-while-shot-1-renders.png"), full_page=True)
    assert "rendering" in head(page, 1)
    assert page.locator("#undo").is_disabled()  # undo is refused while rendering, so it is not offered
    held.release()

    wait_until_done(page, 3)
    page.wait_for_function("() => !document.querySelector('#undo').disabled", timeout=5_000)  # offered again
    page.screenshot(path=str(ARTIFACTS / "12-rendered-with-the-new-prompt.png"), full_page=True)
    assert taken_prompts(session) == [THREE[0], THREE[1], NEW_THIRD]
    assert page.locator("#shot-3-prompt textarea").input_value() == NEW_THIRD
    assert tile_statuses(page) == ["fresh"] * 3
    assert all("fresh" in head(page, number) for number in (1, 2, 3)), [head(page, n) for n in (1, 2, 3)]


def test_an_earlier_shot_edited_during_render_all_is_marked_stale_and_rendered_again(page, editor_app, tmp_path,
                                                                                      hold_shot):
    session = three_shot_film(page, editor_app, tmp_path / "reference.png")
    held = render_all_held_at(page, hold_shot, 2)
    edit_prompt(page, session, 1, NEW_FIRST)
    # Shot 1 already has its take: the edit shows it stale while shot 2 still renders.
    page.wait_for_function("() => document.querySelector('#shot-1-head').innerText.toLowerCase().includes('stale')",
                           timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / "13-shot-1-edited-while-shot-2-renders.png"), full_page=True)
    assert "rendering" in head(page, 2)
    held.release()

    # The same job renders shot 1 again, then shots 2 and 3 after it: 2 + 3 clips.
    wait_until_done(page, 5)
    page.screenshot(path=str(ARTIFACTS / "14-earlier-shot-rendered-again.png"), full_page=True)
    assert taken_prompts(session) == [NEW_FIRST, THREE[1], THREE[2]]
    assert page.locator("#shot-1-prompt textarea").input_value() == NEW_FIRST
    assert tile_statuses(page) == ["fresh"] * 3
    assert all("fresh" in head(page, number) for number in (1, 2, 3)), [head(page, n) for n in (1, 2, 3)]


def test_export_shows_it_is_working_and_disables_its_button(page, editor_app, monkeypatch):
    from svi_studio.project.model import ProjectError

    studio = editor_app[1].studio

    def slow_export(session, audio, crossfade):
        time.sleep(2.0)
        raise ProjectError("nothing to export in this test")

    monkeypatch.setattr(studio, "export", slow_export)
    four_shot_film(page, editor_app)
    page.click("#export-button")
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Exporting the film')",
                           timeout=1_000)
    assert page.locator("#export-button").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "08-exporting.png"), full_page=True)
    page.wait_for_function("() => document.querySelector('#job-status').innerText.toLowerCase().includes('nothing to export')")
    page.wait_for_function("() => !document.querySelector('#export-button').disabled", timeout=3_000)


def test_reload_and_server_restart_reopen_the_project(tmp_path):
    """The browser remembers its project: a reload reopens it, and so does a new server process
    on the same data folder (here: the app rebuilt and served again on the same port)."""
    from conftest import free_port
    from svi_studio.ui import build_app, launch_app

    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}/"
    demo = build_app("draft", data, max_shots=6)
    launch_app(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(url)
            page.wait_for_selector("#render-all")
            page.click("#example-cat-adventure")
            page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Loaded example')")
            box = page.locator("#shot-2-prompt textarea")
            box.fill("edited before the reload")
            box.blur()
            page.wait_for_timeout(1500)

            page.reload()
            page.wait_for_function("() => (document.querySelector('#job-status')?.innerText ?? '').includes('Reopened')")
            assert page.locator("#shot-2-prompt textarea").input_value() == "edited before the reload"
            page.screenshot(path=str(ARTIFACTS / "09-reloaded.png"), full_page=True)

            demo.close()  # the server goes away…
            demo = build_app("draft", data, max_shots=6)  # …and a new one starts on the same folder
            launch_app(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
            page.goto(url)
            page.wait_for_function("() => (document.querySelector('#job-status')?.innerText ?? '').includes('Reopened')")
            assert page.locator("#shot-2-prompt textarea").input_value() == "edited before the reload"
            page.click("#projects")
            page.wait_for_function(
                "() => (document.querySelector('#project-list input')?.value ?? '').includes('Cat Adventure')")
            page.screenshot(path=str(ARTIFACTS / "10-after-restart.png"), full_page=True)

            other = browser.new_context().new_page()  # another browser: its own, empty list
            other.goto(url)
            other.wait_for_selector("#render-all")
            other.wait_for_timeout(1500)
            assert other.locator("#shot-2-prompt textarea").count() == 0 or \
                other.locator("#shot-2-prompt textarea").input_value() != "edited before the reload"
        finally:
            browser.close()
            demo.close()
