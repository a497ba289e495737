"""Storyboard strip, take gallery, live progress and the small-screen bar in headless Chromium.

Draft engine (the cat example, 3 shots): a render takes a few seconds. Screenshots go to
test-artifacts/storyboard/: live-preview.png, take-comparison.png, page-24-shots.png, mobile.png.
The tests share one page and run in order (render → strip → gallery → 24 shots).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")]

from conftest import CHROMIUM, LAUNCH_ARGS, serve_app  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed; this test never downloads a browser", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "storyboard"
TILES = "#storyboard .svi-tile"
ALL_FRESH = "[...document.querySelectorAll('#storyboard .svi-tile')].every(t => t.dataset.status === 'fresh')"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with serve_app("draft", tmp_path_factory.mktemp("svi-storyboard"), max_shots=24) as app:
        yield app


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(served, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served[0])
    page.click("#example-cat-adventure")
    page.wait_for_function("document.querySelectorAll('#storyboard .svi-tile').length === 3", timeout=30000)
    yield page
    page.close()


def render_and_wait(page, button: str, clips: int) -> None:
    """Press a render button and wait for the job's last page update ("Done: N clips rendered.")."""
    page.evaluate("document.querySelector('#job-status').dataset.before = document.querySelector('#job-status').innerText")
    page.click(button)
    page.wait_for_function(f"(() => {{ const s = document.querySelector('#job-status'); "
                           f"return s.innerText !== s.dataset.before && s.innerText.includes('Done: {clips} clip'); }})()",
                           timeout=120000)


def tiles(page):
    return [(t.get_attribute("data-shot-id"), t.get_attribute("data-status")) for t in page.query_selector_all(TILES)]


def test_render_shows_live_preview_steps_and_eta_in_the_card(page):
    assert [status for _, status in tiles(page)] == ["missing"] * 3
    page.click("#render-all")
    page.wait_for_function("[...document.querySelectorAll('.shot-card .svi-live-card')].some(c => "
                           "c.querySelector('img.svi-live-image') && /shot \\d of 3 · step \\d+ of \\d+/.test(c.innerText))",
                           timeout=60000)
    page.wait_for_function("[...document.querySelectorAll('.svi-live-card .svi-live-eta')]"
                           ".some(e => /ETA shot ([0-9.]+ s|measuring…), job/.test(e.innerText))", timeout=60000)
    # A draft shot renders in about a second: the screenshot is taken while a card shows the preview
    # if one still does (what the test asserts is checked above, not on the picture).
    page.evaluate("document.querySelector('.svi-live-card')?.scrollIntoView({block: 'center'})")
    page.screenshot(path=str(ARTIFACTS / "live-preview.png"))
    page.wait_for_function("document.querySelector('#job-status').innerText.includes('Done: 3 clips')", timeout=120000)
    page.wait_for_function(ALL_FRESH, timeout=10000)
    page.wait_for_function("!document.querySelector('.svi-live-card')", timeout=10000)


def test_strip_tiles_colours_click_to_card_and_keyboard_move(page):
    before = tiles(page)
    assert len(before) == 3 and all(shot_id for shot_id, _ in before)
    page.wait_for_function("[...document.querySelectorAll('#storyboard img.svi-tile-thumb')]"
                           ".filter(x => x.naturalWidth > 0).length === 3", timeout=20000)
    colour = page.eval_on_selector(TILES, "t => getComputedStyle(t).borderTopColor")
    assert colour == "rgb(34, 197, 94)"  # fresh: green
    page.click(f'{TILES}[data-index="2"]')
    page.wait_for_function("document.querySelector('#shot-card-3').classList.contains('svi-highlight')", timeout=5000)
    page.focus(f'{TILES}[data-index="0"]')
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.querySelector('{TILES}').dataset.shotId === '{before[1][0]}'", timeout=60000)
    after = tiles(page)
    assert [shot_id for shot_id, _ in after] == [before[1][0], before[0][0], before[2][0]]
    assert [status for _, status in after] == ["stale", "stale", "stale"]
    colour = page.eval_on_selector(TILES, "t => getComputedStyle(t).borderTopColor")
    assert colour == "rgb(245, 158, 11)"  # stale: amber
    render_and_wait(page, "#render-all", 3)
    page.wait_for_function(ALL_FRESH, timeout=10000)


def test_strip_seeks_the_film_preview_shows_the_playhead_and_plays_across_a_cut(page):
    page.wait_for_function("(() => { const v = document.querySelector('#film-preview video'); "
                           "return v && v.duration > 10; })()", timeout=30000)
    start = float(page.get_attribute(f'{TILES}[data-index="1"]', "data-start"))
    page.click(f'{TILES}[data-index="1"]')
    page.wait_for_function(f"Math.abs(document.querySelector('#film-preview video').currentTime - {start}) < 0.1",
                           timeout=5000)
    page.click(".svi-cut-play[data-cut-at]")
    cut = float(page.get_attribute(".svi-cut-play[data-cut-at]", "data-cut-at"))
    page.wait_for_function("!document.querySelector('#storyboard .svi-playhead').hidden", timeout=5000)
    page.wait_for_function("document.querySelector('#film-preview video').paused", timeout=10000)
    stopped = page.evaluate("document.querySelector('#film-preview video').currentTime")
    assert cut + 0.8 <= stopped <= cut + 1.6  # one second past the cut, then it stops


def test_take_gallery_play_compare_star_delete(page):
    count = len(page.query_selector_all("#shot-2-gallery .svi-take"))  # 2: the strip test re-rendered it
    if page.is_checked("#shot-2-lock input"):  # the example locks its seeds: a re-roll needs a new one
        page.uncheck("#shot-2-lock input")
        page.wait_for_function("!document.querySelector('#shot-2-regenerate').disabled", timeout=10000)
    render_and_wait(page, "#shot-2-regenerate", 1)
    page.wait_for_function(f"document.querySelectorAll('#shot-2-gallery .svi-take').length === {count + 1}",
                           timeout=10000)
    older = "#shot-2-gallery .svi-take[data-selected='false']:nth-child(2)"  # newest first: the previous take
    assert page.query_selector("#shot-2-gallery .svi-take[data-selected='true'] .svi-take-delete") is None
    page.click(f"{older} .svi-take-play")
    page.wait_for_function(f"(() => {{ const v = document.querySelector(\"{older} video\"); "
                           "return v && v.currentTime > 0; })()", timeout=20000)
    assert page.eval_on_selector("#shot-2-gallery .svi-take[data-selected='true']", "t => t.dataset.selected") == "true"
    for take in ("#shot-2-gallery .svi-take:nth-child(1)", older):
        page.check(f"{take} .svi-take-compare")
    page.click("#shot-2-gallery .svi-compare-button")
    page.wait_for_function("[...document.querySelectorAll('#shot-2-gallery .svi-compare-pane video')]"
                           ".filter(v => v.currentTime > 0).length === 2", timeout=20000)
    sources = page.eval_on_selector_all("#shot-2-gallery .svi-compare-pane video", "vs => vs.map(v => v.src)")
    assert len(sources) == 2
    page.locator("#shot-card-2").screenshot(path=str(ARTIFACTS / "take-comparison.png"))
    page.click(f"{older} .svi-take-star")
    page.wait_for_function(f"document.querySelector(\"{older}\").dataset.starred === 'true'", timeout=20000)
    page.click(f"{older} .svi-take-delete")
    page.wait_for_function(f"document.querySelectorAll('#shot-2-gallery .svi-take').length === {count}", timeout=20000)
    assert tiles(page)[1][1] == "fresh"  # the selected take stayed


def test_page_at_24_shots_has_no_horizontal_page_scroll(page, served):
    studio = served[1].studio
    session = next(iter(studio.registry._sessions.values()))
    with session.lock:
        for number in range(4, 24):
            session.director.add_shot(f"shot {number}")
    page.click("#add-shot")
    page.wait_for_function("document.querySelectorAll('#storyboard .svi-tile').length === 24", timeout=60000)
    sizes = page.evaluate("""() => { const s = document.querySelector('#storyboard .svi-strip');
        return [document.documentElement.scrollWidth, window.innerWidth, s.scrollWidth, s.clientWidth]; }""")
    assert sizes[0] <= sizes[1] and sizes[2] > sizes[3]  # the strip scrolls, not the page
    page.screenshot(path=str(ARTIFACTS / "page-24-shots.png"), full_page=True)


def test_mobile_keeps_primary_actions_reachable(served, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page.goto(served[0])
        page.click("#example-cat-adventure")
        page.wait_for_function("document.querySelectorAll('#storyboard .svi-tile').length === 3", timeout=30000)
        page.locator("#shot-card-2").scroll_into_view_if_needed()
        for button in ("#render-all", "#cancel", "#export-button"):
            box = page.locator(button).bounding_box()
            assert box and 0 <= box["y"] and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390, button
        overflow = page.eval_on_selector("#storyboard .svi-strip", "s => getComputedStyle(s).overflowX")
        assert overflow == "auto"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "mobile.png"))
    finally:
        page.close()


def test_settings_speak_seconds_and_hide_what_the_draft_engine_ignores(served, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(served[0])
        page.click("#example-cat-adventure")
        page.wait_for_function("document.querySelectorAll('#storyboard .svi-tile').length === 3", timeout=30000)
        page.click("#settings")
        page.wait_for_selector("#setting-frames", state="visible")
        for ignored in ("#setting-steps", "#setting-guidance", "#setting-motion"):
            assert not page.is_visible(ignored), ignored
        assert "Shot length (seconds)" in page.inner_text("#setting-frames")
        assert "4k+1" in page.inner_text("#setting-frames")  # the one-line help
        page.fill("#setting-frames input[type=number]", "2")
        page.press("#setting-frames input[type=number]", "Enter")
        page.click("#setting-fps input")  # blur the length box
        page.locator("#setting-frames input[type=range]").dispatch_event("change")
        page.wait_for_function("document.querySelector('#resolution-note').innerText.includes('33 frames')",
                               timeout=20000)
        assert "2.06 s per shot" in page.inner_text("#resolution-note")  # the rounding, shown
    finally:
        page.close()
