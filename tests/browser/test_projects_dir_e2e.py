"""--projects-dir in headless Chromium: a project folder made with the CLI is listed in the
Projects panel, opens in place, and an edit made in the page lands in that folder's
project.json and survives a reload. Screenshots go to test-artifacts/projects-dir-e2e/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")]

from conftest import CHROMIUM, LAUNCH_ARGS, make_reference, serve_app  # noqa: E402

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); this test never downloads a browser",
                allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

from svi_studio.director import Director  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "projects-dir-e2e"


def test_a_cli_folder_opens_in_place_and_keeps_the_pages_edits(tmp_path, draft):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    films = tmp_path / "films"
    director = Director.create(films / "lighthouse", draft, reference=make_reference(96, 64), name="Lighthouse",
                               prompts=["A lighthouse at dusk, slow push in", "The beam sweeps the sea"],
                               settings={"width": 64, "height": 48, "num_frames": 9})
    list(director.render())
    (films / "notes").mkdir()  # not a project: not listed

    with serve_app("draft", tmp_path / "data", max_shots=4, projects_dir=films) as (url, _demo), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        try:
            page.goto(url)
            page.wait_for_selector("#render-all")
            page.click("#projects")
            page.click("#projects-dir-list input")
            option = page.get_by_role("option", name="Lighthouse · 2 shots · lighthouse")
            option.wait_for()
            assert page.get_by_role("option").count() == 1  # "notes" is not a project
            option.click()
            page.locator("#projects").screenshot(path=str(ARTIFACTS / "01-folder-list.png"))
            page.click("#projects-dir-open")
            page.wait_for_function(
                "() => document.querySelector('#job-status').innerText.includes('Opened the folder “lighthouse”')")
            assert page.locator("#shot-1-prompt textarea").input_value() == "A lighthouse at dusk, slow push in"
            page.wait_for_function("() => document.querySelector('#project-name input')?.value === 'Lighthouse'")
            page.locator("#left-panel").screenshot(path=str(ARTIFACTS / "02-opened.png"))

            box = page.locator("#shot-2-prompt textarea")
            box.fill("The beam sweeps a stormy sea")
            box.blur()
            page.wait_for_function(
                "() => document.querySelector('#shot-2-head').innerText.toLowerCase().includes('stale')")
            page.wait_for_timeout(1000)  # the browser's list is written after the reply

            page.reload()
            page.wait_for_function("() => (document.querySelector('#job-status')?.innerText ?? '').includes('Reopened')")
            assert page.locator("#shot-2-prompt textarea").input_value() == "The beam sweeps a stormy sea"
            page.click("#projects")
            page.wait_for_function("() => document.querySelector('#project-name input')?.value === 'Lighthouse'")
            page.screenshot(path=str(ARTIFACTS / "03-reloaded.png"), full_page=True)
        finally:
            browser.close()

    saved = json.loads((films / "lighthouse" / "project.json").read_text())
    assert [shot["prompt"] for shot in saved["shots"]] == ["A lighthouse at dusk, slow push in",
                                                          "The beam sweeps a stormy sea"]
