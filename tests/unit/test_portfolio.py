"""The two compositions: enrich_scores and build_portfolio_summary (portfolio.json)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving.portfolio import build_portfolio_summary, enrich_scores, json_ready, plan_allocation
from serving.portfolio_inputs import PortfolioInputError
from serving.settings import PortfolioSettings

AS_OF = "2024-06-30"
DESIGN_KEYS = (
    "as_of",
    "arr_total",
    "weighted_churn_risk",
    "weighted_churn_risk_band",
    "concentration_top10",
    "coverage_by_segment",
    "nrr_realised",
    "nrr_forecast",
    "pipeline_velocity",
    "alerts",
    "tiers",
    "allocation",
    "movers",
)
SETTINGS = PortfolioSettings(metrics={"band_draws": 2000, "group_band_draws": 500})


def accounts_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A", "B", "C", "D", "E", "T"],
            "parent_account_id": [None, "A", None, None, None, None],
            "segment": ["enterprise", "enterprise", "mid-market", "smb", "smb", "mid-market"],
            "industry": ["tech", "tech", "retail", "retail", None, "health"],
            "region": ["emea", "emea", "na", "na", "na", "emea"],
            "owner_id": ["M1", "M1", "M2", "M3", "M3", "M2"],
            "employees": [5000.0, 800.0, 300.0, 40.0, 20.0, 1000.0],
            "is_target": [True, True, True, False, True, True],
        }
    )


def scores_table() -> pd.DataFrame:
    attributes = accounts_table().iloc[:5]
    return attributes.assign(
        as_of=pd.Timestamp(AS_OF),
        p_churn=[0.1, 0.2, 0.5, 0.0, 0.3],
        p_upsell=[0.4, 0.1, 0.2, 0.6, 0.0],
        arr=[500.0, 200.0, 200.0, 100.0, 0.0],
        churn_model_version="3",
        reasons=[[{"feature": "usage", "contribution": 0.1}]] * 5,
    )


def arr_history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A", "B", "C", "D", "X"],
            "arr_start": [400.0, 200.0, 250.0, 0.0, 100.0],
            "arr_end": [500.0, 200.0, 200.0, 100.0, 0.0],
        }
    )


def opportunities() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A", "C", "T"],
            "created_at": pd.to_datetime(["2024-01-10", "2024-03-01", "2024-05-01"]),
            "closed_at": pd.to_datetime(["2024-02-10", "2024-04-01", None]),
            "stage": ["won", "lost", "open"],
            "amount": [100.0, 50.0, 80.0],
            "kind": ["expansion", "new", "new"],
        }
    )


def managers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "owner_id": ["M1", "M2", "M3"],
            "name": ["Ada", "Ben", "Cy"],
            "seniority": ["executive", "senior", "junior"],
            "capacity_accounts": [2.0, 2.0, 3.0],
            "capacity_hours": [20.0, 20.0, 20.0],
        }
    )


def summary(**overrides):
    arguments = {
        "scores": scores_table(),
        "accounts": accounts_table(),
        "arr_history": arr_history(),
        "opportunities": opportunities(),
        "account_managers": managers(),
        "as_of": AS_OF,
        "settings": SETTINGS,
    }
    arguments.update(overrides)
    return build_portfolio_summary(**arguments)


def assert_plain_json(value) -> None:
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), (type(value), value)
        if isinstance(value, float):
            assert np.isfinite(value)


def test_enrich_scores_adds_the_portfolio_columns_and_keeps_the_rest():
    enriched = enrich_scores(scores_table(), SETTINGS)
    assert enriched["expected_arr_at_risk"].tolist() == pytest.approx([50.0, 40.0, 100.0, 0.0, 0.0])
    # expansion amount: 10% of ARR (no open pipeline)
    assert enriched["expected_expansion"].tolist() == pytest.approx([20.0, 2.0, 4.0, 6.0, 0.0])
    for column in ("value_segment", "icp_fit", "priority", "tier", "eligible_campaigns"):
        assert enriched[column].notna().all()
    assert set(enriched["tier"]) <= {"strategic", "high-touch", "tech-touch"}
    assert enriched["icp_fit"].between(0, 1).all()
    assert (enriched["churn_model_version"] == "3").all()
    assert enriched["reasons"].iloc[0] == [{"feature": "usage", "contribution": 0.1}]
    assert len(enriched) == 5


def test_summary_has_the_design_keys_by_hand_and_is_plain_json():
    result = summary()
    for key in DESIGN_KEYS:
        assert key in result
    assert_plain_json(result)
    json.dumps(result, allow_nan=False)
    assert result["as_of"] == AS_OF
    assert result["arr_total"] == 1000.0
    assert result["weighted_churn_risk"] == pytest.approx(190.0)
    assert result["weighted_churn_share"] == pytest.approx(0.19)
    # A and its child B roll up to 700 of 1000, and the top 10 hold everything
    assert result["concentration_top10"] == 1.0
    assert result["concentration"]["top_parents"][0] == "A"
    # targets: enterprise A, B active; mid-market C active, T not; smb E has no ARR
    assert result["coverage_by_segment"] == {"enterprise": 1.0, "mid-market": 0.5, "smb": 0.0}
    # start 400 + 200 + 250 + 100 (X churned); +100 (A) -50 (C) -100 (X); D was new
    assert result["nrr_realised"] == pytest.approx(900 / 950)
    assert result["nrr_forecast"] == pytest.approx((1000 - 190 + 32) / 1000)
    assert result["pipeline_velocity"]["win_rate"] == 0.5
    band = result["weighted_churn_risk_band"]
    assert set(band) == {"p10", "p50", "p90"} and band["p10"] <= band["p50"] <= band["p90"]
    assert result["by_owner"]["M1"]["name"] == "Ada"
    assert result["by_segment"]["enterprise"]["accounts"] == 2
    assert (
        sum(
            t["accounts"]
            for t in result["tiers"].values()
            if isinstance(t, dict) and "accounts" in t
        )
        == 5
    )
    assert result["allocation"]["status"] == "solved"
    assert result["movers"]["available"] is False
    rules = {alert["rule"] for alert in result["alerts"]}
    assert {"concentration_top10", "churn_share", "coverage"} <= rules
    for alert in result["alerts"]:
        assert {"rule", "threshold", "observed", "accounts", "severity", "suggested_action"} <= set(
            alert
        )


def test_summary_is_deterministic_and_independent_of_row_order():
    first = json.dumps(summary(), sort_keys=True)
    again = json.dumps(summary(), sort_keys=True)
    shuffled = json.dumps(
        summary(
            scores=scores_table().sample(frac=1, random_state=2),
            accounts=accounts_table().iloc[::-1],
            account_managers=managers().iloc[::-1],
        ),
        sort_keys=True,
    )
    assert first == again == shuffled


def test_filters_restrict_every_metric():
    result = summary(filters={"segment": "enterprise"})
    assert result["filters"] == {"segment": "enterprise"}
    assert result["accounts"] == 2
    assert result["arr_total"] == 700.0
    assert result["coverage_by_segment"] == {"enterprise": 1.0}
    assert set(result["by_segment"]) == {"enterprise"}
    assert result["allocation"]["accounts"] == 2
    assert result["allocation"]["scope"].startswith("filtered")
    assert result["nrr_realised"] == pytest.approx(700 / 600)
    by_owner = summary(filters={"owner": ["M2", "M3"]})
    assert by_owner["accounts"] == 3


def test_a_filter_matching_nothing_gives_an_empty_but_valid_summary():
    result = summary(filters={"industry": "mining"})
    assert result["accounts"] == 0 and result["arr_total"] == 0.0
    assert result["concentration_top10"] is None
    assert result["weighted_churn_share"] is None
    assert result["weighted_churn_risk_band"] == {"p10": 0.0, "p50": 0.0, "p90": 0.0}
    json.dumps(result, allow_nan=False)


def test_unknown_filter_keys_are_named():
    with pytest.raises(PortfolioInputError, match=r"unknown key\(s\) \['colour'\]"):
        summary(filters={"colour": "red"})


def test_missing_tables_give_nulls_with_reasons():
    result = summary(opportunities=None, account_managers=None, arr_history=None, accounts=None)
    assert result["pipeline_velocity"]["velocity"] is None
    assert result["pipeline_velocity"]["reason"] == "no opportunities table"
    assert result["allocation"] == {"status": "skipped", "reason": "no account_managers table"}
    assert result["nrr_realised"] is None
    # targets still come from the scores' own is_target
    assert result["coverage_by_segment"]["enterprise"] == 1.0
    json.dumps(result, allow_nan=False)


def test_a_single_account_portfolio():
    scores = scores_table().iloc[:1]
    result = summary(scores=scores, accounts=accounts_table().iloc[:1])
    assert result["arr_total"] == 500.0
    assert result["concentration_top10"] == 1.0
    assert result["concentration"]["herfindahl"] == 1.0
    json.dumps(result, allow_nan=False)


def test_a_portfolio_with_zero_arr():
    scores = scores_table().assign(arr=0.0)
    result = summary(scores=scores)
    assert result["arr_total"] == 0.0
    assert result["weighted_churn_share"] is None and result["nrr_forecast"] is None
    assert result["concentration_top10"] is None
    json.dumps(result, allow_nan=False)


def test_previous_run_gives_movers_and_risk_alerts():
    previous = scores_table().assign(
        p_churn=[0.1, 0.2, 0.1, 0.0, 0.3], as_of=pd.Timestamp("2024-05-31")
    )
    result = summary(previous_scores=previous)
    assert result["movers"]["available"] is True
    assert result["movers"]["churn"][0]["account_id"] == "C"
    rise = [a for a in result["alerts"] if a["rule"] == "account_risk_rise"]
    assert rise and rise[0]["accounts"] == ["C"]
    sectors = [a for a in result["alerts"] if a["rule"] == "sector_risk_rise"]
    assert [a["scope"] for a in sectors] == ["retail"]


def test_a_precomputed_allocation_is_reused():
    enriched = enrich_scores(scores_table(), SETTINGS)
    plan = plan_allocation(enriched, managers(), SETTINGS)
    result = summary(scores=enriched, allocation=plan)
    assert result["allocation"]["expected_value_assigned"] == pytest.approx(
        plan.summary["expected_value_assigned"]
    )


def test_json_ready_converts_numpy_nan_and_dates():
    value = {
        "a": np.float64(1.5),
        "b": np.int64(2),
        "c": float("nan"),
        "d": pd.NA,
        "e": pd.Timestamp("2024-01-02"),
        "f": (np.bool_(True), None),
        "g": np.array([1.0, np.inf]),
    }
    assert json_ready(value) == {
        "a": 1.5,
        "b": 2,
        "c": None,
        "d": None,
        "e": "2024-01-02T00:00:00",
        "f": [True, None],
        "g": [1.0, None],
    }
