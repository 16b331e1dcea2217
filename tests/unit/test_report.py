"""The self-contained HTML report: serving.report on a hand-made run."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar

import numpy as np
import pandas as pd

from serving.drift import model_drift
from serving.report import ReportInput, machine_value, render_report, rolled_up_cumulative_share

SUMMARY = {
    "as_of": "2024-06-30",
    "arr_total": 1000.0,
    "weighted_churn_risk": 130.0,
    "weighted_churn_risk_band": {"p10": 0.0, "p50": 100.0, "p90": 400.0},
    "concentration_top10": 1.0,
    "nrr_realised": 1.05,
    "nrr_forecast": 0.97,
    "alerts": [
        {
            "rule": "concentration_top10",
            "severity": "critical",
            "threshold": 0.4,
            "observed": 1.0,
            "message": "Top-10 accounts hold 100% of ARR",
            "suggested_action": "Diversify sectors",
            "accounts": ["A1", "A2"],
        }
    ],
    "movers": None,
    "allocation": None,
    "by_segment": {
        "enterprise": {"weighted_churn_risk": 50.0},
        "smb": {"weighted_churn_risk": 60.0},
        "unknown": {"weighted_churn_risk": 20.0},
    },
    "by_industry": {
        "retail": {"weighted_churn_risk": 110.0},
        "tech": {"weighted_churn_risk": 20.0},
    },
    "tiers": {
        "strategic": {
            "accounts": 1,
            "arr": 500.0,
            "expected_arr_at_risk": 50.0,
            "expected_expansion": 15.0,
        },
        "high-touch": {
            "accounts": 1,
            "arr": 300.0,
            "expected_arr_at_risk": 60.0,
            "expected_expansion": 3.0,
        },
        "tech-touch": {
            "accounts": 1,
            "arr": 200.0,
            "expected_arr_at_risk": 20.0,
            "expected_expansion": 4.0,
        },
        "rules": {"strategic_share": 0.05},
    },
}


def _scores() -> pd.DataFrame:
    reasons = [
        [
            {
                "model": "churn",
                "rank": 1,
                "feature": "usage_trend",
                "value": "-0.4",
                "contribution": 0.8,
                "text": "Seat utilisation fell <40%>",
            },
            {
                "model": "upsell",
                "rank": 1,
                "feature": "seats",
                "value": "50",
                "contribution": 0.5,
                "text": "Many seats",
            },
        ],
        [],
        [],
    ]
    return pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "name": ["Acme", None, "Initech"],
            "parent_account_id": [None, "A1", None],
            "segment": ["enterprise", "smb", None],
            "industry": ["retail", "retail", "tech"],
            "arr": [500.0, 300.0, 200.0],
            "p_churn": [0.1, 0.2, 0.1],
            "p_upsell": [0.3, 0.1, 0.2],
            "expected_arr_at_risk": [50.0, 60.0, 20.0],
            "expected_expansion": [15.0, 3.0, 4.0],
            "priority": [3.0, 2.0, 1.0],
            "tier": ["strategic", "high-touch", "tech-touch"],
            "reasons": reasons,
        }
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.kpis: dict[str, str] = {}
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if "data-kpi" in values:
            self.kpis[values["data-kpi"] or ""] = values.get("data-value") or ""


def _render(**overrides) -> str:
    data = {
        "summary": SUMMARY,
        "scores": _scores(),
        "run": {"name": "acme", "as_of": "2024-06-30", "scored": 3, "rejected": 0},
        **overrides,
    }
    return render_report(ReportInput(**data))


def test_kpi_tiles_carry_the_machine_values_of_the_summary() -> None:
    parser = _Collector()
    parser.feed(_render())
    assert parser.kpis == {
        "arr_total": "1000.0",
        "weighted_churn_risk": "130.0",
        "nrr_forecast": "0.97",
        "concentration_top10": "1.0",
    }
    assert float(parser.kpis["nrr_forecast"]) == SUMMARY["nrr_forecast"]


def test_the_report_is_self_contained_and_escapes_text() -> None:
    html = _render()
    parser = _Collector()
    parser.feed(html)
    assert "script" not in parser.tags and "img" not in parser.tags and "link" not in parser.tags
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "Seat utilisation fell &lt;40%&gt;" in html
    assert "Acme (A1)" in html
    # tiers in the summary's order, the rules entry is not a tier
    tiers = html[html.index('id="tiers"') :]
    assert tiers.index(">strategic<") < tiers.index(">high-touch<") < tiers.index(">tech-touch<")
    assert ">rules<" not in tiers
    assert html == _render()  # deterministic


def test_rolled_up_concentration_merges_children_into_parents() -> None:
    shares = rolled_up_cumulative_share(_scores())
    # A2 rolls up into A1: 800 and 200 of 1000
    np.testing.assert_allclose(shares, [0.8, 1.0])


def test_drift_and_empty_sections_render() -> None:
    class Model:
        feature_names_: ClassVar[list[str]] = ["x"]
        reference_: ClassVar[dict] = {
            "features": {
                "x": {"kind": "numeric", "edges": [0.5], "proportions": [0.5, 0.5], "missing": 0.0}
            },
            "score": {"edges": [0.5], "proportions": [0.5, 0.5]},
        }

        def prepare(self, frame: pd.DataFrame) -> np.ndarray:
            return frame[["x"]].to_numpy(dtype=float)

    drift = model_drift("churn", Model(), pd.DataFrame({"x": [1.0, 2.0]}), np.array([0.1, 0.9]))
    html = _render(drift=drift, scores=_scores().iloc[0:0])
    assert "Drift of the churn model" in html
    assert "1 of 1 features above PSI 0.2" in html


def test_movers_show_before_now_and_what_changed() -> None:
    movers = {
        "available": True,
        "previous_as_of": "2024-05-31",
        "churn": [
            {
                "account_id": "A2",
                "previous": 0.1,
                "current": 0.35,
                "change": 0.25,
                "features": [{"feature": "seat_utilisation_28d", "change": -0.3}],
            }
        ],
        "upsell": [],
    }
    html = _render(summary={**SUMMARY, "movers": movers})
    section = html[html.index('id="movers"') : html.index('id="tiers"')]
    assert "2024-05-31" in section
    assert "10.0%" in section and "35.0%" in section and "+25.0 pts" in section
    assert "seat_utilisation_28d" in section


def test_machine_value() -> None:
    assert machine_value(0.1 + 0.2) == "0.30000000000000004"
    assert machine_value(None) == ""
    assert machine_value(float("nan")) == ""
