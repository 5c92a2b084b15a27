"""The dashboard in a real browser: Debian's chromium driven by Playwright against `workbench app` on
127.0.0.1. Every page opens without an exception, the head grid renders and answers a click, the pooled
map's hover shows tokens, and a screenshot of each page lands in test-artifacts/app/."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# url path of each page (st.navigation names them after their files; the first page is the root)
PAGES = {
    "runs": "",
    "head_grids": "head_grids",
    "explorer": "explorer",
    "sinks": "sinks",
    "retrieval": "retrieval",
    "rhythm": "rhythm",
    "interventions": "interventions",
    "binding": "binding",
}
SETTLE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (!document.querySelector('h1')) return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
    return Array.from(charts).every(c => c.querySelector('.main-svg'));
}"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (.ci/run installs it with apt-get)"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_store):
    root, ids = app_store
    port = free_port()
    command = [sys.executable, "-c", "from workbench.cli import main; main()", "app", "--port", str(port)]
    log = ARTIFACTS.parent / "app-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, env={**os.environ, "WORKBENCH_RESULTS": str(root)}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"`workbench app` did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, ids
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        # tall viewport: Streamlit scrolls an inner container, so full_page screenshots stop at the viewport
        tab = browser.new_page(viewport={"width": 1400, "height": 2400})
        yield tab
        browser.close()


def settle(page, timeout: float = 180_000) -> None:
    page.wait_for_function(SETTLE, timeout=timeout, polling=250)
    page.wait_for_timeout(500)
    page.wait_for_function(SETTLE, timeout=timeout, polling=250)  # no rerun started meanwhile


def open_page(page, url: str, name: str) -> None:
    page.goto(f"{url}/{PAGES[name]}")
    settle(page)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_opens_without_exception(server, page, name):
    url, _ = server
    open_page(page, url, name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.inner_text("body")[:2000]
    assert page.locator("h1").count() == 1


def _plot_area(chart):
    box = chart.locator(".nsewdrag").first.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 50
    return box


def test_head_grid_renders_and_a_click_picks_a_head(server, page):
    url, ids = server
    open_page(page, url, "head_grids")
    select = page.locator('[data-testid="stSelectbox"]').first
    select.click()
    page.get_by_role("option", name=ids["demo"], exact=False).click()
    settle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    assert chart.locator("g.hm image, g.heatmaplayer image").count() >= 1  # the heatmap drew its cells
    box = _plot_area(chart)
    layers, heads = 2, 4  # tiny-gqa
    target_layer, target_head = 0, 2
    x = box["x"] + (target_head + 0.5) * box["width"] / heads
    y = box["y"] + (layers - 1 - target_layer + 0.5) * box["height"] / layers  # layer 0 at the bottom
    page.mouse.click(x, y)
    settle(page)
    assert page.get_by_role("heading", name=f"layer {target_layer}, head {target_head}").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "head_grids-clicked.png"))


def test_pooled_map_hover_shows_tokens(server, page):
    url, ids = server
    open_page(page, url, "explorer")
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    box = _plot_area(chart)
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.6)
    hover = chart.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=10_000)
    text = hover.first.text_content() or ""
    assert "query" in text and "key" in text and "log10 p" in text
    # each cell label is its token span and the tokens' text
    assert re.search(r"query \d+–\d+ \S", text) and re.search(r"key \d+–\d+ \S", text), text
    page.screenshot(path=str(ARTIFACTS / "explorer-hover.png"))
