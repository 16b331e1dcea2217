"""BG/NBD against the published CDNOW-sample estimates (Fader, Hardie & Lee 2005)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.bgnbd import BGNBD, repeat_purchase_summary

SAMPLE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cdnow" / "CDNOW_sample.txt"
)


def _orders() -> pd.DataFrame:
    frame = pd.read_csv(
        SAMPLE,
        sep=r"\s+",
        header=None,
        names=["customer", "sample_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    return pd.DataFrame(
        {
            "account_id": frame["customer"].astype(str),
            "date": pd.to_datetime(frame["date"], format="%Y%m%d"),
            "amount": frame["amount"].astype(float),
        }
    )


def test_summary_by_hand():
    orders = pd.DataFrame(
        {
            "account_id": ["a", "a", "a", "a", "b"],
            "date": pd.to_datetime(
                ["2020-01-01", "2020-01-01", "2020-01-11", "2020-02-01", "2020-01-05"]
            ),
            "amount": [10.0, 5.0, 20.0, 30.0, -3.0],
        }
    )
    summary = repeat_purchase_summary(orders, pd.Timestamp("2020-01-31"))
    assert list(summary.index) == ["a"]  # b has no positive order
    row = summary.loc["a"]
    assert (row.frequency, row.recency, row.age) == (1, 10.0, 30.0)
    assert row.monetary_value == pytest.approx(17.5)  # days: 15 and 20


@pytest.mark.skipif(not SAMPLE.is_file(), reason="shared CDNOW data not present")
def test_fit_matches_published_cdnow_sample_estimates():
    summary = repeat_purchase_summary(_orders(), pd.Timestamp("1997-09-30"))
    model = BGNBD.fit(summary.frequency, summary.recency / 7, summary.age / 7)  # weeks
    # Fader, Hardie & Lee (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426
    assert model.r == pytest.approx(0.243, abs=0.005)
    assert model.alpha == pytest.approx(4.414, rel=0.02)
    assert model.a == pytest.approx(0.793, abs=0.01)
    assert model.b == pytest.approx(2.426, rel=0.02)
    alive = model.probability_alive(summary.frequency, summary.recency / 7, summary.age / 7)
    assert np.all((alive > 0) & (alive <= 1))
    assert np.all(alive[summary.frequency.to_numpy() == 0] == 1.0)
    quiet = model.probability_no_purchase(
        summary.frequency, summary.recency / 7, summary.age / 7, 26
    )
    assert np.all((quiet >= 1 - alive - 1e-12) & (quiet <= 1))
    expected = model.expected_purchases(summary.frequency, summary.recency / 7, summary.age / 7, 39)
    # observed purchase days in the 39 weeks after the calibration period
    orders = _orders()
    later = orders[(orders["date"] > "1997-09-30") & (orders["amount"] > 0)]
    observed = later.assign(day=later["date"].dt.normalize()).drop_duplicates(["account_id", "day"])
    assert expected.sum() == pytest.approx(len(observed), rel=0.15)
