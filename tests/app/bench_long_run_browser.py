"""Browser timing of the 128k-token run's pages (run by hand after bench_long_run.py built the store):

    python tests/app/bench_long_run_browser.py /tmp/long-store

Serves the store with `workbench app` on 127.0.0.1, drives Debian's chromium with Playwright, and prints
seconds from a sidebar click (and from a full page load) until the page has settled (script idle, every
chart drawn).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from playwright.sync_api import sync_playwright  # noqa: E402
from test_app_browser import CHROMIUM, LAUNCH_ARGS, SETTLE  # noqa: E402

port = 8765
proc = subprocess.Popen([str(Path(sys.executable).parent / "workbench"), "app", "--port", str(port), "--results", sys.argv[1]],
                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
url = f"http://127.0.0.1:{port}"
results = {}
try:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        tab = b.new_page(viewport={"width": 1400, "height": 1600})
        for _ in range(120):
            try:
                tab.goto(url)
                break
            except Exception:
                time.sleep(0.5)
        tab.wait_for_function(SETTLE, timeout=180000, polling=50)
        for rnd in ("first", "second"):
            for name, label in (("head_grids", "Head grids"), ("explorer", "Attention explorer"), ("runs", "Runs")):
                t = time.perf_counter()
                tab.get_by_role("link", name=label).first.click()
                tab.wait_for_timeout(100)
                tab.wait_for_function(SETTLE, timeout=180000, polling=50)
                results[f"{name} ({rnd}, sidebar click)"] = round(time.perf_counter() - t, 2)
                errors = tab.locator('[data-testid="stException"]').count()
                assert errors == 0, name
        for name, path in (("head_grids", "head_grids"), ("explorer", "explorer"), ("runs", "")):
            t = time.perf_counter()
            tab.goto(f"{url}/{path}")
            tab.wait_for_function(SETTLE, timeout=180000, polling=50)
            results[f"{name} (full page load)"] = round(time.perf_counter() - t, 2)
        b.close()
finally:
    os.killpg(proc.pid, 15)
print(json.dumps(results, indent=1))
