"""How fast point-in-time features are built, side by side with a pandas baseline and the limit.

Generates a synthetic SaaS portfolio (100,000 accounts x 36 months by
default: about 10 million weekly usage rows) and measures, in one run:

(a) `features.build_account_features(tables, as_of)`: every feature family,
    from the contract frames to the feature frame;
(b) `pandas_account_features`: a straightforward pandas groupby
    implementation of the same features (kept here as the baseline; its
    output is checked against (a) to 1e-9, so both compute the same thing);
(c) the limit: one DuckDB `GROUP BY account_id` pass over the same usage rows
    computing count(*) and sum(events).

Also measured: CPU time of the process for each (the machine may be shared;
CPU seconds are less sensitive to other jobs than wall seconds);
`portfolio features` end to end (load the Parquet sources, build, write);
the training panel over monthly snapshots; and, for the panel's design, the
usage family's window aggregates over those snapshots computed snapshot by
snapshot (what the panel does) versus in one query that joins the usage rows
to a table of as-of dates by range.
Targets: at least 5 million source rows per second for (a) on 2 cores, (a)
at least 3x faster than (b), and (a) within 3x of (c). Run with:

    uv run python -m benchmarks.features [--accounts N] [--months M] [--repeat R]
        [--row-order account|date]

`--row-order date` sorts each event table by its event date before measuring
(as a daily export would list them); by default an account's rows come
together, as the generator writes them.

Results are recorded by hand in docs/benchmarks.md ("Features").
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features import FEATURES, build_account_features, build_training_panel, data_period
from features.build import FeatureSession, fill_dates
from features.contract import CONTRACT, Tables
from features.definitions import ARR_EPSILON, USAGE
from features.snapshot import feature_snapshot, write_parquet_atomically
from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio

TARGET_ROWS_PER_SECOND = 5_000_000
TARGET_SPEEDUP_OVER_PANDAS = 3.0
TARGET_RATIO_TO_LIMIT = 3.0
FEATURE_TABLES = (
    "accounts",
    "subscriptions",
    "usage",
    "support_tickets",
    "opportunities",
    "nps",
    "invoices",
)
# How the event tables' rows are ordered: as generated (an account's rows together), or by date.
ROW_ORDERS = ("account", "date")

# ---------------------------------------------------------------- (b) the pandas baseline


def pandas_account_features(tables: Tables, as_of: pd.Timestamp) -> pd.DataFrame:
    """The SaaS feature families with pandas boolean masks and groupby (the baseline)."""
    t = pd.Timestamp(as_of)
    cutoff = t + pd.Timedelta(days=1)

    def ago(days: int) -> pd.Timestamp:
        return cutoff - pd.Timedelta(days=days)

    def days_between(later: Any, earlier: Any) -> Any:
        return (later - earlier) / pd.Timedelta(days=1)

    def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
        return (numerator / denominator).where(denominator > 0)

    def change(recent: pd.Series, earlier: pd.Series) -> pd.Series:
        return (recent / earlier - 1).where(earlier > 0)

    subs = tables["subscriptions"]
    subs = subs[subs["start_date"] < cutoff]

    def active_at(point: pd.Timestamp) -> pd.Series:
        return (subs["start_date"] < point) & (
            subs["end_date"].isna() | (subs["end_date"] >= point)
        )

    by_account = subs.groupby("account_id")
    revenue = pd.DataFrame(
        {"arr": subs["arr"].where(active_at(cutoff), 0.0).groupby(subs["account_id"]).sum()}
    )
    for days in (30, 90, 180, 365):
        revenue[f"arr_{days}"] = (
            subs["arr"].where(active_at(ago(days)), 0.0).groupby(subs["account_id"]).sum()
        )
    revenue["first"] = by_account["start_date"].min()
    revenue = revenue[revenue["arr"] > ARR_EPSILON].sort_index()
    out = pd.DataFrame(index=revenue.index)
    out["arr"] = revenue["arr"]
    for days in (30, 90, 180, 365):
        out[f"arr_change_{days}d"] = change(revenue["arr"], revenue[f"arr_{days}"])
    out["tenure_days"] = days_between(t, revenue["first"])

    # subscriptions
    active = subs[active_at(cutoff)]
    grouped = active.groupby("account_id")
    out["subscriptions_active"] = grouped.size().reindex(out.index).fillna(0.0)
    month, day = active["start_date"].dt.month, active["start_date"].dt.day
    day = day.where(~((month == 2) & (day == 29)), 28)
    this_year = pd.to_datetime(pd.DataFrame({"year": t.year, "month": month, "day": day}))
    next_year = pd.to_datetime(pd.DataFrame({"year": t.year + 1, "month": month, "day": day}))
    renewal = this_year.where(this_year > t, next_year)
    out["days_to_renewal"] = days_between(renewal.groupby(active["account_id"]).min(), t)
    seats = grouped["seats"].sum(min_count=1)
    out["seats"] = seats
    out["price_per_seat"] = ratio(grouped["arr"].sum(), seats)
    largest = grouped["arr"].transform("max")
    out["plan"] = active[active["arr"] == largest].groupby("account_id")["plan"].min()
    starts = subs[["account_id", "start_date", "arr"]].set_axis(
        ["account_id", "day", "delta"], axis=1
    )
    ended = subs[subs["end_date"] < cutoff]
    ends = pd.DataFrame(
        {"account_id": ended["account_id"], "day": ended["end_date"], "delta": -ended["arr"]}
    )
    daily = pd.concat([starts, ends]).groupby(["account_id", "day"], as_index=False)["delta"].sum()
    daily["arr_after"] = daily.groupby("account_id")["delta"].cumsum()
    recent = daily[daily["day"] >= ago(365)]
    downgrade = (recent["delta"] < -ARR_EPSILON) & (recent["arr_after"] > ARR_EPSILON)
    upgrade = (recent["delta"] > ARR_EPSILON) & (
        recent["arr_after"] - recent["delta"] > ARR_EPSILON
    )
    out["downgrades_365d"] = (
        downgrade.groupby(recent["account_id"]).sum().reindex(out.index).fillna(0.0)
    )
    out["upgrades_365d"] = (
        upgrade.groupby(recent["account_id"]).sum().reindex(out.index).fillna(0.0)
    )

    # usage
    usage = tables["usage"]
    usage = usage[usage["date"] < cutoff]
    window = usage[usage["date"] >= ago(168)]
    date = window["date"]
    period = np.select([date >= ago(28), date >= ago(56), date >= ago(84)], [0, 1, 2], 3)
    users, events, seats_licensed = (
        window["active_users"],
        window["events"],
        window["seats_licensed"],
    )
    counts_utilisation = users.notna() & (seats_licensed > 0)
    frame = pd.DataFrame(
        {
            "account_id": window["account_id"],
            "period": period,
            "u_users": users.where(counts_utilisation),
            "u_seats": seats_licensed.where(counts_utilisation),
            "users": users,
            "epu_events": events.where((users > 0) & events.notna()),
            "epu_users": users.where((users > 0) & events.notna()),
            "events": events,
        }
    )

    def window_sum(column: str, periods: tuple[int, ...]) -> pd.Series:
        rows = frame[frame["period"].isin(periods)]
        return rows.groupby("account_id")[column].sum(min_count=1).reindex(out.index)

    utilisation = {
        name: ratio(window_sum("u_users", periods), window_sum("u_seats", periods))
        for name, periods in {"28": (0,), "p28": (1,), "84": (0, 1, 2), "p84": (3,)}.items()
    }
    out["seat_utilisation_28d"] = utilisation["28"]
    out["seat_utilisation_change_4w"] = change(utilisation["28"], utilisation["p28"])
    out["seat_utilisation_change_12w"] = change(utilisation["84"], utilisation["p84"])
    last_28 = frame[frame["period"] == 0].groupby("account_id")
    out["active_users_mean_28d"] = last_28["users"].mean()
    out["events_per_active_user_28d"] = ratio(
        last_28["epu_events"].sum(min_count=1), last_28["epu_users"].sum(min_count=1)
    )
    out["events_change_12w"] = change(window_sum("events", (0, 1, 2)), window_sum("events", (3,)))
    last_84 = frame[frame["period"] < 3].groupby("account_id")["events"]
    out["events_volatility_12w"] = ratio(last_84.std(), last_84.mean())
    activity = (
        (usage["active_users"].fillna(0) > 0)
        | (usage["events"].fillna(0) > 0)
        | (usage["active_users"].isna() & usage["events"].isna())
    )
    out["days_since_last_activity"] = days_between(
        t, usage[activity].groupby("account_id")["date"].max()
    )

    # support
    tickets = tables["support_tickets"]
    tickets = tickets[(tickets["created_at"] < cutoff) & (tickets["created_at"] >= ago(180))]
    created, closed = tickets["created_at"], tickets["closed_at"]
    in_90 = created >= ago(90)
    high = tickets["priority"].str.lower().isin(["high", "urgent", "critical"])

    def count(mask: pd.Series) -> pd.Series:
        return mask.groupby(tickets["account_id"]).sum().reindex(out.index).fillna(0.0)

    out["support_tickets_30d"] = count(created >= ago(30))
    out["support_tickets_90d"] = count(in_90)
    out["support_high_priority_share_90d"] = ratio(
        (in_90 & high).groupby(tickets["account_id"]).sum(),
        (in_90 & tickets["priority"].notna()).groupby(tickets["account_id"]).sum(),
    )
    resolved = (closed < cutoff) & (closed >= created)
    hours = days_between(closed, created) * 24
    out["support_resolution_hours_180d"] = (
        hours[resolved].groupby(tickets["account_id"][resolved]).mean()
    )
    out["support_open_tickets"] = count(closed.isna() | (closed >= cutoff))
    rated = closed.isna() | (closed < cutoff)
    out["support_csat_mean_180d"] = (
        tickets["csat"][rated].groupby(tickets["account_id"][rated]).mean()
    )

    # opportunities
    opportunities = tables["opportunities"]
    opportunities = opportunities[
        (opportunities["created_at"] < cutoff) & (opportunities["created_at"] >= ago(730))
    ]
    stage = opportunities["stage"].str.lower()
    closed = opportunities["closed_at"]
    is_open = (closed >= cutoff) | (closed.isna() & ~stage.fillna("open").isin(["won", "lost"]))
    account = opportunities["account_id"]

    def opportunity_sum(values: pd.Series) -> pd.Series:
        return values.groupby(account).sum().reindex(out.index).fillna(0.0)

    out["opportunities_open"] = opportunity_sum(is_open)
    out["pipeline_open_amount"] = opportunity_sum(opportunities["amount"].where(is_open, 0.0))
    expansion = is_open & (opportunities["kind"].str.lower() == "expansion")
    out["pipeline_expansion_amount"] = opportunity_sum(
        opportunities["amount"].where(expansion, 0.0)
    )
    recently_closed = (closed < cutoff) & (closed >= ago(180))
    out["opportunities_won_180d"] = opportunity_sum(recently_closed & (stage == "won"))
    out["opportunities_lost_180d"] = opportunity_sum(recently_closed & (stage == "lost"))

    # NPS
    nps = tables["nps"]
    nps = nps[(nps["date"] < cutoff) & nps["score"].notna()]
    answers = (
        nps.assign(day=nps["date"].dt.normalize())
        .groupby(["account_id", "day"], as_index=False)["score"]
        .mean()
        .sort_values(["account_id", "day"])
    )
    answers["previous"] = answers.groupby("account_id")["score"].shift()
    latest = answers.groupby("account_id").tail(1).set_index("account_id")
    out["nps_last"] = latest["score"]
    out["nps_change"] = latest["score"] - latest["previous"]

    # invoices
    invoices = tables["invoices"]
    invoices = invoices[(invoices["due_date"] < cutoff) & (invoices["due_date"] >= ago(365))]
    paid = invoices["paid_at"].notna() & (invoices["paid_at"] < cutoff)
    overdue = ~paid & (invoices["due_date"] < t)
    late = (paid & (invoices["paid_at"] >= invoices["due_date"] + pd.Timedelta(days=1))) | overdue
    settled = invoices["paid_at"].where(paid, t)
    days_late = days_between(settled, invoices["due_date"]).clip(lower=0)
    account = invoices["account_id"]
    late_count = late.groupby(account).sum()
    out["invoices_late_365d"] = late_count.reindex(out.index).fillna(0.0)
    out["invoices_late_share_365d"] = ratio(late_count, account.groupby(account).size())
    out["invoice_days_late_mean_365d"] = days_late.groupby(account).mean()
    out["overdue_amount"] = (
        invoices["amount"].where(overdue).groupby(account).sum().reindex(out.index).fillna(0.0)
    )

    # firmographics
    accounts = tables["accounts"].drop_duplicates("account_id").set_index("account_id")
    firm = accounts.reindex(out.index)
    for column in ("segment", "industry", "region", "employees"):
        out[column] = firm[column]
    created = firm["created_at"].where(firm["created_at"] < cutoff)
    out["account_age_days"] = days_between(t, created)
    group = firm["parent_account_id"].fillna(pd.Series(out.index, index=out.index))
    known = out.index.isin(accounts.index)
    group_arr = out["arr"][known].groupby(group[known]).transform("sum")
    out["parent_arr_share"] = (out["arr"][known] / group_arr).reindex(out.index)

    out = out.reset_index().rename(columns={"index": "account_id"})
    out.insert(1, "as_of", t)
    return out


# ---------------------------------------------------------------- (c) the limit


def duckdb_usage_groupby(usage: pd.DataFrame) -> pd.DataFrame:
    """One DuckDB GROUP BY account_id over the usage rows: count(*) and sum(events)."""
    with duckdb.connect() as con:
        con.register("usage", usage)
        return con.sql(
            "SELECT account_id, count(*) AS rows, sum(events) AS events FROM usage "
            "GROUP BY account_id"
        ).df()


# ---------------------------------------------------------------- panels: loop or range join


def usage_windows_by_snapshot(session: FeatureSession, dates: list[pd.Timestamp]) -> int:
    """The usage window block, one query per as-of date (as the panel runs); rows returned."""
    window = USAGE.blocks[0]
    aggregates = ", ".join(f"{sql} AS {name}" for name, sql in window.aggregates.items())
    sql = f"SELECT account_id, {aggregates} FROM ({window.rows}) AS block_rows GROUP BY account_id"
    return sum(len(session.query(fill_dates(sql, day))) for day in dates)


def usage_windows_by_range_join(session: FeatureSession, dates: list[pd.Timestamp]) -> int:
    """The same aggregates in one query: usage rows joined by range to a table of as-of dates."""
    window = USAGE.blocks[0]
    rows = window.rows
    for old, new in (
        ("SELECT account_id, period,", "SELECT cutoff, account_id, period,"),
        ("FROM (SELECT account_id,", "FROM (SELECT s.cutoff, account_id,"),
        ("FROM usage WHERE", "FROM usage JOIN snapshots AS s ON true WHERE"),
        ("GROUP BY account_id, period", "GROUP BY cutoff, account_id, period"),
        ("{cutoff}", "s.cutoff"),
    ):
        assert old in rows, old
        rows = rows.replace(old, new)
    aggregates = ", ".join(f"{sql} AS {name}" for name, sql in window.aggregates.items())
    snapshots = pd.DataFrame({"cutoff": [day + pd.Timedelta(days=1) for day in dates]})
    session._con.register("snapshots", snapshots)
    return len(
        session.query(
            f"SELECT cutoff, account_id, {aggregates} FROM ({rows}) AS block_rows "
            "GROUP BY cutoff, account_id"
        )
    )


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    wall_seconds: float
    cpu_seconds: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[Timing, Any]:
    """The fastest of `repeat` runs (wall), with its CPU time, and the last result."""
    best: Timing | None = None
    result: Any = None
    for _ in range(repeat):
        cpu, wall = _cpu_seconds(), time.perf_counter()
        result = run()
        timing = Timing(time.perf_counter() - wall, _cpu_seconds() - cpu)
        if best is None or timing.wall_seconds < best.wall_seconds:
            best = timing
    assert best is not None
    return best, result


def best_of_alternating(repeat: int, runs: list[Callable[[], Any]]) -> list[tuple[Timing, Any]]:
    """`best_of` for each run, the runs taking turns (a, b, a, b, ...)."""
    best: list[Timing | None] = [None] * len(runs)
    results: list[Any] = [None] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            timing, results[index] = best_of(1, run)
            current = best[index]
            if current is None or timing.wall_seconds < current.wall_seconds:
                best[index] = timing
    timings = [timing for timing in best if timing is not None]
    assert len(timings) == len(runs), "repeat must be at least 1"
    return list(zip(timings, results, strict=True))


def compare(ours: pd.DataFrame, baseline: pd.DataFrame) -> list[str]:
    """Feature columns where the two implementations differ (beyond 1e-9 relative)."""
    baseline = baseline[ours.columns].astype(ours.dtypes.to_dict())
    different = []
    for column in ours.columns:
        left, right = ours[column], baseline[column]
        if column in FEATURES and FEATURES[column].kind == "numeric":
            same = np.isclose(left, right, rtol=1e-9, atol=1e-9, equal_nan=True).all()
        else:
            same = left.fillna("<NA>").astype(str).equals(right.fillna("<NA>").astype(str))
        if not same:
            different.append(column)
    return different


@dataclass(frozen=True)
class FeaturesBenchmark:
    accounts: int
    months: int
    row_order: str
    as_of: pd.Timestamp
    row_counts: dict[str, int]
    active_accounts: int
    feature_count: int
    ours: Timing
    pandas: Timing
    limit: Timing
    command: Timing
    different_columns: list[str]
    panel_snapshots: int
    panel_rows: int
    panel: Timing
    windows_by_snapshot: Timing
    windows_by_range_join: Timing

    @property
    def source_rows(self) -> int:
        return sum(self.row_counts.values())

    @property
    def rows_per_second(self) -> float:
        return self.source_rows / self.ours.wall_seconds

    @property
    def speedup_over_pandas(self) -> float:
        return self.pandas.wall_seconds / self.ours.wall_seconds

    @property
    def speedup_over_pandas_cpu(self) -> float:
        return self.pandas.cpu_seconds / self.ours.cpu_seconds

    @property
    def ratio_to_limit(self) -> float:
        return self.ours.wall_seconds / self.limit.wall_seconds

    @property
    def ratio_to_limit_cpu(self) -> float:
        return self.ours.cpu_seconds / self.limit.cpu_seconds


def in_row_order(tables: Tables, order: str) -> Tables:
    """The tables as given (`order="account"`) or each sorted by its event date (`"date"`)."""
    if order not in ROW_ORDERS:
        raise ValueError(f"unknown row order {order!r}; row orders: {', '.join(ROW_ORDERS)}")
    if order == "account":
        return tables
    ordered = dict(tables)
    for name, frame in tables.items():
        event_date = CONTRACT[name].event_date
        if event_date is not None and event_date in frame.columns:
            ordered[name] = frame.sort_values(event_date, kind="stable", ignore_index=True)
    return ordered


def run(
    accounts: int,
    months: int,
    seed: int,
    repeat: int,
    snapshots: int,
    folder: Path,
    row_order: str = "account",
) -> FeaturesBenchmark:
    portfolio = generate_portfolio(
        GeneratorSettings(n_accounts=accounts, months=months, seed=seed, kind="saas")
    )
    portfolio = replace(portfolio, tables=in_row_order(portfolio.tables, row_order))
    tables = {name: portfolio.tables[name] for name in FEATURE_TABLES}
    as_of = data_period(tables).last_day
    sources = write_portfolio(portfolio, folder)
    del portfolio

    # (a) and (c) take turns, so that both see the same machine (it may be shared).
    (ours_timing, ours), (limit_timing, _) = best_of_alternating(
        repeat,
        [
            lambda: build_account_features(tables, as_of),
            lambda: duckdb_usage_groupby(tables["usage"]),
        ],
    )
    pandas_timing, baseline = best_of(repeat, lambda: pandas_account_features(tables, as_of))

    def command() -> None:  # what `portfolio features` does: load, build, write
        snapshot = feature_snapshot(sources, as_of)
        write_parquet_atomically(snapshot.features, folder / "features.parquet")

    command_timing, _ = best_of(1, command)

    dates = [
        day
        for day in pd.date_range(end=as_of - pd.Timedelta(days=90), periods=snapshots, freq="MS")
    ]
    panel_timing, panel = best_of(1, lambda: build_training_panel(tables, dates, 90))
    with FeatureSession(tables) as session:
        loop_timing, loop_rows = best_of(1, lambda: usage_windows_by_snapshot(session, dates))
        join_timing, join_rows = best_of(1, lambda: usage_windows_by_range_join(session, dates))
    assert loop_rows == join_rows, (loop_rows, join_rows)
    return FeaturesBenchmark(
        accounts=accounts,
        months=months,
        row_order=row_order,
        as_of=as_of,
        row_counts={name: len(frame) for name, frame in tables.items()},
        active_accounts=len(ours),
        feature_count=ours.shape[1] - 2,
        ours=ours_timing,
        pandas=pandas_timing,
        limit=limit_timing,
        command=command_timing,
        different_columns=compare(ours, baseline),
        panel_snapshots=len(dates),
        panel_rows=len(panel),
        panel=panel_timing,
        windows_by_snapshot=loop_timing,
        windows_by_range_join=join_timing,
    )


def render(result: FeaturesBenchmark) -> Table:
    table = Table(
        title=(
            f"features at {result.as_of.date()}: {result.accounts:,} accounts x {result.months} "
            f"months, {result.source_rows:,} source rows in {result.row_order} order, "
            f"{os.cpu_count()} cores"
        )
    )
    table.add_column("measure")
    table.add_column("wall (s)", justify="right")
    table.add_column("CPU (s)", justify="right")
    table.add_column("source rows / s", justify="right")
    for name, timing in (
        ("(a) build_account_features", result.ours),
        ("(b) pandas groupby baseline", result.pandas),
        ("(c) DuckDB GROUP BY usage: count, sum", result.limit),
        ("portfolio features: load + build + write", result.command),
    ):
        rows = result.row_counts["usage"] if name.startswith("(c)") else result.source_rows
        table.add_row(
            name,
            f"{timing.wall_seconds:.2f}",
            f"{timing.cpu_seconds:.2f}",
            f"{rows / timing.wall_seconds:,.0f}",
        )
    snapshots = result.panel_snapshots
    for name, timing in (
        (
            f"training panel, {snapshots} monthly snapshots ({result.panel_rows:,} rows)",
            result.panel,
        ),
        (f"usage windows x {snapshots} snapshots, one query each", result.windows_by_snapshot),
        (
            f"usage windows x {snapshots} snapshots, one range-join query",
            result.windows_by_range_join,
        ),
    ):
        table.add_row(name, f"{timing.wall_seconds:.2f}", f"{timing.cpu_seconds:.2f}", "")
    for name, rows in result.row_counts.items():
        table.add_row(f"rows {name}", "", "", f"{rows:,}")
    table.add_row(
        "active accounts / features", "", "", f"{result.active_accounts:,} / {result.feature_count}"
    )
    checks = (
        (
            f"(a) >= {TARGET_ROWS_PER_SECOND:,} rows/s",
            result.rows_per_second >= TARGET_ROWS_PER_SECOND,
        ),
        (
            f"(b) / (a) = {result.speedup_over_pandas:.1f} wall "
            f"({result.speedup_over_pandas_cpu:.1f} CPU) >= {TARGET_SPEEDUP_OVER_PANDAS:.0f}",
            result.speedup_over_pandas >= TARGET_SPEEDUP_OVER_PANDAS,
        ),
        (
            f"(a) / (c) = {result.ratio_to_limit:.1f} wall "
            f"({result.ratio_to_limit_cpu:.1f} CPU) <= {TARGET_RATIO_TO_LIMIT:.0f}",
            result.ratio_to_limit <= TARGET_RATIO_TO_LIMIT,
        ),
        (
            "(a) and (b) agree to 1e-9"
            + (
                f" (differ: {', '.join(result.different_columns)})"
                if result.different_columns
                else ""
            ),
            not result.different_columns,
        ),
    )
    for label, met in checks:
        table.add_row(label, "", "", "met" if met else "MISSED")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; the best counts")
    parser.add_argument("--snapshots", type=int, default=6, help="monthly snapshots of the panel")
    parser.add_argument(
        "--row-order",
        choices=ROW_ORDERS,
        default="account",
        help="event rows as generated (an account's rows together) or sorted by date",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="features-benchmark-") as folder:
        result = run(
            args.accounts,
            args.months,
            args.seed,
            args.repeat,
            args.snapshots,
            Path(folder),
            args.row_order,
        )
    load = os.getloadavg()[0]
    console = Console()
    console.print(render(result))
    console.print(f"load average during the run: {load:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
