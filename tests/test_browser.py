"""The web page and /docs in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The page must work offline: every request it makes goes to the server itself.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from classifier.app import create_app
from classifier.overlay import OVERLAY_SIDE
from classifier.settings import Settings
from tests.helpers import FIXTURES, live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
FIXTURE = FIXTURES / "viral_pneumonia_1.jpeg"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def base_url(trained_weights: Path) -> Iterator[str]:
    app = create_app(Settings(models_dir=trained_weights))
    with live_server(app) as (host, port):
        deadline = time.monotonic() + 60
        while not app.state.registry.ready:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)
        yield f"http://{host}:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page that fails the test on any console error or request to anywhere but the server."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on(
        "request",
        lambda request: request.url.startswith((base_url, "data:", "blob:")) or problems.append(request.url),
    )
    page.goto(base_url)
    yield page
    page.close()
    assert problems == []


def wait_for_result(page: Page) -> None:
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=5_000)


def check_result(page: Page) -> None:
    assert page.text_content("#predicted-class") in ("normal", "pneumonia")
    meters = page.locator("#bars [role=meter]")
    assert meters.count() == 2
    total = sum(float(meters.nth(i).get_attribute("aria-valuenow")) for i in range(2))
    assert total == pytest.approx(1.0, abs=1e-3)
    overlay_width = page.evaluate("document.getElementById('overlay').naturalWidth")
    assert overlay_width == OVERLAY_SIDE  # the fixture is wider than tall
    assert page.evaluate("document.getElementById('original').naturalWidth") > 0
    assert page.is_hidden("#error")


def test_choosing_an_xray_shows_class_probabilities_and_overlay(page: Page, tmp_path: Path) -> None:
    page.set_input_files("#file", FIXTURE)
    wait_for_result(page)
    check_result(page)
    assert "JPEG" in page.inner_text("#summary")
    assert page.is_hidden("#model-picker")  # one model: nothing to pick
    page.screenshot(path=tmp_path / "web-page.png", full_page=True)


def test_dropping_an_xray_classifies_it(page: Page) -> None:
    data = base64.b64encode(FIXTURE.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """data => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "xray.jpeg", {type: "image/jpeg"}));
            return transfer;
        }""",
        data,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    wait_for_result(page)
    check_result(page)


def test_a_refused_upload_shows_the_servers_reason(browser: Browser, base_url: str, tmp_path: Path) -> None:
    page = browser.new_page()  # the 415 is logged to the console as a failed resource: expected here
    page.goto(base_url)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an X-ray")
    page.set_input_files("#file", notes)
    page.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert "notes.txt" in page.inner_text("#error") and "image" in page.inner_text("#error")
    assert page.is_hidden("#result")
    page.close()


def test_swagger_try_it_out_uploads_a_file(browser: Browser, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{base_url}/docs")
    operation = "#operations-pneumonia-predict_pneumonia_predict_post"
    page.click(f"{operation} .opblock-summary")
    page.click(f"{operation} .try-out__btn")
    page.set_input_files(f'{operation} input[type="file"]', FIXTURE)
    page.click(f"{operation} .execute")
    status = page.wait_for_selector(f"{operation} .live-responses-table tbody .response-col_status", timeout=15_000)
    assert status.inner_text().strip() == "200"
    assert '"predicted_class"' in page.inner_text(f"{operation} .live-responses-table tbody")
    assert all(url.startswith((base_url, "data:", "blob:")) for url in requested), requested
    page.close()
