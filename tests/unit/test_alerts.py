"""Alert rules fire exactly at their documented boundaries, with accounts and actions."""

from __future__ import annotations

import pandas as pd
import pytest

from serving.alerts import (
    account_risk_rise_alert,
    churn_share_alert,
    concentration_alerts,
    coverage_alerts,
    crosses,
    sector_risk_rise_alerts,
    severity,
)
from serving.analytics import Concentration, concentration
from serving.portfolio_inputs import check_scores
from serving.settings import AlertSettings, MetricSettings

SETTINGS = AlertSettings()


def scores_frame(rows: list[dict]) -> pd.DataFrame:
    defaults = {"p_churn": 0.0, "p_upsell": 0.0, "arr": 0.0}
    return check_scores(pd.DataFrame([{**defaults, **row} for row in rows]))


def shares(top: float, industry: float) -> Concentration:
    return Concentration(10, top, ["P1", "P2"], 0.1, "tech", industry)


@pytest.mark.parametrize(
    ("observed", "comparison", "fires"),
    [
        (0.40, ">", False),
        (0.4000000001, ">", False),  # rounding to 9 decimals: floating-point noise
        (0.400000001, ">", True),
        (0.60, "<", False),
        (0.599999999, "<", True),
        (0.15, ">=", True),
        (0.149999999, ">=", False),
    ],
)
def test_crosses_at_the_boundaries(observed, comparison, fires):
    threshold = {">": 0.40, "<": 0.60, ">=": 0.15}[comparison]
    assert crosses(observed, threshold, comparison, 9) is fires


def test_concentration_alert_fires_above_40_percent_not_at_it():
    scores = scores_frame([{"account_id": "A", "arr": 1.0}])
    assert concentration_alerts(shares(0.40, 0.1), scores, SETTINGS, "unknown") == []
    [alert] = concentration_alerts(shares(0.41, 0.1), scores, SETTINGS, "unknown")
    assert alert.rule == "concentration_top10"
    assert (alert.comparison, alert.threshold, alert.observed) == (">", 0.40, 0.41)
    assert alert.accounts == ["P1", "P2"]
    assert "mid-market" in alert.suggested_action and "Diversify" in alert.suggested_action
    assert alert.severity == "warning"


def test_concentration_alert_from_a_hand_built_portfolio():
    # ten accounts of 4 and sixty of 1: the top 10 hold exactly 40 of 100
    rows = [{"account_id": f"T{i}", "arr": 4.0, "industry": f"i{i}"} for i in range(10)]
    rows += [{"account_id": f"S{i:02d}", "arr": 1.0, "industry": f"j{i}"} for i in range(60)]
    scores = scores_frame(rows)
    exact = concentration(scores, None, MetricSettings())
    assert exact.top_share == 0.4
    assert concentration_alerts(exact, scores, SETTINGS, "unknown") == []
    rows[0]["arr"] = 5.0  # 41 / 101
    scores = scores_frame(rows)
    [alert] = concentration_alerts(
        concentration(scores, None, MetricSettings()), scores, SETTINGS, "unknown"
    )
    assert alert.observed == pytest.approx(41 / 101)
    assert alert.accounts[0] == "T0" and len(alert.accounts) == 10


def test_sector_dependency_alert_lists_the_sector_accounts_by_arr():
    scores = scores_frame(
        [
            {"account_id": "B", "arr": 10.0, "industry": "tech"},
            {"account_id": "A", "arr": 30.0, "industry": "tech"},
            {"account_id": "C", "arr": 60.0, "industry": "retail"},
        ]
    )
    assert concentration_alerts(shares(0.1, 0.40), scores, SETTINGS, "unknown") == []
    [alert] = concentration_alerts(shares(0.1, 0.60), scores, SETTINGS, "unknown")
    assert (alert.rule, alert.scope, alert.accounts) == ("sector_dependency", "tech", ["A", "B"])
    assert alert.severity == "critical"  # 0.60 >= 1.5 x 0.40


def test_churn_share_alert_boundary_is_exclusive_and_robust_to_float_noise():
    # 0.1 x 30 + 0.1 x 70 = 10.000000000000002 in floating point: exactly 10% by hand
    at = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.1, "arr": 30.0},
            {"account_id": "B", "p_churn": 0.1, "arr": 70.0},
        ]
    )
    assert churn_share_alert(at, SETTINGS) == []
    above = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.1, "arr": 30.0},
            {"account_id": "B", "p_churn": 0.11, "arr": 70.0},
            {"account_id": "C", "p_churn": 0.0, "arr": 0.0},
        ]
    )
    [alert] = churn_share_alert(above, SETTINGS)
    assert alert.observed == pytest.approx(0.107)
    assert alert.accounts == ["B", "A"]  # by expected ARR at risk; C has none
    assert "adoption programme" in alert.suggested_action and "CSM" in alert.suggested_action


def test_churn_share_alert_of_zero_arr_does_not_fire():
    assert churn_share_alert(scores_frame([{"account_id": "A", "p_churn": 1.0}]), SETTINGS) == []


def test_coverage_alert_fires_below_target_only():
    coverage = pd.DataFrame(
        {
            "target_accounts": [5, 10, 4, 0],
            "coverage": [0.6, 0.5, 0.4, None],
        },
        index=["at", "below", "far", "none"],
    )
    alerts = coverage_alerts(coverage, {"below": ["X1", "X2"]}, SETTINGS)
    assert [(a.scope, a.severity) for a in alerts] == [("below", "warning"), ("far", "critical")]
    assert alerts[0].accounts == ["X1", "X2"]
    assert alerts[0].comparison == "<" and alerts[0].threshold == 0.6
    assert "nurturing" in alerts[0].suggested_action


def test_account_risk_rise_fires_at_the_threshold():
    previous = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.10},
            {"account_id": "B", "p_churn": 0.10},
            {"account_id": "C", "p_churn": 0.30},
            {"account_id": "GONE", "p_churn": 0.0},
        ]
    )
    current = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.25, "arr": 1.0},  # +0.15: fires (>=)
            {"account_id": "B", "p_churn": 0.2499, "arr": 1.0},  # +0.1499: does not
            {"account_id": "C", "p_churn": 0.70, "arr": 1.0},  # +0.40
            {"account_id": "NEW", "p_churn": 0.9, "arr": 1.0},  # no previous score
        ]
    )
    [alert] = account_risk_rise_alert(current, previous, SETTINGS)
    assert alert.accounts == ["C", "A"]
    assert alert.observed == pytest.approx(0.40)
    assert alert.details[1] == {
        "account_id": "A",
        "p_churn_previous": 0.1,
        "p_churn": 0.25,
        "rise": 0.15,
    }
    assert "health plan" in alert.suggested_action
    assert alert.severity == "critical"


def test_no_risk_rise_no_alert():
    same = scores_frame([{"account_id": "A", "p_churn": 0.3, "arr": 1.0}])
    assert account_risk_rise_alert(same, same, SETTINGS) == []
    assert sector_risk_rise_alerts(same, same, SETTINGS, "unknown") == []


def test_sector_risk_rise_by_hand():
    previous = scores_frame(
        [
            {"account_id": "A", "p_churn": 0.10, "arr": 100.0, "industry": "tech"},
            {"account_id": "B", "p_churn": 0.10, "arr": 100.0, "industry": "tech"},
            {"account_id": "C", "p_churn": 0.10, "arr": 100.0, "industry": "retail"},
        ]
    )
    current = scores_frame(
        [
            # tech: (0.16 x 100 + 0.10 x 100) / 200 = 0.13, up 0.03 -> fires (>=)
            {"account_id": "A", "p_churn": 0.16, "arr": 100.0, "industry": "tech"},
            {"account_id": "B", "p_churn": 0.10, "arr": 100.0, "industry": "tech"},
            # retail: 0.1299 - 0.10 = 0.0299 -> does not
            {"account_id": "C", "p_churn": 0.1299, "arr": 100.0, "industry": "retail"},
        ]
    )
    [alert] = sector_risk_rise_alerts(current, previous, SETTINGS, "unknown")
    assert (alert.rule, alert.scope, alert.accounts) == ("sector_risk_rise", "tech", ["A"])
    assert alert.observed == pytest.approx(0.03)


def test_sector_risk_rise_takes_current_industries_when_the_previous_run_has_none():
    previous = check_scores(
        pd.DataFrame({"account_id": ["A"], "p_churn": [0.1], "p_upsell": [0.0], "arr": [10.0]})
    ).drop(columns=["industry"])
    current = scores_frame([{"account_id": "A", "p_churn": 0.5, "arr": 10.0, "industry": "x"}])
    [alert] = sector_risk_rise_alerts(current, previous, SETTINGS, "unknown")
    assert alert.scope == "x" and alert.observed == pytest.approx(0.4)


def test_severity_boundaries():
    settings = AlertSettings(critical_ratio=1.5)
    assert severity(0.15, 0.10, ">", settings) == "critical"  # 0.1 x 1.5 exactly
    assert severity(0.1499, 0.10, ">", settings) == "warning"
    assert severity(0.4, 0.6, "<", settings) == "critical"  # 0.6 / 1.5 exactly
    assert severity(0.41, 0.6, "<", settings) == "warning"


def test_alerts_list_at_most_max_accounts():
    rows = [{"account_id": f"A{i:02d}", "p_churn": 0.5, "arr": 1.0} for i in range(30)]
    [alert] = churn_share_alert(scores_frame(rows), AlertSettings(max_accounts=5))
    assert alert.accounts == ["A00", "A01", "A02", "A03", "A04"]


def test_every_rule_needs_a_suggested_action():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no suggested action"):
        AlertSettings(actions={"coverage": "x"})
