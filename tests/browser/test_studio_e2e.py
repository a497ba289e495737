"""SVI Studio in headless Chromium: upload, write three shots, watch them render one by one,
re-roll a middle shot, see the next one go stale, regenerate from there, export and check
the file.

The app runs in this process on the tiny engine (random weights: the clips are noise)
at 21 frames per shot. Screenshots of every step go to test-artifacts/studio-e2e/; the
time from "Render all" to each clip is written to timings.json beside them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")]

from conftest import CHROMIUM, LAUNCH_ARGS, serve_app  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); this test never downloads a browser",
                allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

from svi_studio.ui.params import shot_seconds  # noqa: E402
from svi_studio.video_io import probe  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "studio-e2e"
FRAMES = 21  # frames per shot; every shot after the first keeps FRAMES - 5 (one motion latent)
PROMPTS = ['A ginger cat wakes up on a windowsill, slow push-in,\n"morning light", dust in the air',
           "The cat jumps down to the floor, pan left",
           "It trots out of the room; tracking shot, low angle"]


# Logs (in the page) every distinct status line and the time each shot's clip player appears,
# in ms since the call — a MutationObserver sees changes that polling from the test could miss.
WATCH_JS = """() => {
  const started = performance.now();
  window.__clips = {}; window.__statuses = [];
  const look = () => {
    const status = document.querySelector('#job-status')?.innerText ?? '';
    if (window.__statuses[window.__statuses.length - 1] !== status) window.__statuses.push(status);
    for (const n of [1, 2, 3]) {
      if (window.__clips[n] === undefined && document.querySelector(`#shot-${n}-video video[src]`))
        window.__clips[n] = performance.now() - started;
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true});
}"""


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    with serve_app("tiny", tmp_path_factory.mktemp("svi-browser-data"), max_shots=6) as served:
        yield served


@pytest.fixture(scope="module")
def studio_url(studio_app):
    return studio_app[0]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def page(studio_url):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(120_000)  # generous: this box is shared
        page.goto(studio_url)
        page.wait_for_selector("#render-all")
        yield page
        browser.close()


def upload(page, selector: str, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click(selector)
    chooser.value.set_files(str(path))


def status_text(page) -> str:
    return page.inner_text("#job-status")


def clip_src(page, number: int) -> str | None:
    return page.evaluate(f"() => document.querySelector('#shot-{number}-video video')?.getAttribute('src') ?? null")


def test_studio_renders_shot_by_shot_and_exports(page, reference_image, tmp_path, artifacts):
    shot = lambda name: page.screenshot(path=str(artifacts / name), full_page=True)  # noqa: E731
    shot("01-empty.png")
    assert "random noise" in page.inner_text("#engine-banner")

    # An unreadable "image" is refused with a message, not a stack trace.
    junk = tmp_path / "holiday.png"
    junk.write_text("this is not a picture")
    upload(page, "#reference-upload", junk)
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('not an image')")

    reference = tmp_path / "reference.png"
    reference_image.save(reference)
    upload(page, "#reference-upload", reference)
    page.wait_for_function("() => document.querySelector('#resolution-note').innerText.includes('Clips will be')")

    page.click("#settings")
    frames = page.locator("#setting-frames input[type=number]")  # the shot length, in seconds
    fps = int(page.input_value("#setting-fps input"))
    frames.fill(str(shot_seconds(FRAMES, fps)))
    frames.blur()
    page.wait_for_function(f"() => document.querySelector('#resolution-note').innerText.includes('{FRAMES} frames')")

    for number, prompt in enumerate(PROMPTS, start=1):
        if number > 1:
            page.click("#add-shot")
            page.wait_for_selector(f"#shot-card-{number}", state="visible")
        box = page.locator(f"#shot-{number}-prompt textarea")
        box.fill(prompt)
        box.blur()
    page.wait_for_function("() => document.querySelector('#film-summary').innerText.includes('to render: shot 1, 2, 3')")
    shot("02-three-shots.png")

    # Render all: the clips must appear one after another, each as soon as it is done. An
    # observer in the page logs every status line and the moment each clip player appears.
    page.evaluate(WATCH_JS)
    page.click("#render-all")
    page.wait_for_function("() => window.__clips[2] !== undefined", timeout=180_000)
    shot("03-rendering-two-done.png")
    page.wait_for_function("() => window.__clips[3] !== undefined", timeout=180_000)
    appeared = {int(k): round(v / 1000, 2) for k, v in page.evaluate("() => window.__clips").items()}
    statuses = page.evaluate("() => window.__statuses")
    assert appeared[1] < appeared[2] < appeared[3], f"clips did not arrive one by one: {appeared}"
    assert any("Rendering shot 2 (2 of 3)" in text for text in statuses), statuses
    assert any("Shot 1 finished (1 of 3)" in text for text in statuses), statuses
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Done: 3 clips')")
    for number, prompt in enumerate(PROMPTS, start=1):  # typed text survived the stream untouched
        assert page.locator(f"#shot-{number}-prompt textarea").input_value() == prompt
    assert page.locator("#film-preview video").count() == 1
    shot("04-rendered.png")

    # Regenerate shot 2: a new take; shot 3 continued from the old one, so it is stale.
    before = clip_src(page, 2)
    page.click("#shot-2-regenerate")
    page.wait_for_function("(old) => document.querySelector('#shot-2-video video')?.getAttribute('src') !== old",
                           arg=before)
    page.wait_for_function("() => document.querySelector('#shot-3-head').innerText.toLowerCase().includes('stale')")
    assert "different take" in page.inner_text("#shot-3-head")
    assert "fresh" in page.inner_text("#shot-2-head").lower()
    page.wait_for_timeout(500)
    shot("05-shot-3-stale.png")

    # Regenerate from here (shot 2): shot 2 and then the stale shot 3.
    before = clip_src(page, 3)
    page.click("#shot-2-regenerate-from")
    page.wait_for_function("(old) => document.querySelector('#shot-3-video video')?.getAttribute('src') !== old",
                           arg=before)
    page.wait_for_function("() => document.querySelector('#job-status').innerText.includes('Done: 2 clips')")
    assert "fresh" in page.inner_text("#shot-3-head").lower()

    # Export and download the film: its frame count is the stitched count.
    page.click("#export-button")
    page.wait_for_selector("#export-file a")
    with page.expect_download() as download:
        page.locator("#export-file a").first.click()
    film = tmp_path / "film.mp4"
    download.value.save_as(film)
    shot("06-exported.png")
    assert probe(film)["frames"] == FRAMES + 2 * (FRAMES - 5)

    (artifacts / "timings.json").write_text(json.dumps(
        {"engine": "tiny", "frames_per_shot": FRAMES, "seconds_from_render_all_to_clip": appeared}, indent=2))


def test_a_cut_above_the_seam_threshold_is_flagged(page, studio_app, reference_image, tmp_path, artifacts):
    """Open a project zip whose second cut has a seam score above SEAM_WARN: the cut is flagged."""
    from svi_studio.project.bundle import bundle_project
    from svi_studio.seams import SEAM_WARN
    from svi_studio.ui import jobs

    studio = studio_app[1].studio
    session = studio.registry.create()
    director = session.director
    director.set_reference(reference_image)
    director.update_settings(num_frames=FRAMES)
    director.set_shot(0, prompt="a calm opening shot")
    director.add_shot("a sudden whip pan")
    for _ in jobs.render_all(session):
        pass
    shot_two = director.project.shots[1]
    take_file = director.store.take_dir(shot_two.id, shot_two.selected_take) / "take.json"
    take = json.loads(take_file.read_text())
    take["seam"]["score"] = SEAM_WARN + 4.4
    take_file.write_text(json.dumps(take))
    bundle = bundle_project(director.root, tmp_path / "jumpy-cut.zip")

    page.click("#project")
    upload(page, "#upload-project", bundle)
    page.wait_for_function("() => document.querySelector('#shot-2-head')?.innerText.includes('visible jump')")
    assert page.locator("#shot-2-head .svi-cut-warn").count() == 1
    assert page.locator("#shot-1-head .svi-cut-warn").count() == 0
    assert "visible jump at the cut into shot 2" in page.inner_text("#film-summary")
    page.locator("#shot-2-head").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "07-flagged-cut.png"), full_page=True)
