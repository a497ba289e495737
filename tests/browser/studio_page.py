"""How the browser tests launch SVI Studio and drive Chromium (shared by every tests/browser file)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from conftest import CHROMIUM, LAUNCH_ARGS  # noqa: F401 - one launch recipe for every browser test

from svi_studio.ui.params import shot_seconds

ARTIFACTS_ROOT = Path(__file__).resolve().parents[2] / "test-artifacts"


@contextmanager
def open_page(url: str):
    """A Chromium page (Debian's chromium, never a downloaded one) on the app, loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(120_000)  # generous: this box is shared
        page.goto(url)
        page.wait_for_selector("#render-all")
        try:
            yield page
        finally:
            browser.close()


def upload(page, selector: str, path: Path) -> None:
    """Upload a file through the button or drop zone at `selector` (it opens a file chooser)."""
    with page.expect_file_chooser() as chooser:
        page.click(selector)
    chooser.value.set_files(str(path))


def start_film(page, reference: Path, frames: int, prompts: list[str]) -> None:
    """Upload the reference, set the frames per shot, and write one card per prompt."""
    upload(page, "#reference-upload", reference)
    page.wait_for_function("() => document.querySelector('#resolution-note').innerText.includes('Clips will be')")
    page.click("#settings")
    box = page.locator("#setting-frames input[type=number]")  # the shot length, in seconds
    fps = int(page.input_value("#setting-fps input"))
    note_says = f"() => document.querySelector('#resolution-note').innerText.includes('{frames} frames')"
    for attempt in range(2):
        box.fill(str(shot_seconds(frames, fps)))
        box.blur()
        try:
            page.wait_for_function(note_says, timeout=15_000 if attempt == 0 else 60_000)
            break
        except Exception:  # noqa: BLE001 - a value typed while the Settings accordion is first drawn can be
            if attempt == 1:  # dropped by the slider (about 1 run in 15 on this box); typing it again is what
                raise         # a person does, and the server must then show it
    for number, prompt in enumerate(prompts, start=1):
        if number > 1:
            page.click("#add-shot")
            page.wait_for_selector(f"#shot-card-{number}", state="visible")
        box = page.locator(f"#shot-{number}-prompt textarea")
        box.fill(prompt)
        box.blur()
