"""benchmarks.quality: the oracle's realised vs expected churned ARR per snapshot, chance of a bound."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from benchmarks.quality import chance_within, oracle_arr_by_snapshot


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
