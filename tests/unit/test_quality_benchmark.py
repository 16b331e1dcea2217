"""benchmarks.quality: the oracle's realised vs expected churned ARR per snapshot, chance of a bound."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from benchmarks.quality import (
    arr_band_breakdown,
    chance_within,
    churn_against_oracle,
    oracle_arr_by_snapshot,
)


def test_oracle_arr_by_snapshot_sums_each_labelled_month() -> None:
    truth = pd.DataFrame(
        {
            "month": pd.to_datetime(
                ["2025-01-01", "2025-01-01", "2025-01-01", "2025-02-01", "2025-02-01", "2025-03-01"]
            ),
            "arr": [100.0, 300.0, 50.0, 100.0, 200.0, 80.0],
            "p_churn_true": [0.5, 0.1, 0.2, 0.25, 0.5, 0.3],
            # the last month's window is not observed: no row of it is counted
            "churned_90d": pd.array([True, False, True, False, True, None], dtype="boolean"),
        }
    )
    table = oracle_arr_by_snapshot(truth)
    assert list(table["month"]) == list(pd.to_datetime(["2025-01-01", "2025-02-01"]))
    first, second = table.iloc[0], table.iloc[1]
    assert first["accounts"] == 3 and first["churned"] == 2
    assert first["expected_churned"] == pytest.approx(0.8)
    assert first["realised_arr"] == pytest.approx(150.0)
    assert first["expected_arr"] == pytest.approx(50 + 30 + 10)
    assert first["ratio"] == pytest.approx(150 / 90)
    chance_sd = math.sqrt(0.25 * 100**2 + 0.09 * 300**2 + 0.16 * 50**2)
    assert first["chance_sd_arr"] == pytest.approx(chance_sd)
    assert first["z_arr"] == pytest.approx((150 - 90) / chance_sd)
    assert second["realised_arr"] == pytest.approx(200.0)
    assert second["expected_arr"] == pytest.approx(25 + 100)


def test_chance_within_matches_the_binomial() -> None:
    """n equal accounts: the realised churned ARR is binomial, so the chance is exact."""
    n, p, bound = 400, 0.05, 0.10
    expected = n * p
    k = np.arange(1, n + 1)
    exact = binom.pmf(k, n, p)[np.abs(expected / k - 1) <= bound].sum()
    estimate = chance_within(np.full(n, p), np.ones(n), bound, draws=20_000, seed=1)
    # Monte Carlo sd: sqrt(0.4 x 0.6 / 20,000) = 0.0035
    assert estimate == pytest.approx(exact, abs=0.015)


def test_chance_within_certain_and_impossible_outcomes() -> None:
    assert chance_within(np.ones(3), np.array([1.0, 2.0, 3.0]), 0.0, draws=100) == 1.0
    # one account churning with probability 1/2: realised 0 or 100 against 50 expected
    assert chance_within(np.array([0.5]), np.array([100.0]), 0.10, draws=1_000) == 0.0


def test_arr_band_breakdown_locates_the_error_in_the_largest_accounts() -> None:
    # ten accounts: eight small (ARR 10), two large (ARR 1000); the model is
    # right on the small ones and doubles the large ones' probability
    arr = np.array([10.0] * 8 + [1000.0, 1000.0])
    p_true = np.array([0.2] * 8 + [0.01, 0.03])
    p_model = np.array([0.2] * 8 + [0.02, 0.06])
    bands = arr_band_breakdown(arr, p_model, p_true, quantiles=(0.5,))
    small, large = bands.iloc[0], bands.iloc[1]
    assert (small["rows"], large["rows"]) == (8, 2)
    total = 8 * 0.2 * 10 + 10 + 30
    assert small["share_of_expected"] == pytest.approx(16 / total)
    assert large["share_of_expected"] == pytest.approx(40 / total)
    assert small["ratio"] == pytest.approx(1.0)
    assert large["ratio"] == pytest.approx(2.0)
    assert large["mean_p_model"] == pytest.approx(0.04)
    assert large["mean_p_true"] == pytest.approx(0.02)
    assert (large["arr_from"], large["arr_to"]) == (10.0, 1000.0)  # 10 < arr <= 1000
    overall = np.sum(p_model * arr) / np.sum(p_true * arr) - 1
    assert bands["contribution"].sum() == pytest.approx(overall)
    assert small["contribution"] == pytest.approx(0.0)


def test_arr_band_breakdown_bands_cover_every_row_once() -> None:
    rng = np.random.default_rng(3)
    arr = rng.lognormal(10, 2, 5_000)
    p = rng.uniform(0.001, 0.2, 5_000)
    bands = arr_band_breakdown(arr, p, p)
    assert bands["rows"].sum() == 5_000
    assert list(bands["rows"]) == [2_500, 2_000, 450, 50]
    assert bands["share_of_expected"].sum() == pytest.approx(1.0)
    assert np.allclose(bands["ratio"], 1.0) and np.allclose(bands["contribution"], 0.0)
    with pytest.raises(ValueError, match="differ in length"):
        arr_band_breakdown(arr, p[:-1], p)


def test_churn_against_oracle_prices_the_model_against_the_oracle_expectation() -> None:
    rng = np.random.default_rng(3)
    n = 400
    arr = 100.0 * np.arange(1, n + 1)  # the top 1%: the last 4 rows
    p_true = np.full(n, 0.1)
    y = (rng.random(n) < p_true).astype(float)
    y[:3] = 1.0  # both classes, whatever the draw
    p_model = p_true.copy()
    p_model[-4:] = 0.2  # the four largest accounts priced twice too high
    result = churn_against_oracle(y, p_model, p_true, arr)
    expected = float(np.sum(p_true * arr))
    assert result["oracle_expected_arr_at_risk"] == pytest.approx(expected, abs=0.01)
    assert result["model_vs_oracle_expected_arr_at_risk"] == pytest.approx(
        (np.sum(p_model * arr) - expected) / expected, abs=1e-4
    )
    assert result["top_1pct_ratio"] == pytest.approx(2.0)
    assert result["p90_p99_ratio"] == pytest.approx(1.0)
    assert result["realised_churned_arr"] == pytest.approx(float(np.sum(y * arr)), abs=0.01)
    # the oracle ranks no better than chance here (one probability for all)
    assert result["oracle_roc_auc"] == pytest.approx(0.5)
    assert result["auc_gap_to_oracle"] == pytest.approx(0.5 - result["roc_auc"], abs=1e-4)
