"""Inline SVG charts: serving.charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from serving.charts import (
    calibration_chart,
    compact_number,
    concentration_curve,
    horizontal_bars,
    percent,
    priority_matrix,
)

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (950, "950"), (1234, "1.23k"), (1_500_000, "1.5M"), (-4200, "-4.2k"), (2e9, "2B")],
)
def test_compact_number(value: float, text: str) -> None:
    assert compact_number(value) == text


def test_percent() -> None:
    assert percent(0.1234) == "12.3%"
    assert percent(None) == "n/a"
    assert percent(float("nan")) == "n/a"


def test_bars_scale_to_the_largest_value_and_escape_names() -> None:
    root = _parse(horizontal_bars([("<b>&co", 50.0), ("smb", 100.0)], label="ARR by segment"))
    widths = [float(r.get("width")) for r in root.iter(f"{SVG}rect")]
    assert widths[1] == pytest.approx(2 * widths[0])
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<b>&co" in texts  # escaped in the markup, read back as text


def test_bars_beyond_a_threshold_are_red_and_the_line_is_drawn() -> None:
    root = _parse(horizontal_bars([("a", 0.1), ("b", 0.3)], label="PSI", threshold=0.2))
    fills = [r.get("fill") for r in root.iter(f"{SVG}rect")]
    assert fills[0] != fills[1]
    assert len(list(root.iter(f"{SVG}line"))) == 1


def test_concentration_curve_marks_the_top_ten() -> None:
    shares = [0.2 + 0.8 * (i + 1) / 50 for i in range(50)]
    root = _parse(concentration_curve(shares))
    assert any("top 10" in (t.text or "") for t in root.iter(f"{SVG}text"))
    assert len(list(root.iter(f"{SVG}path"))) == 1


def test_priority_matrix_plots_each_valid_account_once() -> None:
    root = _parse(
        priority_matrix(
            p_churn=[0.1, 0.5, float("nan"), 0.3],
            arr=[1_000.0, 50_000.0, 10.0, 0.0],
            size=[1.0, 4.0, 1.0, 1.0],
            groups=["strategic", "tech-touch", "x", "y"],
            names=["A1", "A2", "A3", "A4"],
            churn_threshold=0.25,
        )
    )
    titles = [
        c.find(f"{SVG}title").text
        for c in root.iter(f"{SVG}circle")
        if c.find(f"{SVG}title") is not None
    ]
    assert sorted(t.split(":")[0] for t in titles) == ["A1", "A2"]


def test_empty_inputs_render_a_message() -> None:
    for markup in (
        horizontal_bars([], label="x"),
        concentration_curve([]),
        priority_matrix([], [], [], [], []),
        calibration_chart([], [], []),
    ):
        root = _parse(markup)
        assert [t.text for t in root.iter(f"{SVG}text")]


def test_calibration_chart_has_one_point_per_non_empty_bin() -> None:
    root = _parse(calibration_chart([0.05, 0.15, 0.25], [0.04, 0.2, 0.0], [100, 20, 0]))
    assert len(list(root.iter(f"{SVG}circle"))) == 2
