"""How the browser tests launch SVI Studio and drive Chromium (shared by every tests/browser file)."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]
ARTIFACTS_ROOT = Path(__file__).resolve().parents[2] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_studio(engine: str, data_dir: Path, max_shots: int = 6) -> Iterator[tuple[str, object]]:
    """(url, demo) of the app running in this process on `engine`."""
    from svi_studio.ui import build_app, launch_app

    demo = build_app(engine, data_dir, max_shots=max_shots)
    port = free_port()
    launch_app(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


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
    box = page.locator("#setting-frames input[type=number]")
    box.fill(str(frames))
    box.blur()
    page.wait_for_function(f"() => document.querySelector('#resolution-note').innerText.includes('{frames} frames')")
    for number, prompt in enumerate(prompts, start=1):
        if number > 1:
            page.click("#add-shot")
            page.wait_for_selector(f"#shot-card-{number}", state="visible")
        box = page.locator(f"#shot-{number}-prompt textarea")
        box.fill(prompt)
        box.blur()
