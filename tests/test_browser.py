"""The web page and /docs in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The page must work offline: every request it makes goes to the server itself.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from classifier.app import create_app
from classifier.overlay import OVERLAY_SIDE
from classifier.settings import Settings
from tests.helpers import FIXTURES, serving

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
PREDICT_OPERATION = "#operations-pneumonia-predict_pneumonia_predict_post"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium")


API_KEY = "browser-key-51c7e0"


@pytest.fixture(scope="module")
def base_url(trained_weights: Path) -> Iterator[str]:
    with serving(create_app(Settings(models_dir=trained_weights))) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url(trained_weights: Path) -> Iterator[str]:
    """A server that needs the API key `API_KEY`."""
    with serving(create_app(Settings(models_dir=trained_weights, api_keys=[API_KEY]))) as url:
        yield url


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


def wait_until(page: Page, expression: str, timeout_s: float = 5) -> None:
    """Poll `expression` from here: `page.wait_for_function` polls with ``eval``, which the page's CSP forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, expression
        time.sleep(0.05)


def wait_for_result(page: Page) -> None:
    page.wait_for_selector("#result:not([hidden])", timeout=15_000)
    wait_until(page, "document.getElementById('overlay').naturalWidth > 0")


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


def test_an_image_that_is_not_an_xray_shows_as_a_refusal(browser: Browser, base_url: str, tmp_path: Path) -> None:
    page = browser.new_page()  # the 422 is logged to the console as a failed resource: expected here
    page.goto(base_url)
    photo = colour_photo(tmp_path)
    page.set_input_files("#file", photo)
    page.wait_for_selector("#refusal:not([hidden])", timeout=15_000)
    assert "does not look like a frontal chest X-ray" in page.inner_text("#refusal")
    assert "colour image" in page.inner_text("#refusal-reason") and "score 0.000" in page.inner_text("#refusal-score")
    assert page.is_hidden("#result") and page.is_hidden("#error")  # no class, no bars, no heat map
    page.screenshot(path=tmp_path / "web-page-refusal.png", full_page=True)
    page.set_input_files("#file", FIXTURE)  # an X-ray next: the refusal goes
    wait_for_result(page)
    assert page.is_hidden("#refusal") and page.is_hidden("#check-warning")
    page.close()


def test_only_the_latest_choice_is_shown(browser: Browser, base_url: str, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(base_url)
    page.set_input_files("#file", FIXTURE)
    page.set_input_files("#file", colour_photo(tmp_path))  # chosen before the X-ray's answer is back
    page.wait_for_selector("#refusal:not([hidden])", timeout=15_000)
    page.wait_for_timeout(2_000)  # the X-ray's answer has arrived by now, and is not shown
    assert page.is_hidden("#result") and page.is_visible("#refusal")
    page.close()


def colour_photo(folder: Path) -> Path:
    """A small colour picture: what the input check refuses outright."""
    photo = folder / "holiday.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).resize((320, 240)).save(photo)
    return photo


def test_the_page_opens_on_the_pneumonia_model(browser: Browser, trained_weights: Path, tmp_path: Path) -> None:
    for path in trained_weights.iterdir():  # a second model that sorts first: the page still opens on pneumonia
        shutil.copy(path, tmp_path / path.name.replace("pneumonia.", "atelectasis.", 1))
        shutil.copy(path, tmp_path)
    with serving(create_app(Settings(models_dir=tmp_path))) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#model-picker:not([hidden])", timeout=15_000)
        assert page.input_value("#model") == "pneumonia"
        page.close()


def test_the_page_asks_for_the_api_key_once_per_browser_session(
    browser: Browser, keyed_url: str, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()  # the 401s are logged to the console as failed resources: expected here
    sent: list[str | None] = []
    page.on("request", lambda request: "/predict" in request.url and sent.append(request.headers.get("authorization")))
    page.goto(keyed_url)
    page.wait_for_selector("#key-form:not([hidden])", timeout=15_000)
    assert "needs an API key" in page.inner_text("#key-note") and page.is_hidden("#error")
    page.fill("#api-key", "not-the-key")
    page.click("#key-form button")
    page.locator("#key-note", has_text="not accepted").wait_for(timeout=15_000)
    assert page.is_visible("#key-form")
    page.screenshot(path=tmp_path / "web-page-key.png", full_page=True)
    page.set_input_files("#file", FIXTURE)  # chosen while the key is asked for: classified once it is given
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    wait_for_result(page)
    assert page.is_hidden("#key-form")
    check_result(page)
    assert sent == [f"Bearer {API_KEY}"]

    page.reload()  # the same session: the key is kept
    page.set_input_files("#file", FIXTURE)
    wait_for_result(page)
    assert page.is_hidden("#key-form") and sent[-1] == f"Bearer {API_KEY}"
    context.close()

    other = browser.new_page()  # another session: asked again
    other.goto(keyed_url)
    other.wait_for_selector("#key-form:not([hidden])", timeout=15_000)
    assert other.evaluate("sessionStorage.length") == 0
    other.close()


def test_swagger_authorize_sends_the_api_key(browser: Browser, keyed_url: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(f"{keyed_url}/docs")
    page.click(".auth-wrapper .authorize")
    page.fill(".auth-container input", API_KEY)
    page.click(".auth-btn-wrapper .authorize")
    page.click(".auth-btn-wrapper .btn-done")
    assert try_it_out(page, FIXTURE) == "200"
    page.close()


def try_it_out(page: Page, image: Path) -> str:
    """Upload `image` with Swagger's "Try it out" on /pneumonia/predict; the status it shows."""
    page.click(f"{PREDICT_OPERATION} .opblock-summary")
    page.click(f"{PREDICT_OPERATION} .try-out__btn")
    page.set_input_files(f'{PREDICT_OPERATION} input[type="file"]', image)
    page.click(f"{PREDICT_OPERATION} .execute")
    cell = f"{PREDICT_OPERATION} .live-responses-table tbody .response-col_status"
    return page.wait_for_selector(cell, timeout=15_000).inner_text().strip()


def test_swagger_try_it_out_uploads_a_file(browser: Browser, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{base_url}/docs")
    assert try_it_out(page, FIXTURE) == "200"
    assert '"predicted_class"' in page.inner_text(f"{PREDICT_OPERATION} .live-responses-table tbody")
    assert all(url.startswith((base_url, "data:", "blob:")) for url in requested), requested
    assert page.locator(".auth-wrapper .authorize").count() == 0  # no keys: no Authorize button
    page.close()
