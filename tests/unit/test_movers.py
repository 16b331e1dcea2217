"""Movers since the previous run, with the features that changed most."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from serving.movers import feature_changes, find_movers
from serving.settings import MoverSettings


def scores(rows: list[tuple], as_of: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["account_id", "p_churn", "p_upsell"])
    frame["as_of"] = pd.Timestamp(as_of)
    return frame


CURRENT = scores([("A", 0.5, 0.1), ("B", 0.2, 0.6), ("C", 0.2, 0.2), ("D", 0.9, 0.0)], "2024-07-31")
PREVIOUS = scores(
    [("A", 0.1, 0.1), ("B", 0.3, 0.1), ("C", 0.2, 0.2), ("E", 0.0, 0.0)], "2024-06-30"
)


def test_movers_rank_by_absolute_change():
    movers = find_movers(CURRENT, PREVIOUS, MoverSettings())
    assert movers["available"] is True
    assert movers["previous_as_of"] == "2024-06-30"
    assert (movers["accounts_compared"], movers["new_accounts"], movers["departed_accounts"]) == (
        3,
        1,
        1,
    )
    assert [(m["account_id"], m["change"]) for m in movers["churn"]] == [
        ("A", pytest.approx(0.4)),
        ("B", pytest.approx(-0.1)),
    ]
    assert movers["churn"][0] == {
        "account_id": "A",
        "previous": 0.1,
        "current": 0.5,
        "change": 0.4,
        "features": [],
    }
    assert [(m["account_id"], m["change"]) for m in movers["upsell"]] == [("B", pytest.approx(0.5))]
    assert movers["upsell"][0]["features"] == []


def test_movers_respect_count_and_minimum_change():
    movers = find_movers(CURRENT, PREVIOUS, MoverSettings(min_change=0.2))
    assert [m["account_id"] for m in movers["churn"]] == ["A"]
    movers = find_movers(CURRENT, PREVIOUS, MoverSettings(count=1))
    assert [m["account_id"] for m in movers["churn"]] == ["A"]


def test_without_a_previous_run_there_are_no_movers():
    movers = find_movers(CURRENT, None, MoverSettings())
    assert movers["available"] is False and movers["reason"] == "no previous run"
    assert movers["churn"] == [] and movers["upsell"] == []


def test_feature_changes_are_ranked_in_units_of_the_portfolio_spread():
    current = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "as_of": pd.Timestamp("2024-07-31"),
            "logins": [10.0, 20.0, 30.0],
            "nps": [3.0, 8.0, 8.0],
            "seats": [5, 5, 5],
            "has_champion": [False, True, True],
            "plan": ["pro", "pro", "basic"],
        }
    )
    previous = current.assign(
        logins=[50.0, 20.0, 30.0],
        nps=[9.0, 8.0, 8.0],
        has_champion=[True, True, True],
        plan=["basic", "pro", "basic"],
    )
    [(account, changes)] = feature_changes(current, previous, ["A"], top=5).items()
    assert account == "A"
    # logins -40 / std(10, 20, 30); nps -6 / std(3, 8, 8); has_champion -1 / std(0, 1, 1)
    assert [c["feature"] for c in changes] == ["logins", "nps", "has_champion"]
    assert changes[0]["standardised_change"] == pytest.approx(-40 / math.sqrt(200 / 3))
    assert changes[1]["standardised_change"] == pytest.approx(-6 / math.sqrt(50 / 9))
    assert changes[2]["standardised_change"] == pytest.approx(-1 / math.sqrt(2 / 9))
    assert changes[0] | {"standardised_change": 0} == {
        "feature": "logins",
        "previous": 50.0,
        "current": 10.0,
        "change": -40.0,
        "standardised_change": 0,
    }
    assert len(feature_changes(current, previous, ["A"], top=1)["A"]) == 1


def test_movers_carry_their_feature_changes():
    current_features = pd.DataFrame({"account_id": ["A", "B", "C"], "usage": [1.0, 5.0, 9.0]})
    previous_features = pd.DataFrame({"account_id": ["A", "B", "C"], "usage": [9.0, 5.0, 9.0]})
    movers = find_movers(CURRENT, PREVIOUS, MoverSettings(), current_features, previous_features)
    assert movers["churn"][0]["features"][0]["feature"] == "usage"
    assert movers["churn"][0]["features"][0]["change"] == -8.0
    assert movers["churn"][1]["features"] == []  # B's features did not change
