"""A live score is enriched exactly as the nightly frame functions enrich the portfolio."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.online_enrich import (
    employee_band_label,
    enrich_record,
    fit_reference,
)
from serving.portfolio import enrich_scores
from serving.segmentation import employee_band
from serving.settings import PortfolioSettings


def _portfolio(n: int = 60, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    employees = rng.choice([10.0, 60.0, 300.0, 2000.0, 9000.0, np.nan], n)
    scores = pd.DataFrame(
        {
            "account_id": pd.array([f"A{i:03d}" for i in range(n)], dtype="string"),
            "p_churn": rng.uniform(0.01, 0.9, n),
            "p_upsell": rng.uniform(0.01, 0.8, n),
            "arr": rng.uniform(1_000, 300_000, n),
            "segment": pd.array(rng.choice(["smb", "mid", "ent", None], n), dtype="string"),
            "industry": pd.array(rng.choice(["saas", "retail", "bank"], n), dtype="string"),
            "region": pd.array(rng.choice(["emea", "na", None], n), dtype="string"),
            "employees": employees,
            "days_to_renewal": rng.choice([5.0, 40.0, 200.0, -3.0, np.nan], n),
            "open_expansion_pipeline": rng.choice([0.0, 50_000.0, np.nan], n),
        }
    )
    return scores


def _nightly(scores: pd.DataFrame, settings: PortfolioSettings) -> pd.DataFrame:
    return enrich_scores(scores, settings)


def test_record_enrichment_equals_the_frame_functions_for_snapshot_accounts():
    settings = PortfolioSettings()
    nightly = _nightly(_portfolio(), settings)
    reference = fit_reference(nightly, settings)
    for row in nightly.to_dict("records"):
        scored = {k: row[k] for k in ("account_id", "p_churn", "p_upsell", "arr")}
        live = enrich_record(scored, reference)
        assert live["expected_expansion"] == pytest.approx(row["expected_expansion"], rel=1e-12)
        assert live["icp_fit"] == pytest.approx(row["icp_fit"], abs=1e-9)
        assert live["priority"] == pytest.approx(row["priority"], abs=1e-6)
        assert live["tier"] == row["tier"], row["account_id"]
        assert live["expected_arr_at_risk"] == pytest.approx(row["p_churn"] * row["arr"])


def test_what_if_features_change_timing_and_priority():
    settings = PortfolioSettings()
    nightly = _nightly(_portfolio(), settings)
    reference = fit_reference(nightly, settings)
    row = nightly.iloc[0]
    scored = {"account_id": row["account_id"], "p_churn": 0.5, "p_upsell": 0.1, "arr": 100_000.0}
    far = enrich_record(scored, reference, {"days_to_renewal": 400.0})
    near = enrich_record(scored, reference, {"days_to_renewal": 0.0})
    assert near["priority"] == pytest.approx(
        far["priority"] * (1 + settings.priority.renewal_weight)
    )


def test_unknown_account_gets_base_rate_fit_and_a_tier_against_the_cuts():
    settings = PortfolioSettings()
    nightly = _nightly(_portfolio(), settings)
    reference = fit_reference(nightly, settings)
    huge = enrich_record(
        {"account_id": "NEW", "p_churn": 0.9, "p_upsell": 0.0, "arr": 1e9}, reference
    )
    tiny = enrich_record(
        {"account_id": "NEW", "p_churn": 0.01, "p_upsell": 0.01, "arr": 1.0}, reference
    )
    assert huge["tier"] == "strategic"
    assert tiny["tier"] == "tech-touch"
    assert 0 < huge["icp_fit"] <= 1


def test_context_replaces_the_snapshot_attributes():
    settings = PortfolioSettings()
    nightly = _nightly(_portfolio(), settings)
    reference = fit_reference(nightly, settings)
    row = nightly.iloc[0]
    scored = {k: row[k] for k in ("account_id", "p_churn", "p_upsell", "arr")}
    same = enrich_record(scored, reference, {"segment": row["segment"]})
    other = enrich_record(scored, reference, {"segment": "no such segment"})
    assert same["icp_fit"] == pytest.approx(row["icp_fit"], abs=1e-9)
    assert other["icp_fit"] != same["icp_fit"] or row["segment"] is pd.NA


def test_promotion_rule_applies_to_live_records():
    settings = PortfolioSettings()
    reference = fit_reference(_nightly(_portfolio(), settings), settings)
    promoted = enrich_record(
        {"account_id": "NEW", "p_churn": 0.0, "p_upsell": 0.75, "arr": 1.0}, reference
    )
    assert promoted["tier"] == "high-touch"


@pytest.mark.parametrize("value", [0.0, 49.0, 50.0, 249.0, 250.0, 4999.0, 5000.0, 1e7, None])
def test_employee_band_label_matches_the_frame_function(value):
    bounds = PortfolioSettings().segmentation.employee_bands
    expected = employee_band(pd.Series([np.nan if value is None else value]), bounds).iloc[0]
    expected = None if pd.isna(expected) else expected
    assert employee_band_label(value, bounds) == expected
