"""Point-in-time correctness as properties over small generated portfolios.

- Appending any rows dated after the as-of date, to any table, never changes
  the features at the as-of date.
- A planted future signal (what happens after the as-of date) cannot leak
  into the features, while it does decide the labels.
- Labels use only what happens up to as_of + horizon: rows after it, and rows
  of non-revenue tables, never change them.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import build_account_features, build_labels, data_period
from features.contract import CONTRACT, Tables

BASE = pd.Timestamp("2023-01-01")
IDS = ["A", "B", "C", "D", "E"]
HORIZON = 60

ids = st.sampled_from(IDS)
day = st.integers(0, 500)
maybe_day = st.one_of(st.none(), st.integers(-50, 900))
amount = st.one_of(st.integers(-200, 2000).map(float), st.just(0.0))
maybe_number = st.one_of(st.none(), st.integers(0, 50).map(float))
maybe_text = st.one_of(st.none(), st.sampled_from(["high", "low", "urgent", "pro", "basic"]))


def stamp(offset: int | None) -> pd.Timestamp | None:
    return None if offset is None else BASE + pd.Timedelta(days=offset)


# Per table: a strategy for one row given a strategy for its event day. Columns in contract order.
def row_strategy(table: str, event_day: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:
    if table == "subscriptions":
        return st.tuples(
            ids, event_day, maybe_day, st.integers(0, 1000).map(float), maybe_number, maybe_text
        )
    if table == "orders":
        return st.tuples(ids, event_day, amount, maybe_text, st.one_of(st.none(), amount))
    if table == "usage":
        return st.tuples(ids, event_day, maybe_number, maybe_number, maybe_number)
    if table == "support_tickets":
        return st.tuples(ids, event_day, maybe_day, maybe_text, maybe_number)
    if table == "opportunities":
        stage = st.one_of(st.none(), st.sampled_from(["open", "won", "lost"]))
        kind = st.one_of(st.none(), st.sampled_from(["new", "expansion", "renewal"]))
        return st.tuples(ids, event_day, maybe_day, stage, maybe_number, kind)
    if table == "nps":
        return st.tuples(ids, event_day, st.one_of(st.none(), st.integers(0, 10).map(float)))
    if table == "invoices":
        return st.tuples(ids, event_day, maybe_day, maybe_number)
    raise AssertionError(table)


def frame(table: str, rows: list[tuple]) -> pd.DataFrame:
    spec = CONTRACT[table]
    names = [column.name for column in spec.columns]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    data = {}
    for column, values in zip(spec.columns, columns, strict=True):
        if column.type == "date":
            data[column.name] = pd.Series([stamp(v) for v in values], dtype="datetime64[ns]")
        elif column.type in ("id", "string"):
            data[column.name] = pd.Series(list(values), dtype="str")
        else:
            data[column.name] = pd.Series(list(values), dtype="float64")
    return pd.DataFrame(data, columns=names)


OTHER_TABLES = ["usage", "support_tickets", "opportunities", "nps", "invoices"]


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[dict[str, list[tuple]], int]:
    """Rows per table (revenue table plus some others) and an as-of day inside the data."""
    revenue = draw(st.sampled_from(["subscriptions", "orders"]))
    chosen = [revenue, *draw(st.lists(st.sampled_from(OTHER_TABLES), unique=True, max_size=5))]
    if revenue == "subscriptions" and draw(st.booleans()):
        chosen.append("orders")  # both: subscriptions give ARR, orders their own family
    rows = {
        table: draw(
            st.lists(row_strategy(table, day), min_size=1 if table == revenue else 0, max_size=12)
        )
        for table in chosen
    }
    period = data_period(tables_from(rows))  # the recorded dates (invoices: payments)
    as_of = draw(st.integers((period.first_day - BASE).days, (period.last_day - BASE).days))
    return rows, as_of


def accounts_frame(parents: list[str | None], extra: list[tuple[str, int]]) -> pd.DataFrame:
    accounts = [
        (account, parent, f"seg{i % 2}", 10.0 * i, 0)
        for i, (account, parent) in enumerate(zip(IDS, parents, strict=True))
    ]
    accounts += [(account, "A", "new", 1.0, created) for account, created in extra]
    frame = pd.DataFrame(
        accounts, columns=["account_id", "parent_account_id", "segment", "employees", "created_at"]
    )
    return frame.assign(
        account_id=frame["account_id"].astype("str"),
        parent_account_id=frame["parent_account_id"].astype("str"),
        segment=frame["segment"].astype("str"),
        created_at=pd.Series([stamp(v) for v in frame["created_at"]], dtype="datetime64[ns]"),
    )


def tables_from(rows: dict[str, list[tuple]], accounts: pd.DataFrame | None = None) -> Tables:
    tables = {table: frame(table, table_rows) for table, table_rows in rows.items()}
    if accounts is not None:
        tables["accounts"] = accounts
    return tables


def assert_same_features(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        left.reset_index(drop=True),
        right.reset_index(drop=True),
        check_exact=False,
        rtol=1e-12,
        atol=0,
    )


@st.composite
def future_rows(draw: st.DrawFn, tables: list[str], as_of: int) -> dict[str, list[tuple]]:
    """Arbitrary rows dated after the as-of day (any other dates, even inconsistent ones)."""
    after = st.integers(as_of + 1, as_of + 400)
    return {table: draw(st.lists(row_strategy(table, after), max_size=6)) for table in tables}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rows_dated_after_as_of_never_change_the_features(data: st.DataObject) -> None:
    rows, as_of = data.draw(portfolios())
    parents = data.draw(st.lists(st.one_of(st.none(), ids), min_size=len(IDS), max_size=len(IDS)))
    new_accounts = data.draw(
        st.lists(
            st.tuples(st.sampled_from(["N1", "N2"]), st.integers(as_of + 1, as_of + 400)),
            unique_by=lambda r: r[0],
        )
    )
    future = data.draw(future_rows(list(rows), as_of))
    day_ = stamp(as_of)

    before = build_account_features(tables_from(rows, accounts_frame(parents, [])), day_)
    combined = {table: rows[table] + future[table] for table in rows}
    after = build_account_features(
        tables_from(combined, accounts_frame(parents, new_accounts)), day_
    )
    assert_same_features(before, after)


def test_a_planted_future_signal_cannot_leak_into_features() -> None:
    """Two worlds share their past; after T one account collapses, in the other it thrives."""
    as_of = 400
    past: dict[str, list[tuple]] = {
        "subscriptions": [("A", 0, None, 100.0, 10.0, "pro"), ("B", 0, None, 100.0, 10.0, "pro")],
        "usage": [
            (account, d, 5.0, 50.0, 10.0) for account in ("A", "B") for d in range(300, 401, 7)
        ],
        "support_tickets": [("A", 350, 351, "low", 5.0)],
        "nps": [("A", 300, 8.0), ("B", 300, 8.0)],
        "invoices": [("A", 380, 380, 100.0)],
    }
    collapse = {  # A stops: contract ends, usage dies, tickets and unpaid invoices pile up, NPS 0
        "subscriptions": [("A", as_of + 1, None, 0.0, 1.0, "basic")],
        "usage": [("A", d, 0.0, 0.0, 10.0) for d in range(as_of + 1, as_of + HORIZON + 2)],
        "support_tickets": [("A", d, None, "urgent", 1.0) for d in range(as_of + 1, as_of + 30)],
        "nps": [("A", as_of + 5, 0.0)],
        "invoices": [("A", as_of + 10, None, 10_000.0)],
    }
    thrive = {  # A expands
        "subscriptions": [("A", as_of + 20, None, 500.0, 50.0, "enterprise")],
        "usage": [("A", d, 50.0, 900.0, 60.0) for d in range(as_of + 1, as_of + HORIZON + 2)],
        "support_tickets": [],
        "nps": [("A", as_of + 5, 10.0)],
        "invoices": [("A", as_of + 10, as_of + 10, 100.0)],
    }
    worlds = []
    for future in (collapse, thrive):
        rows = {table: past[table] + future[table] for table in past}
        # A's contract ends in the collapsing world only (end_date is set on the past row).
        if future is collapse:
            rows["subscriptions"][0] = ("A", 0, as_of + 30, 100.0, 10.0, "pro")
        worlds.append(tables_from(rows))
    at = stamp(as_of)
    features = [build_account_features(world, at) for world in worlds]
    assert_same_features(features[0], features[1])
    labels = [
        build_labels(world, at, horizon_days=HORIZON).set_index("account_id") for world in worlds
    ]
    assert labels[0].loc["A", "churn"] == 1 and labels[1].loc["A", "churn"] == 0
    assert labels[0].loc["A", "upsell"] == 0 and labels[1].loc["A", "upsell"] == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_labels_use_only_the_revenue_rows_up_to_as_of_plus_horizon(data: st.DataObject) -> None:
    rows, as_of = data.draw(portfolios())
    revenue = "subscriptions" if "subscriptions" in rows else "orders"
    # make the data reach the end of the label window
    rows[revenue] = [*rows[revenue], ("CLOCK", as_of + HORIZON, *rows[revenue][0][2:])]
    day_ = stamp(as_of)
    labels = build_labels(tables_from(rows), day_, horizon_days=HORIZON)

    later = st.integers(as_of + HORIZON + 1, as_of + HORIZON + 400)
    extra = data.draw(st.lists(row_strategy(revenue, later), max_size=6))
    others = {
        table: data.draw(st.lists(row_strategy(table, day), max_size=6)) for table in OTHER_TABLES
    }
    changed = {table: rows.get(table, []) + others.get(table, []) for table in {*rows, *others}}
    changed[revenue] = rows[revenue] + extra
    assert_same_features(labels, build_labels(tables_from(changed), day_, horizon_days=HORIZON))


@pytest.mark.parametrize("revenue", ["subscriptions", "orders"])
def test_labels_do_not_read_anything_after_the_window(revenue: str) -> None:
    """A row one day after the window flips nothing; the same row on its last day can."""
    as_of = 100
    if revenue == "subscriptions":
        base = [("A", 0, as_of + HORIZON, 100.0, None, None)]  # ends on the window's last day
        row_ = ("A", as_of + HORIZON + 1, None, 100.0, None, None)
        inside = ("A", as_of + HORIZON, None, 100.0, None, None)
    else:
        base = [("A", as_of, 100.0, None, None)]
        row_ = ("A", as_of + HORIZON + 1, 100.0, None, None)
        inside = ("A", as_of + HORIZON, 100.0, None, None)
    clock_ = [("Z", as_of + HORIZON + 5, *base[0][2:])]
    at = stamp(as_of)

    def churn(rows: list[tuple]) -> int:
        labels = build_labels(tables_from({revenue: rows + clock_}), at, horizon_days=HORIZON)
        return int(labels.set_index("account_id").loc["A", "churn"])

    assert churn(base) == 1
    assert churn([*base, row_]) == 1
    assert churn([*base, inside]) == 0
