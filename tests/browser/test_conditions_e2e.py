"""A shot card's anchor image and end frame, set in headless Chromium.

Upload a reference, write two shots, put an anchor image on shot 2's card and an end
frame on shot 1's, render, and check the project the server holds: both conditions
stored under media/, the clips rendered with them (shot 1 has the SVI Pro end-frame
length), and the cards showing the pictures. Screenshots go to test-artifacts/conditions-e2e/.
"""

from __future__ import annotations

import shutil

import pytest
from PIL import Image
from studio_page import ARTIFACTS_ROOT, start_film

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")]

ARTIFACTS = ARTIFACTS_ROOT / "conditions-e2e"
FRAMES = 13  # 4 latent frames: room for anchor + 1 motion latent + the end frame


def status_has(page, text: str) -> None:
    page.wait_for_function("(text) => document.querySelector('#job-status').innerText.includes(text)", arg=text)


def test_anchor_image_and_end_frame_set_on_the_cards(page, studio_app, reference_image, tmp_path):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    reference, anchor, end = tmp_path / "reference.png", tmp_path / "anchor.png", tmp_path / "end.png"
    reference_image.save(reference)
    Image.new("RGB", (160, 96), (220, 30, 30)).save(anchor)
    Image.new("RGB", (160, 96), (30, 40, 210)).save(end)

    start_film(page, reference, FRAMES, ["a red kite rises", "it dives into the sea"])

    # The condition pictures are small upload zones on the cards (the tiny engine accepts both).
    assert page.locator("#shot-2-anchor-image").is_visible() and page.locator("#shot-1-end-image").is_visible()
    page.locator("#shot-2-anchor-image input[type=file]").set_input_files(str(anchor))
    status_has(page, "Shot 2's anchor image set")
    page.locator("#shot-1-end-image input[type=file]").set_input_files(str(end))
    status_has(page, "Shot 1's end frame set")
    page.locator("#shot-card-1").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "01-conditions-set.png"), full_page=True)

    page.click("#render-all")
    status_has(page, "Done: 2 clips")
    assert "fresh" in page.inner_text("#shot-1-head").lower() and "fresh" in page.inner_text("#shot-2-head").lower()
    assert page.locator("#shot-2-anchor-image img").count() == 1 and page.locator("#shot-1-end-image img").count() == 1
    page.locator("#shot-card-1").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "02-rendered.png"), full_page=True)

    # What the server holds: the files under media/, the takes made with them.
    [session] = studio_app[1].studio.registry._sessions.values()
    director = session.director
    first, second = director.project.shots
    assert set(first.media) == {"end_image"} and set(second.media) == {"anchor_image"}
    assert all(path.startswith("media/") for shot in (first, second) for path in shot.media.values())
    take = director.store.take(first.id, first.selected_take)
    assert take.num_frames == FRAMES - 4  # SVI Pro dropped the locked end frame
    assert director.store.take(second.id, second.selected_take).info["media"] == second.media
