"""The built site in a real headless browser: Debian's chromium and chromedriver, driven by Selenium.

`.ci/run` installs both and sets HARNESS_REQUIRE_BROWSER=1, so there a missing browser fails the
test instead of skipping it. The screenshot of the index goes to $HARNESS_ARTIFACTS (CI keeps it)
or the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderboard.build import build
from tests.leaderboard.conftest import STEPS

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and HARNESS_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        _missing("chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    # Console messages, and every network request the page makes (performance log).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser-site")
    build([runs.root], out, warn=lambda line: None)
    return out


def open_page(driver, path: Path) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get_log("performance")
    driver.get(path.as_uri())


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def column(driver, table_id: str, css: str) -> list[str]:
    """The text of one cell per visible row, in the order the page shows them."""
    rows = driver.find_elements("css selector", f"#{table_id} tbody tr")
    return [row.find_element("css selector", css).text for row in rows if row.is_displayed()]


def metric_values(driver, table_id: str, metric: str) -> list[float]:
    cells = driver.find_elements("css selector", f'#{table_id} tbody tr td[data-metric="{metric}"]')
    return [float(cell.get_attribute("data-v")) for cell in cells]


def header_button(driver, table_id: str, text: str):
    for th in driver.find_elements("css selector", f"#{table_id} thead th"):
        if th.text.split("\n")[0].strip() == text:
            return th.find_element("css selector", "button")
    raise AssertionError(f"no column {text!r} in {table_id}")


def test_the_index_loads_without_errors_or_requests_and_is_saved_as_a_screenshot(browser, site, tmp_path):
    open_page(browser, site / "index.html")
    assert browser.title == "Leaderboard"
    assert console_errors(browser) == []
    urls = requested_urls(browser)
    assert urls and all(url.startswith(("file://", "data:")) for url in urls), urls  # the page itself, nothing else
    charts = browser.find_elements("css selector", "#task-humaneval svg.chart")
    assert len(charts) == 2 and all(chart.is_displayed() for chart in charts)
    shot = Path(os.environ.get("HARNESS_ARTIFACTS") or tmp_path) / "leaderboard.png"
    save_full_page(browser, shot)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def save_full_page(driver, path: Path) -> None:
    """The whole page, not only the window (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_clicking_a_header_sorts_and_clicking_again_reverses(browser, site):
    open_page(browser, site / "index.html")
    table = "table-humaneval"
    before = column(browser, table, "td:first-child")
    header_button(browser, table, "Model").click()
    by_model = column(browser, table, "td:first-child")
    assert by_model == sorted(before, key=str.lower) and by_model != before
    header_button(browser, table, "pass@1").click()
    values = metric_values(browser, table, "pass@1")
    assert values == sorted(values, reverse=True)  # numbers sort best first
    header_button(browser, table, "pass@1").click()
    again = metric_values(browser, table, "pass@1")
    assert again == sorted(values) and again != values
    assert console_errors(browser) == []


def test_typing_in_the_filter_keeps_only_matching_models(browser, site):
    open_page(browser, site / "index.html")
    table = "table-humaneval"
    box = browser.find_element("css selector", f'input[data-filter="{table}"]')
    assert box.is_displayed()  # hidden without the script, shown with it
    box.send_keys("ft-demo")
    assert column(browser, table, "td:first-child") == ["ft-demo"] * len(STEPS)
    box.clear()
    box.send_keys("no such model")
    assert column(browser, table, "td:first-child") == []
    box.clear()
    box.send_keys(" ")  # clear() sends no input event; a blank query shows every row again
    assert len(column(browser, table, "td:first-child")) == len(STEPS) + 2
    assert console_errors(browser) == []


def test_the_matrix_filters_to_problems_where_runs_differ(browser, site):
    open_page(browser, site / "matrix-humaneval.html")
    table = "matrix-humaneval"
    every = column(browser, table, "th")
    browser.find_element("css selector", f'input[data-only-differing="{table}"]').click()
    differing = column(browser, table, "th")
    assert 0 < len(differing) < len(every)
    assert console_errors(browser) == []


def test_every_run_page_loads_without_errors(browser, site):
    pages = sorted(site.glob("runs/*.html"))
    assert len(pages) == len(STEPS) + 3
    for path in pages:
        open_page(browser, path)
        assert console_errors(browser) == [], path.name
        assert browser.find_elements("css selector", "#problems tbody tr"), path.name


def test_without_javascript_the_tables_and_charts_are_still_there(browser, site):
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        open_page(browser, site / "index.html")
        assert len(browser.find_elements("css selector", "#table-humaneval tbody tr")) == len(STEPS) + 2
        assert all(c.is_displayed() for c in browser.find_elements("css selector", "svg.chart"))
        # The filter box does nothing without the script, so it is not shown.
        assert not browser.find_element("css selector", 'input[data-filter="table-humaneval"]').is_displayed()
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
