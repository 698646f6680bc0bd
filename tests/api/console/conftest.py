"""A real headless Chromium (Debian's, installed by `make browser`) driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is not reachable; these keep the system Chromium off the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots a person looks at after a run; gitignored.
ARTEFACTS = ROOT / "tests" / "artefacts"
WIDTHS = {"wide": 1280, "narrow": 390}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (needs root and apt-get)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh context (no cookies) at the wide width. Every request the pages make is kept, and
    none may leave the machine: the console loads nothing from a CDN or any other site."""
    context = await browser.new_context(viewport={"width": WIDTHS["wide"], "height": 900})
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        yield await context.new_page()
    finally:
        await context.close()
    outside = [url for url in requested if urlsplit(url).hostname not in (None, "127.0.0.1")]
    assert outside == [], f"the pages loaded from outside the gateway: {outside}"
    assert any(url.endswith("/console/static/console.css") for url in requested)


async def screenshot(page: Page, name: str) -> None:
    """Full-page screenshots of what the page shows now, at each width, under tests/artefacts/."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": WIDTHS["wide"], "height": 900}
    for width in WIDTHS.values():
        await page.set_viewport_size({"width": width, "height": size["height"]})
        await page.screenshot(path=ARTEFACTS / f"{name}-{width}.png", full_page=True)
    await page.set_viewport_size(size)
