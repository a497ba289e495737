"""Fixtures of the browser tests: the app on the tiny engine in this process, and a Chromium page on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio_page import CHROMIUM, open_page, serve_studio


def pytest_collection_modifyitems(items):
    if Path(CHROMIUM).exists():
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
    with serve_studio("tiny", tmp_path_factory.mktemp("svi-browser-data")) as app:
        yield app


@pytest.fixture(scope="module")
def studio_url(studio_app):
    return studio_app[0]


@pytest.fixture
def page(studio_url):
    with open_page(studio_url) as page:
        yield page
