"""Point-in-time features, ARR and labels on tiny hand-made frames whose values are checked by hand.

As-of date T = 2024-06-30 unless said otherwise. Windows are calendar days ending
on T: 28 days start 2024-06-03, 30 days 2024-06-01, 90 days 2024-04-02, 180 days
2024-01-03, 365 days 2023-07-02.
"""

from __future__ import annotations

import logging
import math
import statistics

import pandas as pd
import pytest
import sqlglot

from features import (
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    FEATURES,
    FeatureError,
    arr_at,
    build_account_features,
    build_labels,
    build_training_panel,
    data_period,
    default_snapshot_dates,
    feature_columns,
    feature_specs,
    label_window_observed,
)
from features.build import FeatureSession, compile_feature_sql, source_row_counts
from features.definitions import FAMILIES
from features.labels import LabelSettings, label_sql

T = "2024-06-30"
AFTER_T = "2024-07-01"


def dates(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[ns]")


def subscriptions(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, start_date, end_date, arr[, seats, plan])."""
    padded = [(*row, *([None] * (6 - len(row)))) for row in rows]
    frame = pd.DataFrame(
        padded, columns=["account_id", "start_date", "end_date", "arr", "seats", "plan"]
    )
    return frame.assign(
        account_id=frame["account_id"].astype("str"),
        start_date=pd.to_datetime(frame["start_date"]).astype("datetime64[ns]"),
        end_date=pd.to_datetime(frame["end_date"]).astype("datetime64[ns]"),
        arr=frame["arr"].astype("float64"),
        seats=frame["seats"].astype("float64"),
        plan=frame["plan"].astype("str"),
    )


def orders(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, date, amount[, product_line, margin])."""
    padded = [(*row, *([None] * (5 - len(row)))) for row in rows]
    frame = pd.DataFrame(padded, columns=["account_id", "date", "amount", "product_line", "margin"])
    return frame.assign(
        account_id=frame["account_id"].astype("str"),
        date=pd.to_datetime(frame["date"]).astype("datetime64[ns]"),
        amount=frame["amount"].astype("float64"),
        product_line=frame["product_line"].astype("str"),
        margin=frame["margin"].astype("float64"),
    )


def row(frame: pd.DataFrame, account_id: str) -> pd.Series:
    found = frame[frame["account_id"] == account_id]
    assert len(found) == 1, f"expected one row for {account_id}, got {len(found)}"
    return found.iloc[0]


def close(value: object, expected: float) -> bool:
    return math.isclose(float(value), expected, rel_tol=1e-9, abs_tol=1e-9)


# A subscription that only makes the data reach a date (starts after T, never active at T).
def clock(until: str) -> tuple:
    return ("CLOCK", until, None, 1.0)


# ---------------------------------------------------------------- metadata


def test_every_feature_has_metadata_and_describes_itself() -> None:
    assert FEATURE_SET_NAME == "account_features"
    assert FEATURE_SET_VERSION
    for name, spec in FEATURES.items():
        assert spec.name == name
        assert spec.family in FAMILIES
        assert spec.kind in ("numeric", "categorical")
        assert spec.description and spec.template and spec.sql
        assert spec.describe(None).endswith("unknown")
    assert FEATURES["seat_utilisation_change_12w"].describe(-0.35) == (
        "Seat utilisation fell 35% in 12 weeks"
    )
    assert FEATURES["arr_change_90d"].describe(0.2) == "ARR rose 20% in 90 days"
    assert FEATURES["plan"].describe("pro") == "Plan is pro"
    assert FEATURES["seat_utilisation_28d"].describe(0.5) == "Seat utilisation is 50%"
    assert [spec.name for spec in feature_specs(["account_id", "arr", "churn", "plan"])] == [
        "arr",
        "plan",
    ]


def test_owner_is_not_a_feature() -> None:
    assert "owner_id" not in FEATURES
    assert not any("owner" in spec.sql for spec in FEATURES.values())


# ---------------------------------------------------------------- ARR


def test_arr_from_subscriptions_counts_contracts_active_at_t() -> None:
    tables = {
        "subscriptions": subscriptions(
            [
                ("A", "2024-01-01", "2024-03-01", 100.0),  # ends: end_date is exclusive
                ("A", "2024-03-01", None, 150.0),
                ("B", "2024-02-15", "2024-02-16", 70.0),  # active one day only
                ("C", "2024-03-02", None, 40.0),  # starts the day after
                clock("2024-03-31"),
            ]
        )
    }
    arr = arr_at(tables, ["2024-02-15", "2024-02-29", "2024-03-01"])
    got = {(r.account_id, str(r.as_of.date())): r.arr for r in arr.itertuples()}
    assert got == {
        ("A", "2024-02-15"): 100.0,
        ("B", "2024-02-15"): 70.0,
        ("A", "2024-02-29"): 100.0,
        ("A", "2024-03-01"): 150.0,
    }
    assert list(arr.columns) == ["account_id", "as_of", "arr"]
    assert str(arr["as_of"].dtype) == "datetime64[ns]"


def test_arr_from_orders_is_revenue_of_the_365_days_up_to_t() -> None:
    tables = {
        "orders": orders(
            [
                ("A", "2023-07-01", 1000.0),  # 366 days before T: outside
                ("A", "2023-07-02", 10.0),  # the first of the 365 days
                ("A", "2024-06-30", 5.0),  # on T: known at T
                ("A", "2024-07-01", 999.0),  # after T
                ("B", "2024-01-01", 50.0),
                ("B", "2024-02-01", -50.0),  # a full credit: not active
            ]
        )
    }
    arr = arr_at(tables, [T])
    assert arr[["account_id", "arr"]].to_dict("records") == [{"account_id": "A", "arr": 15.0}]


# ---------------------------------------------------------------- families


def test_revenue_and_subscription_features() -> None:
    tables = {
        "subscriptions": subscriptions(
            [
                ("A", "2023-03-10", "2024-03-10", 1200.0, 10.0, "pro"),
                ("A", "2024-03-10", None, 900.0, 10.0, "pro"),  # renewed lower: a downgrade
                ("A", "2024-05-01", None, 900.0, 5.0, "addon"),  # added: an upgrade
                ("B", T, None, 100.0),  # starts on T
                ("C", "2024-01-01", T, 80.0),  # ends on T: not active at T
                ("D", "2024-07-01", None, 60.0),  # starts after T
                ("E", "2020-02-29", None, 50.0, 1.0, "legacy"),  # leap-day anniversary
            ]
        )
    }
    features = build_account_features(tables, T)
    assert features["account_id"].tolist() == ["A", "B", "E"]
    a = row(features, "A")
    assert a["arr"] == 1800.0
    assert a["arr_change_30d"] == 0.0  # 2024-05-31: 1800
    assert close(a["arr_change_90d"], 1.0)  # 2024-04-01: 900
    assert close(a["arr_change_180d"], 0.5)  # 2024-01-02: 1200
    assert close(a["arr_change_365d"], 0.5)  # 2023-07-01: 1200
    assert a["tenure_days"] == 478.0  # since 2023-03-10
    assert a["subscriptions_active"] == 2.0
    assert a["days_to_renewal"] == 253.0  # 2025-03-10
    assert a["seats"] == 15.0
    assert a["price_per_seat"] == 120.0
    assert a["plan"] == "addon"  # largest active contracts tie at 900: the first plan by name
    assert a["downgrades_365d"] == 1.0
    assert a["upgrades_365d"] == 1.0
    b = row(features, "B")
    assert b["arr"] == 100.0 and b["tenure_days"] == 0.0
    assert math.isnan(b["arr_change_30d"])  # no ARR before: no relative change
    assert b["days_to_renewal"] == 365.0
    assert math.isnan(b["seats"]) and math.isnan(b["price_per_seat"]) and pd.isna(b["plan"])
    assert b["downgrades_365d"] == 0.0 and b["upgrades_365d"] == 0.0
    assert row(features, "E")["days_to_renewal"] == 243.0  # 2025-02-28


def test_orders_features() -> None:
    tables = {
        "orders": orders(
            [
                ("A", "2023-07-01", 1000.0, "x", 100.0),  # outside the 365 days
                ("A", "2023-10-01", 500.0, "x", 100.0),
                ("A", "2024-01-10", 200.0, "y", 50.0),
                ("A", "2024-03-10", 300.0, "x", None),
                ("A", "2024-05-09", 400.0, "z", 80.0),
                ("A", "2024-06-01", -50.0, "z", -10.0),  # a credit
                ("A", "2024-07-02", 999.0, "w", 1.0),  # after T
            ]
        )
    }
    a = row(build_account_features(tables, T), "A")
    assert a["arr"] == 1350.0
    assert a["order_frequency_365d"] == 4.0
    assert a["order_value_mean_365d"] == 350.0
    # last 180 days (from 2024-01-03): 850; the 180 days before (from 2023-07-07): 500
    assert close(a["order_revenue_trend_180d"], 850 / 500 - 1)
    gaps = [92, 101, 60, 60]  # between the order days since 2023-07-01
    assert close(a["order_gap_mean_days"], statistics.mean(gaps))
    assert close(a["order_gap_cv"], statistics.stdev(gaps) / statistics.mean(gaps))
    assert a["order_recency_days"] == 52.0  # since 2024-05-09
    assert close(a["order_overdue_ratio"], 52 / statistics.mean(gaps))
    assert a["product_lines_365d"] == 3.0
    assert close(a["margin_rate_365d"], 220 / 1050)


def test_usage_features() -> None:
    usage = pd.DataFrame(
        {
            "account_id": pd.Series(["A"] * 7 + ["B"] * 2, dtype="str"),
            "date": dates(
                "2024-06-24",
                "2024-06-10",
                "2024-05-20",
                "2024-05-13",
                "2024-03-01",
                "2024-02-01",
                "2024-07-05",  # after T
                "2024-06-29",
                "2024-06-01",
            ),
            "active_users": [8.0, 6.0, 5.0, 5.0, 10.0, 10.0, 0.0, 0.0, 2.0],
            "events": [80.0, 60.0, 40.0, 40.0, 100.0, 100.0, 0.0, 0.0, 0.0],
            "seats_licensed": [10.0] * 7 + [None, None],
        }
    )
    tables = {
        "subscriptions": subscriptions(
            [("A", "2023-01-01", None, 10.0), ("B", "2023-01-01", None, 5.0)]
        ),
        "usage": usage,
    }
    features = build_account_features(tables, T)
    a = row(features, "A")
    assert close(a["seat_utilisation_28d"], 14 / 20)
    assert close(a["seat_utilisation_change_4w"], (14 / 20) / (10 / 20) - 1)
    assert close(a["seat_utilisation_change_12w"], (24 / 40) / (20 / 20) - 1)
    assert a["active_users_mean_28d"] == 7.0
    assert a["events_per_active_user_28d"] == 10.0
    assert close(a["events_change_12w"], 220 / 200 - 1)
    events = [80.0, 60.0, 40.0, 40.0]
    assert close(a["events_volatility_12w"], statistics.stdev(events) / statistics.mean(events))
    assert a["days_since_last_activity"] == 6.0
    b = row(features, "B")
    assert math.isnan(b["seat_utilisation_28d"])  # no licensed seats known
    assert b["days_since_last_activity"] == 29.0  # the 2024-06-29 row had no activity


def test_support_features() -> None:
    tickets = pd.DataFrame(
        {
            "account_id": pd.Series(["A"] * 6, dtype="str"),
            "created_at": dates(
                "2024-06-20", "2024-05-15", "2024-03-01", "2024-06-25", "2023-12-01", "2024-07-01"
            ),
            "closed_at": dates(
                "2024-06-21 12:00",
                "2024-05-15 06:00",
                None,
                "2024-07-02",  # closed after T: open at T, its rating not known yet
                "2023-12-02",
                None,
            ),
            "priority": pd.Series(["high", "low", "urgent", "medium", "high", "high"], dtype="str"),
            "csat": [4.0, 2.0, None, 1.0, 5.0, 1.0],
        }
    )
    tables = {
        "subscriptions": subscriptions([("A", "2023-01-01", None, 10.0)]),
        "support_tickets": tickets,
    }
    a = row(build_account_features(tables, T), "A")
    assert a["support_tickets_30d"] == 2.0
    assert a["support_tickets_90d"] == 3.0
    assert close(a["support_high_priority_share_90d"], 1 / 3)
    assert a["support_resolution_hours_180d"] == 21.0  # (36 + 6) / 2
    assert a["support_open_tickets"] == 2.0
    assert a["support_csat_mean_180d"] == 3.0  # (4 + 2) / 2


def test_opportunity_features() -> None:
    opportunities = pd.DataFrame(
        {
            "account_id": pd.Series(["A"] * 5, dtype="str"),
            "created_at": dates(
                "2024-05-01", "2024-04-01", "2024-01-01", "2023-06-01", "2024-02-01"
            ),
            "closed_at": dates(None, "2024-07-15", "2024-03-01", "2023-12-01", "2024-06-01"),
            "stage": pd.Series(["open", "won", "won", "lost", "lost"], dtype="str"),
            "amount": [1000.0, 500.0, 300.0, 50.0, 70.0],
            "kind": pd.Series(["expansion", "new", "renewal", "new", "new"], dtype="str"),
        }
    )
    tables = {
        "subscriptions": subscriptions([("A", "2023-01-01", None, 10.0), clock(AFTER_T)]),
        "opportunities": opportunities,
    }
    a = row(build_account_features(tables, T), "A")
    assert a["opportunities_open"] == 2.0  # the won one closed after T was still open at T
    assert a["pipeline_open_amount"] == 1500.0
    assert a["pipeline_expansion_amount"] == 1000.0
    assert a["opportunities_won_180d"] == 1.0
    assert a["opportunities_lost_180d"] == 1.0  # the 2023-12-01 loss is older than 180 days


def test_nps_and_invoice_features() -> None:
    nps = pd.DataFrame(
        {
            "account_id": pd.Series(["A", "A", "A", "A", "B"], dtype="str"),
            "date": dates("2024-01-10", "2024-05-05", "2024-05-05", "2024-07-10", "2023-06-01"),
            "score": [6.0, 9.0, 7.0, 0.0, 10.0],
        }
    )
    invoices = pd.DataFrame(
        {
            "account_id": pd.Series(["A"] * 6, dtype="str"),
            "due_date": dates(
                "2024-05-01", "2024-05-15", "2024-06-10", "2024-06-20", T, "2024-07-15"
            ),
            "paid_at": dates("2024-04-28", "2024-05-25", None, "2024-07-10", None, None),
            "amount": [100.0, 100.0, 300.0, 50.0, 20.0, 40.0],
        }
    )
    tables = {
        "subscriptions": subscriptions(
            [("A", "2023-01-01", None, 10.0), ("B", "2023-01-01", None, 5.0)]
        ),
        "nps": nps,
        "invoices": invoices,
    }
    features = build_account_features(tables, T)
    a = row(features, "A")
    assert a["nps_last"] == 8.0  # two answers on 2024-05-05: their mean
    assert a["nps_change"] == 2.0  # from 6
    b = row(features, "B")
    assert b["nps_last"] == 10.0 and math.isnan(b["nps_change"])
    # paid 10 days late; unpaid 20 days past due; paid after T (10 days overdue at T)
    assert a["invoices_late_365d"] == 3.0
    assert close(a["invoices_late_share_365d"], 3 / 5)
    assert a["invoice_days_late_mean_365d"] == 8.0  # (0 + 10 + 20 + 10 + 0) / 5
    assert a["overdue_amount"] == 350.0
    assert b["invoices_late_365d"] == 0.0 and b["overdue_amount"] == 0.0
    assert math.isnan(b["invoices_late_share_365d"])  # no invoices due: no share


def test_firmographics_and_parent_share(caplog: pytest.LogCaptureFixture) -> None:
    accounts = pd.DataFrame(
        {
            "account_id": pd.Series(["P", "C1", "C2", "X"], dtype="str"),
            "parent_account_id": pd.Series([None, "P", "P", None], dtype="str"),
            "segment": pd.Series(["enterprise", "smb", "smb", "mid-market"], dtype="str"),
            "employees": [1000.0, 50.0, 20.0, None],
            "created_at": dates("2024-06-01", "2020-01-01", "2020-01-01", "2024-08-01"),
            "owner_id": pd.Series(["o1", "o2", "o2", "o3"], dtype="str"),
        }
    )
    tables = {
        "subscriptions": subscriptions(
            [
                ("P", "2023-01-01", None, 100.0),
                ("C1", "2023-01-01", None, 300.0),
                ("C2", "2023-01-01", "2024-01-01", 600.0),  # churned: not in the group's ARR
                ("X", "2023-01-01", None, 50.0),
                ("Y", "2023-01-01", None, 10.0),  # no accounts row
                clock(AFTER_T),
            ]
        ),
        "accounts": accounts,
    }
    with caplog.at_level(logging.WARNING, logger="features.build"):
        features = build_account_features(tables, T)
    assert features["account_id"].tolist() == ["C1", "P", "X", "Y"]
    assert row(features, "P")["parent_arr_share"] == 0.25
    assert row(features, "C1")["parent_arr_share"] == 0.75
    assert row(features, "X")["parent_arr_share"] == 1.0
    assert row(features, "C1")["segment"] == "smb"
    assert row(features, "P")["employees"] == 1000.0
    assert row(features, "P")["account_age_days"] == 29.0
    assert math.isnan(row(features, "X")["account_age_days"])  # created after T
    y = row(features, "Y")
    assert y["arr"] == 10.0 and pd.isna(y["segment"]) and math.isnan(y["parent_arr_share"])
    assert "no row in accounts" in caplog.text and "Y" in caplog.text
    assert "region" not in features.columns and "industry" not in features.columns  # not given
    assert "owner_id" not in features.columns


# ---------------------------------------------------------------- shape, types, missing sources


def test_output_shape_types_and_only_given_families() -> None:
    tables = {
        "subscriptions": subscriptions(
            [("A", "2023-01-01", None, 10.0, None, "pro"), clock(AFTER_T)]
        ).drop(columns=["seats"])
    }
    features = build_account_features(tables, T)
    assert list(features.columns[:3]) == ["account_id", "as_of", "arr"]
    assert features["as_of"].tolist() == [pd.Timestamp(T)]
    assert str(features["as_of"].dtype) == "datetime64[ns]"
    assert isinstance(features["account_id"].dtype, pd.StringDtype)
    assert isinstance(features["plan"].dtype, pd.StringDtype)
    numeric = [c for c in feature_columns(features) if FEATURES[c].kind == "numeric"]
    assert all(features[c].dtype == "float64" for c in numeric)
    families = {FEATURES[c].family for c in feature_columns(features)}
    assert families == {"revenue", "subscriptions"}
    assert "seats" not in features.columns  # no seats column: left out, not zero
    assert "price_per_seat" not in features.columns


def test_no_active_account_gives_an_empty_frame_with_the_columns() -> None:
    tables = {
        "subscriptions": subscriptions([("A", "2024-01-01", "2024-02-01", 10.0), clock(AFTER_T)])
    }
    features = build_account_features(tables, "2024-03-01")
    assert features.empty
    assert list(features.columns[:3]) == ["account_id", "as_of", "arr"]


def test_nulls_in_optional_columns_do_not_crash() -> None:
    tables = {
        "subscriptions": subscriptions(
            [("A", "2023-01-01", None, 10.0, None, None), clock(AFTER_T)]
        ),
        "usage": pd.DataFrame(
            {
                "account_id": pd.Series(["A", "A"], dtype="str"),
                "date": dates("2024-06-01", "2024-06-02"),
                "active_users": [None, None],
                "events": [None, 3.0],
                "seats_licensed": [None, None],
            }
        ),
        "support_tickets": pd.DataFrame(
            {
                "account_id": pd.Series(["A"], dtype="str"),
                "created_at": dates("2024-06-01"),
                "closed_at": dates(None),
                "priority": pd.Series([None], dtype="str"),
                "csat": [None],
            }
        ),
    }
    a = row(build_account_features(tables, T), "A")
    assert a["support_tickets_30d"] == 1.0
    assert a["days_since_last_activity"] == 28.0
    assert math.isnan(a["seat_utilisation_28d"])  # the columns are given, but empty
    # no ticket known at T has a close date: open tickets are unknown, not "all of them"
    assert math.isnan(a["support_open_tickets"])
    assert math.isnan(a["support_high_priority_share_90d"])


def test_features_needing_a_column_nobody_filled_by_t_are_missing_not_zero() -> None:
    invoices = pd.DataFrame(
        {
            "account_id": pd.Series(["A", "A"], dtype="str"),
            "due_date": dates("2024-06-01", "2024-07-20"),
            "paid_at": dates(None, "2024-07-21"),  # the only payment date comes after T
            "amount": [10.0, 10.0],
        }
    )
    tables = {
        "orders": orders([("A", "2024-06-01", 5.0), ("A", AFTER_T, 5.0, "x")]),
        "invoices": invoices,
    }
    a = row(build_account_features(tables, T), "A")
    assert math.isnan(a["invoices_late_365d"]) and math.isnan(a["overdue_amount"])
    assert math.isnan(a["product_lines_365d"])  # product lines only known after T
    later = row(build_account_features(tables, "2024-07-21"), "A")
    # unpaid since 2024-06-01, and the 2024-07-20 invoice paid a day late
    assert later["invoices_late_365d"] == 2.0 and later["overdue_amount"] == 10.0


# ---------------------------------------------------------------- bad input


def test_as_of_outside_the_data_is_a_clear_error() -> None:
    tables = {"orders": orders([("A", "2024-01-01", 10.0), ("A", "2024-03-01", 10.0)])}
    with pytest.raises(FeatureError, match="before all data"):
        build_account_features(tables, "2023-12-31")
    with pytest.raises(FeatureError, match="after the last date"):
        build_account_features(tables, "2024-03-02")
    with pytest.raises(FeatureError, match="not a date"):
        build_account_features(tables, "yesterday-ish")
    assert len(build_account_features(tables, "2024-03-01")) == 1


def test_unparseable_dates_name_the_table_column_and_row() -> None:
    raw = {
        "orders": pd.DataFrame(
            {"account_id": ["A", "B"], "date": ["2024-01-01", "31/02/2024"], "amount": [1.0, 2.0]}
        )
    }
    with pytest.raises(FeatureError) as error:
        build_account_features(raw, "2024-01-01")
    assert "orders.date" in str(error.value) and "31/02/2024" in str(error.value)


def test_untyped_frames_are_typed_by_the_contract_rules() -> None:
    raw = {
        "orders": pd.DataFrame(
            {"account_id": [1, 2], "date": ["2024-01-01", "20240105"], "amount": ["3", "4.5"]}
        )
    }
    features = build_account_features(raw, "2024-01-05")
    assert features[["account_id", "arr"]].to_dict("records") == [
        {"account_id": "1", "arr": 3.0},
        {"account_id": "2", "arr": 4.5},
    ]


def test_no_revenue_table_is_a_clear_error() -> None:
    usage = pd.DataFrame({"account_id": pd.Series(["A"], dtype="str"), "date": dates(T)})
    with pytest.raises(FeatureError, match="revenue table"):
        build_account_features({"usage": usage}, T)


def test_source_row_counts_count_rows_known_at_t() -> None:
    tables = {
        "orders": orders([("A", "2024-01-01", 10.0), ("A", T, 1.0), ("A", "2024-07-01", 1.0)])
    }
    assert source_row_counts(tables, T) == {"orders": 2}


# ---------------------------------------------------------------- labels

LABEL_T = (
    "2024-03-31"  # horizon 90: window (2024-03-31, 2024-06-29]; before: (2024-01-01, 2024-03-31]
)


def labels_by_account(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    return {r.account_id: (r.churn, r.upsell) for r in frame.itertuples()}


def test_subscription_labels() -> None:
    tables = {
        "subscriptions": subscriptions(
            [
                ("A", "2023-01-01", "2024-05-01", 100.0),  # stops: churn
                ("B", "2023-01-01", None, 100.0),
                ("B", "2024-05-01", None, 10.0),  # +10% exactly: upsell
                ("C", "2023-01-01", None, 100.0),
                ("C", "2024-05-01", None, 9.0),  # +9%: no upsell
                ("D", "2023-01-01", "2024-06-29", 100.0),  # ends on t + h: churn
                ("E", "2023-01-01", "2024-06-30", 100.0),  # ends the day after: no churn
                ("F", "2024-04-15", None, 100.0),  # not active at t: no label
                clock("2024-06-29"),
            ]
        )
    }
    labels = build_labels(tables, LABEL_T, horizon_days=90)
    assert list(labels.columns) == ["account_id", "as_of", "churn", "upsell"]
    assert labels_by_account(labels) == {
        "A": (1, 0),
        "B": (0, 1),
        "C": (0, 0),
        "D": (1, 0),
        "E": (0, 0),
    }
    relaxed = build_labels(tables, LABEL_T, horizon_days=90, growth_threshold=0.05)
    assert labels_by_account(relaxed)["C"] == (0, 1)


def test_order_labels() -> None:
    tables = {
        "orders": orders(
            [
                ("A", "2024-03-01", 100.0),
                ("A", "2024-05-01", -20.0),  # only a credit after t: churn
                ("B", "2024-02-01", 100.0),
                ("B", "2024-05-01", 110.0),  # +10%: upsell
                ("C", "2023-06-01", 100.0),  # active, nothing before or after: churn, no upsell
                ("D", "2023-06-01", 100.0),
                ("D", "2024-06-29", 50.0),  # on t + h: counts; from nothing to positive: upsell
                ("E", "2023-06-01", 100.0),
                ("E", "2024-06-30", 50.0),  # the day after the window: churn
                ("F", "2024-01-01", 100.0),  # 2024-01-01 is outside (t - h, t]
                ("F", "2024-04-01", 100.0),  # so the level before is 0: upsell
            ]
        )
    }
    assert labels_by_account(build_labels(tables, LABEL_T, 90)) == {
        "A": (1, 0),
        "B": (0, 1),
        "C": (1, 0),
        "D": (0, 1),
        "E": (1, 0),
        "F": (0, 1),
    }
    strict = build_labels(tables, LABEL_T, 90, growth_threshold=0.2)
    assert labels_by_account(strict)["B"] == (0, 0)


def test_labels_need_the_whole_window_observed() -> None:
    tables = {"orders": orders([("A", "2024-01-01", 10.0), ("A", "2024-06-28", 10.0)])}
    assert label_window_observed(tables, LABEL_T, 89)
    assert not label_window_observed(tables, LABEL_T, 90)
    with pytest.raises(FeatureError, match="not known yet"):
        build_labels(tables, LABEL_T, 90)
    with pytest.raises(FeatureError, match="horizon_days"):
        LabelSettings(horizon_days=0)


# ---------------------------------------------------------------- the panel


def test_training_panel_skips_snapshots_whose_window_is_not_observed() -> None:
    tables = {
        "subscriptions": subscriptions(
            [
                ("A", "2023-01-01", "2024-03-15", 100.0),
                ("B", "2023-06-01", None, 50.0),
                clock("2024-05-31"),
            ]
        )
    }
    asked = ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]
    panel = build_training_panel(tables, asked, horizon_days=60)
    # 2024-04-01 + 60 days = 2024-05-31 is observed; nothing later was asked
    assert sorted(panel["as_of"].dt.strftime("%Y-%m-%d").unique()) == asked
    late = build_training_panel(tables, ["2024-04-02", "2024-05-01"], horizon_days=60)
    assert late.empty and "churn" in late.columns and "arr" in late.columns
    a = panel[panel["account_id"] == "A"]
    a.index = a["as_of"].dt.strftime("%Y-%m-%d")
    assert a["churn"].to_dict() == {"2024-01-01": 0, "2024-02-01": 1, "2024-03-01": 1}
    assert list(panel.columns[:3]) == ["account_id", "as_of", "arr"]
    assert list(panel.columns[-2:]) == ["churn", "upsell"]
    assert "churn" not in feature_columns(panel) and "as_of" not in feature_columns(panel)


def test_default_snapshot_dates_are_month_starts_whose_window_ends_by_as_of() -> None:
    tables = {"orders": orders([("A", "2023-01-15", 1.0), ("A", "2023-12-20", 1.0)])}
    days = default_snapshot_dates(tables, horizon_days=90)
    # from 2023-01-15 + 90 days (2023-04-15) to 2023-12-20 - 90 days (2023-09-21)
    assert [d.strftime("%Y-%m-%d") for d in days] == [
        "2023-05-01",
        "2023-06-01",
        "2023-07-01",
        "2023-08-01",
        "2023-09-01",
    ]
    assert len(default_snapshot_dates(tables, as_of="2023-08-31", horizon_days=90)) == 2
    assert default_snapshot_dates(tables, horizon_days=400) == []


# ---------------------------------------------------------------- other engines


def test_the_queries_transpile_to_spark_sql() -> None:
    every_column = {
        "subscriptions": {"account_id", "start_date", "end_date", "arr", "seats", "plan"},
        "orders": {"account_id", "date", "amount", "product_line", "margin"},
        "usage": {"account_id", "date", "active_users", "events", "seats_licensed"},
        "support_tickets": {"account_id", "created_at", "closed_at", "priority", "csat"},
        "opportunities": {"account_id", "created_at", "closed_at", "stage", "amount", "kind"},
        "nps": {"account_id", "date", "score"},
        "invoices": {"account_id", "due_date", "paid_at", "amount"},
        "accounts": {
            "account_id",
            "segment",
            "industry",
            "region",
            "employees",
            "created_at",
            "parent_account_id",
        },
    }
    sql = compile_feature_sql(every_column, T)
    spark = sqlglot.transpile(
        sql, read="duckdb", write="spark", unsupported_level=sqlglot.ErrorLevel.RAISE
    )
    assert "UNIX_TIMESTAMP" in spark[0] and "MAX_BY" in spark[0]
    for table in ("subscriptions", "orders"):
        labels = label_sql(table, LabelSettings())
        sqlglot.transpile(
            labels, read="duckdb", write="spark", unsupported_level=sqlglot.ErrorLevel.RAISE
        )
    with FeatureSession({"orders": orders([("A", T, 1.0)])}) as session:
        assert session.revenue_table == "orders"


def test_the_data_period_counts_recorded_dates_and_snapshots_wait_for_every_table() -> None:
    tables = {
        "subscriptions": subscriptions([("A", "2020-01-01", None, 10.0)]),
        "usage": pd.DataFrame(
            {"account_id": pd.Series(["A"], dtype="str"), "date": dates("2023-01-10")}
        ),
        "invoices": pd.DataFrame(
            {
                "account_id": pd.Series(["A", "A"], dtype="str"),
                "due_date": dates("2023-06-01", "2024-02-01"),  # scheduled: not a recorded date
                "paid_at": dates("2023-05-30", None),
            }
        ),
    }
    period = data_period(tables)
    assert period.start == pd.Timestamp("2020-01-01")
    assert period.end == pd.Timestamp("2023-05-30")
    assert period.covered_from == pd.Timestamp("2023-05-30")
    assert [d.strftime("%Y-%m-%d") for d in default_snapshot_dates(tables, horizon_days=0)] == []
    tables["usage"] = pd.DataFrame(
        {
            "account_id": pd.Series(["A", "A"], dtype="str"),
            "date": dates("2023-01-10", "2023-12-31"),
        }
    )
    # every table has data from 2023-05-30; + 90 days of history = 2023-08-28
    assert [d.strftime("%Y-%m-%d") for d in default_snapshot_dates(tables, horizon_days=30)] == [
        "2023-09-01",
        "2023-10-01",
        "2023-11-01",
        "2023-12-01",
    ]


def test_the_staged_run_equals_the_single_query() -> None:
    """DuckDB runs the blocks one by one; the one-statement form (for other engines) agrees."""
    from features.synthetic import GeneratorSettings, generate_portfolio

    for kind in ("saas", "orders"):
        tables = generate_portfolio(
            GeneratorSettings(n_accounts=120, months=14, seed=3, kind=kind)
        ).tables
        with FeatureSession(tables) as session:
            day = session.period.last_day - pd.Timedelta(days=45)
            staged = session.account_features(day)
            single = session.query(
                compile_feature_sql(session.columns, day, session.unknown_columns(day))
            )
            single = single.astype(staged.dtypes.to_dict())
        assert len(staged) > 20
        pd.testing.assert_frame_equal(staged, single, check_exact=False, rtol=1e-12)


def test_docs_list_every_feature() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text()
    missing = [
        name for name, spec in FEATURES.items() if f"| `{name}` | {spec.family} |" not in text
    ]
    assert not missing, f"docs/features.md does not list: {missing}"
