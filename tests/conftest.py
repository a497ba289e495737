"""Shared fixtures. Engines are built once per test session: building is the slow part."""

from __future__ import annotations

import contextlib
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never touch the hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings
from PIL import Image

# On CI, property tests draw the same examples every run, so red means a regression, not a
# lucky draw; locally they keep exploring (a failure found that way becomes an @example).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def make_reference(width: int = 320, height: int = 192, seed: int = 0) -> Image.Image:
    """A deterministic, textured reference image (gradients + shapes), so motion is measurable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([
        (x * 255 / max(1, width - 1)),
        (y * 255 / max(1, height - 1)),
        ((x // 16 + y // 16) % 2) * 200 + 25,
    ], axis=-1).astype(np.float32)
    for _ in range(12):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(6, 24)
        image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, size=3)
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


CHROMIUM = "/usr/bin/chromium"  # Debian's; the browser tests never download one
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(engine: str, data_dir, **options):
    """(url, demo) of the app built with build_app(engine, data_dir, **options), served on a free
    loopback port from a thread of this process until the block ends."""
    from svi_studio.ui import build_app, launch_app

    demo = build_app(engine, data_dir, **options)
    for attempt in range(3):
        port = free_port()
        try:
            launch_app(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
            break
        except ValueError as error:  # Gradio's start-up probe gives up after one 3 s timeout on a busy machine
            demo.close()
            if "localhost is not accessible" not in str(error) or attempt == 2:
                raise
    try:
        yield f"http://127.0.0.1:{port}/", demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one intra-op thread (and far faster when the 2 cores are shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_image() -> Image.Image:
    return make_reference()


@pytest.fixture(scope="module")
def draft():
    """A draft engine (CPU camera moves) for tests that render real little films; modules that
    need another one (captions off, the app's registry) define their own `draft`."""
    from svi_studio.engines.draft import DraftEngine

    return DraftEngine()


@pytest.fixture(scope="session")
def tiny_engine():
    """The tiny Wan2.2 two-expert engine (SVI Pro layout). Shared: do not leave LoRAs loaded in it."""
    from svi_studio.engines import load_engine

    return load_engine("tiny")


# -- browser tests (tests/browser): skipped where Debian's chromium is missing --------------------


def pytest_collection_modifyitems(items):
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium); "
                                   "browser tests never download a browser")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    """(url, demo): one app per test module, on the tiny engine, up to 6 shots."""
    pytest.importorskip("playwright.sync_api")
    with serve_app("tiny", tmp_path_factory.mktemp("svi-browser-data"), max_shots=6) as app:
        yield app


@pytest.fixture(scope="module")
def studio_url(studio_app):
    return studio_app[0]


@pytest.fixture
def page(studio_url):
    """A Chromium page on the module's app (tests/browser/studio_page.py)."""
    from studio_page import open_page

    with open_page(studio_url) as page:
        yield page
