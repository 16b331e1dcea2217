"""features.exploration on tiny hand-made frames whose answers can be checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.exploration import (
    arr_over_time,
    feature_summary,
    label_rates,
    numeric_features,
    outcome_correlations,
    table_coverage,
)


def _day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).as_unit("ns")


@pytest.fixture
def panel() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": pd.Series(["a", "b", "c", "a", "b", "c"], dtype="str"),
            "as_of": [_day("2024-01-01")] * 3 + [_day("2024-02-01")] * 3,
            "arr": [100.0, 300.0, 600.0, 100.0, 300.0, 0.0],
            "seats_used": [1.0, 2.0, 3.0, 4.0, np.nan, 6.0],
            "segment": pd.Series(["smb", "smb", None, "smb", "smb", None], dtype="str"),
            "churn": [0, 1, 0, 1, 0, 0],
            "upsell": [1, 0, 0, 0, 0, 1],
        }
    )


def test_table_coverage_counts_rows_accounts_and_dates() -> None:
    tables = {
        "orders": pd.DataFrame(
            {
                "account_id": pd.Series(["a", "a", "b"], dtype="str"),
                "date": [_day("2024-03-05"), _day("2024-01-02"), _day("2024-02-01")],
                "amount": [1.0, 2.0, 3.0],
            }
        ),
        "invoices": pd.DataFrame(
            {
                "account_id": pd.Series(["a", "b"], dtype="str"),
                "due_date": [_day("2030-01-01"), _day("2024-01-01")],
                "paid_at": [_day("2024-01-10"), pd.NaT],
                "amount": [5.0, 6.0],
            }
        ),
        "accounts": pd.DataFrame({"account_id": pd.Series(["a", "b", "c"], dtype="str")}),
    }
    coverage = table_coverage(tables).set_index("table")
    assert list(coverage.index) == ["accounts", "orders", "invoices"]  # the contract's order
    assert coverage.loc["orders", "rows"] == 3 and coverage.loc["orders", "accounts"] == 2
    assert coverage.loc["orders", "first_date"] == _day("2024-01-02")
    assert coverage.loc["orders", "last_date"] == _day("2024-03-05")
    # invoices are dated by payment (a due date is scheduled ahead), as in the data period
    assert coverage.loc["invoices", "date_column"] == "paid_at"
    assert coverage.loc["invoices", "last_date"] == _day("2024-01-10")
    assert pd.isna(coverage.loc["accounts", "date_column"])
    assert pd.isna(coverage.loc["accounts", "first_date"])


def test_label_rates_per_snapshot(panel: pd.DataFrame) -> None:
    rates = label_rates(panel).set_index("as_of")
    january, february = rates.loc[_day("2024-01-01")], rates.loc[_day("2024-02-01")]
    assert january["accounts"] == 3 and january["arr"] == 1000.0
    assert january["churn_rate"] == pytest.approx(1 / 3)
    assert january["upsell_rate"] == pytest.approx(1 / 3)
    assert january["churned_arr"] == 300.0  # b churned with 300 of ARR
    assert january["churned_arr_share"] == pytest.approx(0.3)
    assert february["churned_arr"] == 100.0 and february["churned_arr_share"] == pytest.approx(0.25)


def test_label_rates_per_segment_keeps_missing_segments(panel: pd.DataFrame) -> None:
    rates = label_rates(panel, by="segment").set_index("segment")
    assert set(rates.index) == {"smb", "(missing)"}
    assert rates.loc["smb", "accounts"] == 4
    assert rates.loc["smb", "churn_rate"] == pytest.approx(0.5)
    assert rates.loc["(missing)", "upsell_rate"] == pytest.approx(0.5)
    both = label_rates(panel, by=["as_of", "segment"])
    assert len(both) == 4 and both["accounts"].sum() == len(panel)


def test_label_rates_without_arr_share_when_there_is_no_arr(panel: pd.DataFrame) -> None:
    zero = panel.assign(arr=0.0)
    assert label_rates(zero)["churned_arr_share"].isna().all()
    with pytest.raises(KeyError, match="churn"):
        label_rates(panel.drop(columns=["churn"]))


def test_numeric_features_leave_out_ids_dates_labels_and_categories(panel: pd.DataFrame) -> None:
    assert numeric_features(panel) == ["arr", "seats_used"]


def test_feature_summary_overall_and_by_segment(panel: pd.DataFrame) -> None:
    overall = feature_summary(panel).set_index("feature")
    seats = overall.loc["seats_used"]
    assert seats["rows"] == 6 and seats["missing_share"] == pytest.approx(1 / 6)
    assert seats["mean"] == pytest.approx((1 + 2 + 3 + 4 + 6) / 5)
    assert seats["p50"] == pytest.approx(3.0)
    by_segment = feature_summary(panel, by="segment", features=["seats_used"])
    smb = by_segment.set_index("segment").loc["smb"]
    assert smb["rows"] == 4 and smb["missing_share"] == pytest.approx(0.25)
    assert smb["mean"] == pytest.approx((1 + 2 + 4) / 3)
    missing = by_segment.set_index("segment").loc["(missing)"]
    assert missing["p10"] == pytest.approx(3.3) and missing["p90"] == pytest.approx(5.7)


def test_feature_summary_of_a_feature_never_known() -> None:
    frame = pd.DataFrame({"x": [np.nan, np.nan]})
    row = feature_summary(frame).iloc[0]
    assert row["missing_share"] == 1.0 and math.isnan(row["mean"]) and math.isnan(row["p50"])


def test_outcome_correlations_rank_features_by_strength() -> None:
    rng = np.random.default_rng(0)
    n = 200
    churn = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "account_id": pd.Series([f"a{i}" for i in range(n)], dtype="str"),
            "strong": churn * 10.0 + rng.normal(size=n),  # follows churn
            "noise": rng.normal(size=n),
            "constant": np.ones(n),
            "sparse": np.where(np.arange(n) < 10, 1.0, np.nan),  # known on 10 rows only
            "churn": churn,
            "upsell": 1 - churn,
        }
    )
    table = outcome_correlations(frame, min_known=30)
    assert table["feature"].iloc[0] == "strong"
    strong = table.set_index("feature").loc["strong"]
    assert strong["churn"] > 0.8 and strong["upsell"] < -0.8
    assert strong["churn"] == pytest.approx(-strong["upsell"])
    noise = table.set_index("feature").loc["noise"]
    assert abs(noise["churn"]) < 0.2
    assert table.set_index("feature").loc[["constant", "sparse"], "churn"].isna().all()
    assert table.set_index("feature").loc["sparse", "known_share"] == pytest.approx(0.05)
    assert list(table["feature"].iloc[-2:]) == ["constant", "sparse"]  # undefined ones last


def test_arr_over_time_counts_active_accounts_and_sums_arr() -> None:
    subscriptions = pd.DataFrame(
        {
            "account_id": pd.Series(["a", "a", "b"], dtype="str"),
            "start_date": [_day("2024-01-01"), _day("2024-02-15"), _day("2024-02-01")],
            "end_date": [_day("2024-03-01"), pd.NaT, _day("2024-02-20")],
            "arr": [100.0, 50.0, 30.0],
        }
    )
    tables = {
        "subscriptions": subscriptions,
        "accounts": pd.DataFrame({"account_id": pd.Series(["a", "b"], dtype="str")}),
    }
    days = [_day("2024-01-15"), _day("2024-02-16"), _day("2024-03-10"), _day("2024-01-01")]
    frame = arr_over_time(tables, days).set_index("as_of")
    assert list(frame.index) == sorted(days)
    assert frame.loc[_day("2024-01-01"), "arr"] == 100.0  # a starts that day
    assert frame.loc[_day("2024-02-16"), "active_accounts"] == 2
    assert frame.loc[_day("2024-02-16"), "arr"] == 180.0  # a: 100 + 50, b: 30
    assert frame.loc[_day("2024-03-10"), "arr"] == 50.0  # a's first subscription ended
