"""The example mappings in examples/ load the public datasets in ../shared/data and validate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.sources import load_sources

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def ravenstack():
    return load_sources(REPO / "examples" / "ravenstack" / "sources.yaml")


@pytest.fixture(scope="module")
def cdnow():
    return load_sources(REPO / "examples" / "cdnow" / "sources.yaml")


def test_ravenstack_validates(ravenstack) -> None:
    assert ravenstack.report.ok, ravenstack.report.errors
    assert ravenstack.name == "ravenstack"
    assert set(ravenstack.tables) == {"accounts", "subscriptions", "usage", "support_tickets"}
    loads = {load.table: load for load in ravenstack.report.tables}
    assert all(load.rows_excluded == 0 for load in loads.values())


def test_ravenstack_row_counts(ravenstack) -> None:
    tables = ravenstack.tables
    assert len(tables["accounts"]) == 500
    assert tables["accounts"]["account_id"].is_unique
    assert len(tables["subscriptions"]) == 5000
    assert len(tables["support_tickets"]) == 2000
    assert int(tables["subscriptions"]["end_date"].isna().sum()) == 4514


def test_ravenstack_usage_aggregates_feature_usage_per_account_and_day(ravenstack) -> None:
    raw = pd.read_csv(DATA / "ravenstack" / "ravenstack_feature_usage.csv")
    subscriptions = pd.read_csv(DATA / "ravenstack" / "ravenstack_subscriptions.csv")
    joined = raw.merge(subscriptions[["subscription_id", "account_id"]], on="subscription_id")
    expected = joined.groupby(["account_id", "usage_date"])["usage_count"].sum()
    usage = ravenstack.tables["usage"]
    assert len(raw) == 25000  # the 21 repeated usage_ids are distinct rows and all count
    assert len(usage) == len(expected)
    assert usage["events"].sum() == raw["usage_count"].sum()
    assert not usage.duplicated(["account_id", "date"]).any()
    assert usage["active_users"].isna().all()


def test_ravenstack_mapped_columns(ravenstack) -> None:
    accounts = ravenstack.tables["accounts"]
    first = accounts.iloc[0]
    assert (first["account_id"], first["name"], first["region"]) == ("A-2e4581", "Company_0", "US")
    assert first["created_at"] == pd.Timestamp("2024-10-16")
    assert set(accounts["segment"]) == {"Basic", "Pro", "Enterprise"}
    tickets = ravenstack.tables["support_tickets"]
    assert tickets["csat"].between(1, 5).sum() == tickets["csat"].notna().sum()


def test_cdnow_validates_with_every_order(cdnow) -> None:
    assert cdnow.report.ok, cdnow.report.errors
    orders = cdnow.tables["orders"]
    assert len(orders) == 69659
    assert orders["account_id"].nunique() == 23570
    assert len(cdnow.tables["accounts"]) == 23570
    assert orders["amount"].sum() == pytest.approx(2500315.63, abs=0.01)
    assert orders["date"].min() == pd.Timestamp("1997-01-01")
    assert orders["date"].max() == pd.Timestamp("1998-06-30")
    assert orders["account_id"].iloc[0] == "00001"
