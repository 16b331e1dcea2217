"""The nightly report in a real browser: headless Chromium renders it without errors.

Opens `report.html` of a nightly run (the session's small generated portfolio
scored with freshly trained champions), fails on any console error or page
error, reads every KPI tile's `data-value` and compares it with
`portfolio.json`, and saves a full-page screenshot under the test's temp folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)",
    ),
]


def test_report_renders_without_errors_and_kpis_match_portfolio_json(
    nightly_run_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    report = nightly_run_dir / "report.html"
    summary = json.loads((nightly_run_dir / "portfolio.json").read_text())
    problems: list[str] = []
    requests: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console {message.type}: {message.text}")
                    if message.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri(), wait_until="load")

            tiles = page.eval_on_selector_all(
                "[data-kpi]",
                "nodes => nodes.map(n => [n.dataset.kpi, n.dataset.value, n.innerText])",
            )
            svg_count = page.eval_on_selector_all("svg", "nodes => nodes.length")
            title = page.title()
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert problems == []
    # self-contained: the only thing loaded is the file itself
    assert [url for url in requests if url != report.as_uri()] == []
    assert summary["as_of"] in title

    shown = {key: value for key, value, _ in tiles}
    assert {"arr_total", "weighted_churn_risk", "nrr_forecast", "concentration_top10"} <= set(shown)
    for key, value in shown.items():
        expected = summary[key]
        if expected is None:
            assert value == ""
        else:
            assert math.isclose(float(value), float(expected), rel_tol=0, abs_tol=0), key
    assert all(text.strip() for _, _, text in tiles)
    assert svg_count >= 5  # risk by segment and industry, concentration, matrix, drift
    assert screenshot.stat().st_size > 10_000
