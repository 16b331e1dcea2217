"""Point-in-time account features: the definitions compiled to one DuckDB query per as-of date.

`build_account_features(tables, as_of)` returns one row per account active at
the as-of date (ARR > 0) with the features of every family whose source table
is given. Each family is a `GROUP BY account_id` pass over the rows of its
table dated on or before the as-of day (see `features.definitions`), so the
work is vectorised in DuckDB, never a Python loop over accounts.

`compile_feature_sql` is the query itself, for a given set of available
columns and an as-of date; another engine can run it after transpiling it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime
from queue import Queue
from types import TracebackType

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import CONTRACT, REVENUE_TABLES, Tables
from features.definitions import (
    ARR_EPSILON,
    FAMILY_QUERIES,
    FEATURES,
    REVENUE_SOURCE,
    FamilyQuery,
    FeatureSpec,
    RowWindow,
)
from features.id_runs import repeat_runs, run_starts, take_rows
from features.issues import Issue
from features.typed_tables import DUCKDB_TYPES, coerce_tables, quote_identifier

logger = logging.getLogger(__name__)

AsOf = str | date | datetime | pd.Timestamp | np.datetime64

FEATURE_META_COLUMNS: tuple[str, ...] = ("account_id", "as_of")

# How many account ids a warning names.
WARNING_EXAMPLE_IDS = 10


class FeatureError(ValueError):
    """Features cannot be computed as asked (bad as-of date, unusable tables)."""


# Dates that say when something was recorded, per table, for the data period. Mostly the
# contract's event date; an invoice's due date is scheduled ahead of time, so invoices
# count by their payment dates (a portfolio's invoices run weeks past its last day).
RECORDED_DATES: dict[str, str] = {"invoices": "paid_at"}


@dataclass(frozen=True)
class DataPeriod:
    """When the data was recorded: the first and last recorded dates over the given tables."""

    start: pd.Timestamp
    end: pd.Timestamp
    # table -> its first recorded date
    table_starts: dict[str, pd.Timestamp] = field(default_factory=dict)

    @property
    def first_day(self) -> pd.Timestamp:
        return self.start.normalize()

    @property
    def last_day(self) -> pd.Timestamp:
        return self.end.normalize()

    @property
    def covered_from(self) -> pd.Timestamp:
        """The first day from which every given table has data (the latest table start)."""
        return max(self.table_starts.values(), default=self.start).normalize()


# ---------------------------------------------------------------- as-of dates and the data period


def as_of_day(as_of: AsOf) -> pd.Timestamp:
    """The as-of date as a naive midnight Timestamp (a time of day is dropped)."""
    try:
        stamp = pd.Timestamp(as_of)
    except (ValueError, TypeError) as error:
        raise FeatureError(f"as-of date {as_of!r} is not a date (use YYYY-MM-DD)") from error
    if stamp is pd.NaT:
        raise FeatureError("as-of date is missing")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.normalize().as_unit("ns")


def data_period(tables: Tables) -> DataPeriod:
    """First and last recorded date over the time-stamped tables (`RECORDED_DATES`)."""
    starts: dict[str, pd.Timestamp] = {}
    ends: list[pd.Timestamp] = []
    for name, frame in tables.items():
        spec = CONTRACT.get(name)
        if spec is None or spec.event_date is None:
            continue
        column = RECORDED_DATES.get(name, spec.event_date)
        if column not in frame.columns:
            continue
        dates = frame[column]
        if not pd.api.types.is_datetime64_any_dtype(dates):
            dates = pd.to_datetime(dates, errors="coerce", format="mixed")
        bounds = _date_bounds(dates)
        if bounds is not None:
            starts[name] = bounds[0]
            ends.append(bounds[1])
    if not starts:
        raise FeatureError(
            "the tables hold no dated rows: features need at least one row in "
            f"{' or '.join(REVENUE_TABLES)}"
        )
    return DataPeriod(min(starts.values()), max(ends), starts)


def _date_bounds(dates: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last of some dates (missing ones aside), or None when all are missing.

    On the integers under naive NumPy dates (NaT is the smallest integer),
    several times cheaper than pandas' min and max; the missing dates are
    looked for only when the smallest integer is NaT.
    """
    values = dates.to_numpy()
    if not (isinstance(values, np.ndarray) and values.dtype.kind == "M"):  # e.g. with a zone
        known = dates.dropna()
        return None if known.empty else (pd.Timestamp(known.min()), pd.Timestamp(known.max()))
    unit, _ = np.datetime_data(values.dtype)
    numbers = values.view(np.int64)
    if len(numbers) == 0 or (last := int(numbers.max())) == NAT_INTEGER:  # NaT is below every date
        return None
    first = int(numbers.min())
    if first == NAT_INTEGER:
        first = int(numbers[numbers != NAT_INTEGER].min())
    return pd.Timestamp(np.datetime64(first, unit)), pd.Timestamp(np.datetime64(last, unit))


def check_as_of(period: DataPeriod, as_of: AsOf) -> pd.Timestamp:
    """The as-of day, or FeatureError when it lies outside the data."""
    day = as_of_day(as_of)
    if day < period.first_day:
        raise FeatureError(
            f"as-of date {day.date()} is before all data: the first dated row is on "
            f"{period.first_day.date()}"
        )
    if day > period.last_day:
        raise FeatureError(
            f"as-of date {day.date()} is after the last date in the data "
            f"({period.last_day.date()}); features after it would pretend nothing happened"
        )
    return day


# ---------------------------------------------------------------- compiling the definitions


def sql_timestamp(day: pd.Timestamp) -> str:
    return f"TIMESTAMP '{day.strftime('%Y-%m-%d %H:%M:%S')}'"


def fill_dates(sql: str, as_of: pd.Timestamp, horizon_days: int = 0) -> str:
    """Replace the `{as_of}`, `{cutoff}` (and `{horizon_cutoff}`) placeholders with literals."""
    cutoff = as_of + pd.Timedelta(days=1)
    return (
        sql.replace("{as_of}", sql_timestamp(as_of))
        .replace("{horizon_cutoff}", sql_timestamp(cutoff + pd.Timedelta(days=horizon_days)))
        .replace("{cutoff}", sql_timestamp(cutoff))
    )


def revenue_source(columns: Iterable[str]) -> str:
    """The revenue table among the given table names (subscriptions wins over orders)."""
    names = set(columns)
    for name in REVENUE_TABLES:
        if name in names:
            return name
    raise FeatureError(
        "neither 'subscriptions' nor 'orders' is given: features need one revenue table "
        "(ARR defines which accounts are active)"
    )


def family_queries(columns: Mapping[str, Iterable[str]]) -> list[FamilyQuery]:
    """The family queries that apply to the given tables (the revenue one first)."""
    revenue = revenue_source(columns)
    chosen = [q for q in FAMILY_QUERIES if q.family == "revenue" and q.source == revenue]
    chosen += [q for q in FAMILY_QUERIES if q.family != "revenue" and q.source in columns]
    return chosen


def included_features(columns: Mapping[str, Iterable[str]]) -> list[FeatureSpec]:
    """The features computable from tables with these columns."""
    available = {table: set(names) for table, names in columns.items()}
    revenue = revenue_source(available)
    specs: list[FeatureSpec] = []
    for query in family_queries(available):
        present = available[revenue if query.family == "revenue" else query.source]
        specs += [
            spec
            for spec in FEATURES.values()
            if spec.family == query.family and set(spec.requires) <= present
        ]
    return specs


@dataclass(frozen=True)
class FeaturePlan:
    """The SQL of one feature build at one as-of date, from the definitions.

    `blocks` are `(name, query)` pairs, each query a `GROUP BY account_id`
    over one contract table; the first is the revenue block, whose `arr`
    decides the active accounts (`spine`: account_id, arr with ARR > 0).
    `outputs` is the SELECT list that turns the blocks' aggregates into the
    features. `single_query` puts it all in one statement (blocks as CTEs,
    joined on account_id), the form another engine can run after transpiling.
    `windows` maps the name of a block that reads only the rows of one table
    in a date window (`AggregateBlock.window`) to that table and window: an
    engine may hand the block those rows alone (the query filters them anyway).
    """

    as_of: pd.Timestamp
    blocks: tuple[tuple[str, str], ...]
    outputs: str
    features: tuple[FeatureSpec, ...]
    windows: Mapping[str, tuple[str, RowWindow]] = field(default_factory=dict)

    @property
    def spine_sql(self) -> str:
        return f"SELECT account_id, arr FROM {self.blocks[0][0]} WHERE arr > {ARR_EPSILON}"

    def select_sql(self, source: str, ordered: bool = True) -> str:
        """The features over `source`, a relation holding account_id and every aggregate.

        `ordered=False` leaves out the ORDER BY, for a source already in
        account order that the engine keeps in order (DuckDB's insertion order).
        """
        order = " ORDER BY account_id" if ordered else ""
        return fill_dates(
            f"SELECT account_id, {{as_of}} AS as_of, {self.outputs} FROM {source}{order}",
            self.as_of,
        )

    def single_query(self) -> str:
        revenue, *others = self.blocks
        ctes = [f"{revenue[0]} AS ({revenue[1]})", f"spine AS ({self.spine_sql})"]
        ctes += [f"{name} AS ({sql})" for name, sql in others]
        joins = " ".join(f"LEFT JOIN {name} USING (account_id)" for name, _ in self.blocks)
        return f"WITH {', '.join(ctes)} " + self.select_sql(
            f"(SELECT account_id FROM spine) AS active {joins}"
        )


def plan_features(
    columns: Mapping[str, Iterable[str]],
    as_of: AsOf,
    unknown: Mapping[str, Iterable[str]] | None = None,
) -> FeaturePlan:
    """The SQL computing every included feature at `as_of` (DuckDB SQL; see `FeaturePlan`).

    `columns` maps each given contract table to its given columns; `unknown`
    maps tables to the optional columns without any value in the rows known
    at `as_of` (`FeatureSession.unknown_columns`): the features that need them
    are missing rather than computed from nothing (no open tickets because no
    ticket has a close date). The queries read views named after the contract
    tables holding every contract column.
    """
    day = as_of_day(as_of)
    specs = included_features(columns)
    unknown = {table: set(names) for table, names in (unknown or {}).items()}
    families = [q for q in family_queries(columns) if any(s.family == q.family for s in specs)]
    _check_unique_names(families, specs)
    blocks = tuple(
        (
            _block_name(query, block.name),
            fill_dates(
                "SELECT account_id, "
                + ", ".join(f"{sql} AS {name}" for name, sql in block.aggregates.items())
                + f" FROM ({block.rows}) AS block_rows GROUP BY account_id",
                day,
            ),
        )
        for query in families
        for block in query.blocks
    )
    windows = {
        _block_name(query, block.name): (query.source, block.window)
        for query in families
        for block in query.blocks
        if block.window is not None
    }
    sources = {query.family: query.source for query in families}
    outputs = ", ".join(
        f"{_output_sql(spec, bool(set(spec.requires) & unknown.get(sources[spec.family], set())))}"
        f" AS {spec.name}"
        for spec in specs
    )
    return FeaturePlan(day, blocks, fill_dates(outputs, day), tuple(specs), windows)


def compile_feature_sql(
    columns: Mapping[str, Iterable[str]],
    as_of: AsOf,
    unknown: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """All the features at `as_of` in one query (see `plan_features`, `FeaturePlan`).

    Returns `account_id`, `as_of` and the features of `included_features(columns)`,
    one row per active account, ordered by account_id.
    """
    return plan_features(columns, as_of, unknown).single_query()


def _check_unique_names(families: list[FamilyQuery], specs: list[FeatureSpec]) -> None:
    """Aggregates meet in one SELECT: their names must not repeat across blocks and families."""
    owner: dict[str, str] = {}
    for query in families:
        for block in query.blocks:
            for name in block.aggregates:
                if name in owner or name in FEATURE_META_COLUMNS:
                    raise ValueError(
                        f"aggregate {name!r} of {query.family}/{block.name} repeats a name"
                    )
                owner[name] = query.family
    for spec in specs:
        if owner.get(spec.name, spec.family) != spec.family:
            raise ValueError(
                f"feature {spec.name!r} is named like an aggregate of {owner[spec.name]}"
            )


def _block_name(query: FamilyQuery, block: str) -> str:
    return f"block_{query.family}_{block}"


def _output_sql(spec: FeatureSpec, unknown: bool = False) -> str:
    if unknown:
        return f"CAST(NULL AS {'VARCHAR' if spec.kind == 'categorical' else 'DOUBLE'})"
    if spec.kind == "categorical":
        return f"CAST({spec.sql} AS VARCHAR)"
    value = f"CAST({spec.sql} AS DOUBLE)"
    return value if spec.fill_value is None else f"coalesce({value}, {spec.fill_value!r})"


# ---------------------------------------------------------------- the session


class FeatureSession:
    """Contract frames registered in one DuckDB connection, for features and labels by as-of date.

    Open one per build (a panel reuses it for every snapshot). Frames of the
    contract dtypes are used as they are; other frames are typed by the
    loader's rules first and rejected with FeatureError when they have
    errors. DuckDB reads each table's contract columns as an Arrow table
    (`_arrow_tables`: missing values as nulls), which it scans faster than
    the pandas frame.

    Account ids reach DuckDB as integer codes into the sorted list of every
    id in the tables (`account_ids`), and query results are decoded back:
    grouping and joining on integers is several times faster than on text,
    and the queries do not depend on the type of the key.
    """

    def __init__(self, tables: Tables) -> None:
        # The DuckDB database (~12 ms to set up), the data period, then the tables as Arrow
        # tables, on the session's threads (DuckDB, NumPy and Arrow free the GIL), the longest
        # tables first; the blocks queue up behind them on the same threads (`run_plan`), so
        # that no thread waits for another to finish. The conversions start on the columns
        # other than ids while this thread lists the ids.
        self._pool = ThreadPoolExecutor(max_workers=SESSION_THREADS)
        connection = self._pool.submit(_connect)
        ids: Future[pa.Array] = Future()
        try:
            self.tables = typed_contract_tables(tables)
            self.revenue_table = revenue_source(self.tables)
            self.columns = available_columns(self.tables)
            self.features = included_features(self.columns)
            period = self._pool.submit(data_period, self.tables)
            self._windowed_only = _windowed_only_tables(self.columns)
            self._arrow_jobs: dict[str, Future[dict[str, pa.Table]]] = {}
            for group in _balanced_groups(self.tables, SESSION_THREADS):
                job = self._pool.submit(
                    _arrow_tables,
                    {name: self.tables[name] for name in group},
                    ids.result,
                    self._windowed_only,
                )
                self._arrow_jobs.update(dict.fromkeys(group, job))
            self.account_ids = _sorted_ids(self.tables)
            ids.set_result(self.account_ids)
            self.period = period.result()
            self._con = connection.result()
        except BaseException as error:
            if not ids.done():
                ids.set_exception(error)  # the conversions waiting for the ids stop
            self._pool.shutdown(wait=True, cancel_futures=True)
            if not connection.cancelled() and connection.exception() is None:
                connection.result().close()
            raise
        # Per connection (by id), the tables whose views it has, with the rows they read.
        self._views: dict[int, dict[str, pa.Table]] = {}
        # The tables read only over a window, with all their ids coded (`_whole`), when asked.
        self._whole_tables: dict[str, pa.Table] = {}
        self._whole_lock = threading.Lock()
        self._cursors: Queue[duckdb.DuckDBPyConnection] | None = None

    def __enter__(self) -> FeatureSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._cursors is not None:
            while not self._cursors.empty():
                self._cursors.get().close()
        self._con.close()

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL over the contract views; account id codes in the result become ids again."""
        return self._decode_ids(self._with_views(self._con, self.tables).sql(sql).df())

    def _with_views(
        self,
        con: duckdb.DuckDBPyConnection,
        names: Iterable[str],
        rows: Mapping[str, pa.Table] | None = None,
    ) -> duckdb.DuckDBPyConnection:
        """`con` with a view of each of these tables, waiting for its Arrow table if need be.

        The views are temporary (each connection has its own), so that a
        block can read its tables while others are still being converted.
        `rows` gives some tables other rows (a block's window, `_window_rows`);
        the others read all their rows.
        """
        have = self._views.setdefault(id(con), {})
        for name in names:
            table = (rows or {}).get(name)
            if table is None:
                table = self._whole(name)
            if name not in have:
                self._register(con, name, table)
            elif have[name] is not table:
                con.register(_raw_name(name), table)  # the view reads it by that name
            have[name] = table
        return con

    def _window_rows(self, name: str, window: RowWindow, day: pd.Timestamp) -> pa.Table:
        """The rows of table `name` inside `window` at the as-of `day` (see `FeaturePlan.windows`).

        The same comparisons as the window's SQL on the same values (a
        missing date is outside); all the rows when the column is not a
        naive timestamp, or when the window holds more than `WINDOW_SHARE`
        of them.
        """
        table = self._arrow_jobs[name].result()[name]
        if window.column not in table.column_names:
            return self._whole(name)
        dates = table[window.column]
        if not pa.types.is_timestamp(dates.type) or dates.type.tz is not None:
            return self._whole(name)
        cutoff = day + pd.Timedelta(days=1)
        start = cutoff - pd.Timedelta(days=window.days)
        inside = pc.and_(
            pc.greater_equal(dates, pa.scalar(start, dates.type)),
            pc.less(dates, pa.scalar(cutoff, dates.type)),
        )
        if (pc.sum(inside).as_py() or 0) > table.num_rows * WINDOW_SHARE:
            return self._whole(name)  # filtering would cost about what scanning the rest costs
        return self._with_codes(name, table.filter(inside))

    def _whole(self, name: str) -> pa.Table:
        """All the rows of table `name` as DuckDB reads them (account ids as codes)."""
        table = self._arrow_jobs[name].result()[name]
        if name not in self._windowed_only:
            return table
        with self._whole_lock:  # coded once, by whichever block asks first
            if name not in self._whole_tables:
                self._whole_tables[name] = self._with_codes(name, table)
            return self._whole_tables[name]

    def _with_codes(self, name: str, rows: pa.Table) -> pa.Table:
        """`rows` of table `name` with their account ids coded (those of a table read only over
        a window are coded for the rows of the window alone: `_windowed_only_tables`)."""
        if name not in self._windowed_only or "account_id" not in rows.column_names:
            return rows
        (codes,) = _id_codes([rows["account_id"]], lambda: self.account_ids)
        return rows.set_column(rows.column_names.index("account_id"), "account_id", codes)

    def _decode_ids(self, frame: pd.DataFrame) -> pd.DataFrame:
        if "account_id" in frame.columns:
            codes = pa.array(frame["account_id"], type=pa.int32())
            frame["account_id"] = pd.Series(
                self.account_ids.take(codes).to_pandas(types_mapper=pd.ArrowDtype),
                index=frame.index,
            ).astype("str")
        return frame

    def account_features(self, as_of: AsOf) -> pd.DataFrame:
        """Features at `as_of` (see `build_account_features`)."""
        day = check_as_of(self.period, as_of)
        table = self._run_plan(plan_features(self.columns, day, self.unknown_columns(day)))
        self._warn_missing_accounts(table["account_id"], day)
        return to_feature_dtypes(self._decode_ids(table.to_pandas()), self.features)

    def run_plan(self, plan: FeaturePlan) -> pd.DataFrame:
        """The features of a plan, one row per active account in account order (see `_run_plan`)."""
        return self._decode_ids(self._run_plan(plan).to_pandas())

    def _run_plan(self, plan: FeaturePlan) -> pa.Table:
        """Run the blocks side by side, line their aggregates up by account, then the outputs.

        The same result as `plan.single_query()`, faster in DuckDB:

        - the blocks are independent GROUP BY queries: they run on the
          session's `SESSION_THREADS` threads, each on one DuckDB thread (a
          GROUP BY over ~100,000 accounts costs about a quarter more CPU split
          over two threads than on one), behind the conversion of the tables
          to Arrow: a thread takes the first block whose tables are converted,
          the revenue block first, then those of the largest tables so that
          the long ones do not finish last; the blocks that read `spine`
          (the active accounts) wait for the revenue block and run as soon
          as it is done (they are small: last, one would run alone);
        - a block over a date window of its table (`plan.windows`: the usage
          windows read the last 24 weeks of a three-year table) gets the rows
          in the window, filtered in Arrow, so that DuckDB scans the weeks
          rather than the table; its query keeps its own filter;
        - a block over a table with few rows per account gets only the active
          accounts' rows (`_narrowed_tables`), so that it groups the accounts
          that reach the features; it waits for the revenue block;
        - results stay Arrow tables: the aggregates of the active accounts are
          lined up by their integer account code as each block finishes (a
          take per block instead of a chain of hash joins), and the final
          SELECT reads that table in account order, in two halves side by
          side, instead of sorting again; pandas comes in at the end.
        """
        revenue_block, *others = plan.blocks
        cursors = self._block_cursors()
        # The revenue block decides the active accounts: it reads every row and waits for nothing.
        narrowed = {name: self._narrowed_tables(sql) for name, sql in others}
        narrowed[revenue_block[0]] = []
        waits = {name: _reads_spine(sql) or bool(narrowed[name]) for name, sql in plan.blocks}
        # The blocks that read the active accounts first (they are small: run last, one would
        # keep a thread busy while the other has nothing left), then the longest tables first.
        others.sort(key=lambda block: (not _reads_spine(block[1]), -self._block_rows(block[1])))
        spine_ready: Future[tuple[pa.Table, np.ndarray]] = Future()
        active_rows: dict[tuple[str, str], pa.Table] = {}

        def run_block(block: tuple[str, str]) -> pa.Table:
            name, sql = block
            spine, active = spine_ready.result() if waits[name] else (None, None)
            cursor = cursors.get()
            try:
                windowed = plan.windows.get(name)
                rows: dict[str, pa.Table] = {}
                if windowed is not None:
                    table, window = windowed
                    rows[table] = self._window_rows(table, window, plan.as_of)
                for table in narrowed[name]:
                    key = (table, repr(windowed))  # blocks over the same rows share them
                    if key not in active_rows:
                        whole = rows.get(table)
                        if whole is None:
                            whole = self._whole(table)
                        active_rows[key] = _active_rows(whole, active)
                    rows[table] = active_rows[key]
                self._with_views(cursor, self._tables_read(sql), rows)
                if spine is not None:
                    cursor.register("spine", spine)
                return cursor.sql(sql).to_arrow_table()
            finally:
                cursors.put(cursor)

        def ready(block: tuple[str, str]) -> bool:
            return self._tables_ready(block[1]) and (spine_ready.done() or not waits[block[0]])

        def select(aggregates: pa.Table) -> pa.Table:
            cursor = cursors.get()
            try:
                cursor.register("aggregates", aggregates)
                return cursor.sql(plan.select_sql("aggregates", ordered=False)).to_arrow_table()
            finally:
                cursor.unregister("aggregates")
                cursors.put(cursor)

        (threads,) = self._con.sql("SELECT current_setting('threads')").fetchall()
        self._con.execute("SET threads = 1")
        try:
            # Behind any table still being converted on the session's threads; a thread takes
            # the first block that can run: the revenue block when it can, the blocks that
            # read the active accounts as soon as they are known (they are small: run late,
            # one would keep a thread busy while the other has nothing left), then the others.
            jobs = self._run_when_ready(
                run_block, [revenue_block, *others], ready, lambda block: waits[block[0]]
            )
            try:
                revenue = jobs[0].result()
                spine = revenue.filter(pc.greater(revenue["arr"], ARR_EPSILON))
                spine = spine.select(["account_id", "arr"]).sort_by("account_id")
                active = np.zeros(len(self.account_ids) + 1, dtype=bool)
                active[spine["account_id"].to_numpy()] = True
            except BaseException as error:
                spine_ready.set_exception(error)  # the blocks waiting for it stop
                raise
            spine_ready.set_result((spine, active))
            # Each block is lined up as soon as it is done, while the others run.
            line_up = _LineUp(spine["account_id"], len(self.account_ids))
            lined_up = {id(job): line_up(job.result()) for job in as_completed(jobs)}
            columns = {"account_id": spine["account_id"]}
            for job in jobs:
                columns.update(lined_up[id(job)])
            aggregates = pa.table(columns)
            # The outputs row by row: each thread takes half of the accounts.
            half = (aggregates.num_rows + 1) // 2
            parts = self._pool.map(select, [aggregates.slice(0, half), aggregates.slice(half)])
            table = pa.concat_tables(parts)
        finally:
            self._con.execute(f"SET threads = {int(threads[0])}")
        if (np.diff(table["account_id"].to_numpy()) <= 0).any():
            table = table.sort_by("account_id")  # DuckDB kept the order so far
        return table

    def _run_when_ready(
        self,
        run: Callable[[tuple[str, str]], pa.Table],
        blocks: list[tuple[str, str]],
        ready: Callable[[tuple[str, str]], bool],
        waits: Callable[[tuple[str, str]], bool],
    ) -> list[Future[pa.Table]]:
        """`run` each `(name, query)` block on the session's threads, those `ready` to run first.

        One task per block; each task takes the first block left that is
        `ready`, else the first block left that does not wait for the active
        accounts, else the first block left (`run` waits for what it needs).
        """
        results: list[Future[pa.Table]] = [Future() for _ in blocks]
        left = list(range(len(blocks)))
        lock = threading.Lock()

        def run_next() -> None:
            with lock:
                waiting = [i for i in left if not waits(blocks[i])] or left
                index = next((i for i in left if ready(blocks[i])), waiting[0])
                left.remove(index)
            try:
                results[index].set_result(run(blocks[index]))
            except BaseException as error:  # handed to whoever waits for the result
                results[index].set_exception(error)

        for _ in blocks:
            self._pool.submit(run_next)
        return results

    def _tables_ready(self, sql: str) -> bool:
        return all(self._arrow_jobs[name].done() for name in self._tables_read(sql))

    def _tables_read(self, sql: str) -> list[str]:
        """The contract tables a query names."""
        return _tables_named(sql, self.tables)

    def _block_rows(self, sql: str) -> int:
        """Rows of the largest contract table a block reads (to run the long blocks first)."""
        return max((len(self.tables[name]) for name in self._tables_read(sql)), default=0)

    def _narrowed_tables(self, sql: str) -> list[str]:
        """The tables a block (not the revenue block) reads only the active accounts' rows of.

        A block's aggregates for an account come from that account's rows
        alone (`AggregateBlock`), and only the active accounts' reach the
        features. A block over a table with few rows per account costs
        mostly per account (a group each), so handing it the active
        accounts' rows alone pays when the table holds many other accounts:
        the tables with at most `NARROW_ROWS_PER_ACCOUNT` rows per account
        are narrowed (`_active_rows`), and their blocks wait for the active
        accounts. Longer tables cost per row, and a copy of their rows costs
        about what it spares.
        """
        most = NARROW_ROWS_PER_ACCOUNT * len(self.account_ids)
        return [name for name in self._tables_read(sql) if len(self.tables[name]) <= most]

    def _block_cursors(self) -> Queue[duckdb.DuckDBPyConnection]:
        """Connections to the session's database, one per thread (views: `_with_views`)."""
        if self._cursors is None:
            self._cursors = Queue()
            for _ in range(SESSION_THREADS):
                cursor = self._con.cursor()
                cursor.execute("SET TimeZone = 'UTC'")
                self._cursors.put(cursor)
        return self._cursors

    def unknown_columns(self, as_of: AsOf) -> dict[str, set[str]]:
        """Per table, the optional columns features need that no row known at `as_of` fills.

        Known rows: dated on or before the as-of date; for accounts, those
        created by then (or without a creation date).
        """
        cutoff = np.datetime64(as_of_day(as_of) + pd.Timedelta(days=1), "ns")
        needed: dict[str, set[str]] = {}
        for spec in self.features:
            if spec.requires and spec.source in self.tables:
                needed.setdefault(spec.source, set()).update(spec.requires)
        unknown: dict[str, set[str]] = {}
        for table, names in needed.items():
            frame = self.tables[table]
            event = CONTRACT[table].event_date
            unknown[table] = set(names)
            # Rows in slices: a column is known as soon as one known row fills it, so
            # usually the first slice settles every column.
            for start in range(0, len(frame), UNKNOWN_SCAN_ROWS):
                rows = frame.iloc[start : start + UNKNOWN_SCAN_ROWS]
                if event is not None:
                    known = rows[event].to_numpy(dtype="datetime64[ns]") < cutoff
                elif "created_at" in rows.columns:  # accounts: those created by the as-of date
                    created = rows["created_at"].to_numpy(dtype="datetime64[ns]")
                    known = np.isnat(created) | (created < cutoff)
                else:
                    known = np.ones(len(rows), dtype=bool)
                unknown[table] -= {
                    name for name in unknown[table] if (known & rows[name].notna().to_numpy()).any()
                }
                if not unknown[table]:
                    break
        return unknown

    def arr(self, as_of: AsOf) -> pd.DataFrame:
        """account_id, as_of, arr of the accounts with ARR > 0 at `as_of`."""
        day = as_of_day(as_of)
        revenue = next(
            q for q in FAMILY_QUERIES if q.family == "revenue" and q.source == self.revenue_table
        )
        block = revenue.blocks[0]
        sql = (
            f"SELECT account_id, {{as_of}} AS as_of, arr FROM (SELECT account_id, "
            f"{block.aggregates['arr']} AS arr FROM ({block.rows}) AS block_rows "
            f"GROUP BY account_id) AS accounts WHERE arr > {ARR_EPSILON} ORDER BY account_id"
        )
        frame = self.query(fill_dates(sql, day))
        return frame.astype({"account_id": "str", "as_of": "datetime64[ns]", "arr": "float64"})

    def _register(self, con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
        spec = CONTRACT[name]
        raw = _raw_name(name)
        con.register(raw, table)
        columns = []
        for column in spec.columns:
            kind = "INTEGER" if column.name in ACCOUNT_ID_COLUMNS else DUCKDB_TYPES[column.type]
            if column.name in table.column_names:
                columns.append(f"CAST({quote_identifier(column.name)} AS {kind}) AS {column.name}")
            else:
                columns.append(f"CAST(NULL AS {kind}) AS {column.name}")
        con.execute(
            f"CREATE TEMP VIEW {quote_identifier(name)} AS SELECT {', '.join(columns)} "
            f"FROM {quote_identifier(raw)}"
        )

    def _warn_missing_accounts(self, accounts: pa.ChunkedArray, day: pd.Timestamp) -> None:
        """Warn about the active `accounts` (codes) that have no row in the accounts table."""
        if "accounts" not in self.tables or len(accounts) == 0:
            return
        codes = len(self.account_ids)
        rows = self._arrow_jobs["accounts"].result()["accounts"]["account_id"]
        described = np.zeros(codes + 1, dtype=bool)  # the last slot: rows without an id
        described[pc.fill_null(rows, codes).to_numpy()] = True
        active = accounts.to_numpy()
        unknown = active[~described[active]]
        if len(unknown) == 0:
            return
        missing = self.account_ids.take(pa.array(unknown)).to_pylist()
        logger.warning(
            "%d account(s) active at %s have revenue but no row in accounts; their "
            "firmographic features are missing: %s%s",
            len(missing),
            day.date(),
            ", ".join(missing[:WARNING_EXAMPLE_IDS]),
            " ..." if len(missing) > WARNING_EXAMPLE_IDS else "",
        )


# The integer under NaT in a NumPy date.
NAT_INTEGER = np.iinfo(np.int64).min
# Columns holding account ids (coded as integers inside a session).
ACCOUNT_ID_COLUMNS: frozenset[str] = frozenset({"account_id", "parent_account_id"})
# Threads of a session: they convert the tables to Arrow, then run the blocks (two at a time).
SESSION_THREADS = 2
# A block gets the rows of its window alone when they are at most this share of the table's
# (the usage windows: 13% of a three-year table; opportunities over 730 days: over half).
WINDOW_SHARE = 0.5
# Blocks over tables with at most this many rows per account get the active accounts' rows
# alone (`FeatureSession._narrowed_tables`), when at least `NARROW_SHARE` of the rows are
# other accounts'.
NARROW_ROWS_PER_ACCOUNT = 8
NARROW_SHARE = 0.2
# Rows `FeatureSession.unknown_columns` looks at a time.
UNKNOWN_SCAN_ROWS = 65_536


def _active_rows(table: pa.Table, active: np.ndarray) -> pa.Table:
    """The rows of `table` whose account code is marked in `active` (its last slot: no code).

    All the rows when fewer than `NARROW_SHARE` of them are other accounts'
    (the copy would cost about what it spares).
    """
    codes = pc.fill_null(table["account_id"], len(active) - 1).to_numpy()
    keep = active[codes]
    if keep.sum() > table.num_rows * (1 - NARROW_SHARE):
        return table
    return table.filter(pa.array(keep))


def _windowed_only_tables(columns: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The tables that every block reading them reads over a date window of theirs.

    Support tickets, invoices and opportunities: their blocks read the last
    180, 365 or 730 days, so their ids are coded for the rows of the window
    alone (`FeatureSession._window_rows`; a window holding most of the rows
    gets the whole table, coded once), not for every row: ids in no
    particular order cost a hash look-up each.
    """
    readers: dict[str, list[bool]] = {}
    for query in family_queries(columns):
        for block in query.blocks:
            for name in _tables_named(block.rows, columns):
                windowed = query.source == name and block.window is not None
                readers.setdefault(name, []).append(windowed)
    return frozenset(
        name
        for name, windowed in readers.items()
        if all(windowed) and name not in (*REVENUE_TABLES, "accounts")
    )


def _tables_named(sql: str, names: Iterable[str]) -> list[str]:
    """The tables of `names` that a query names."""
    return [name for name in names if re.search(rf"\b{name}\b", sql)]


def _raw_name(table: str) -> str:
    """The name under which a connection holds a table's Arrow rows (its view reads them)."""
    return f"frame_{table}"


def _reads_spine(sql: str) -> bool:
    """The block reads the active accounts (`spine`), so it waits for the revenue block."""
    return re.search(r"\bspine\b", sql) is not None


class _LineUp:
    """A block's aggregates by account: one row per account of `accounts` (account codes).

    A block's row for an account lands on that account's row; an account
    the block has no row for gets nulls there, rows of other accounts go.
    The codes are below `codes`, so each block's rows are found by position
    in an array over the codes (no hash table).
    """

    def __init__(self, accounts: pa.ChunkedArray, codes: int) -> None:
        self.wanted = accounts.to_numpy()
        self.codes = codes

    def __call__(self, block: pa.Table) -> dict[str, pa.ChunkedArray]:
        # Rows of accounts without a code (null) go to a spare slot that no account asks for.
        block_codes = pc.fill_null(block["account_id"], self.codes).to_numpy()
        row_of = np.full(self.codes + 1, -1, dtype=np.int64)
        row_of[block_codes] = np.arange(len(block_codes))
        found = row_of[self.wanted]
        rows = pa.array(found, mask=found < 0)
        return {name: block[name].take(rows) for name in block.column_names if name != "account_id"}


def _sorted_ids(tables: Tables) -> pa.Array:
    """The ids of the accounts that can be active (revenue, accounts and parents), sorted.

    Codes follow the text order. Rows of other tables whose account is not
    among them get no code: such an account has no revenue, so it is never
    active and its rows never reach a feature.
    """
    columns = [
        _arrow_ids(frame[column])
        for name, frame in tables.items()
        if name in (*REVENUE_TABLES, "accounts")
        for column in sorted(ACCOUNT_ID_COLUMNS)
        if column in frame.columns
    ]
    # One hash table over all the columns (a `unique` per column, then over their uniques,
    # costs about twice as much).
    ids = pc.unique(_one_array(columns))
    return pc.drop_null(ids).sort()


def _one_array(ids: list[pa.Array | pa.ChunkedArray]) -> pa.ChunkedArray:
    """Id columns as one chunked array of text (no copy), for one hash table over them all."""
    chunks = [chunk for array in ids for chunk in getattr(array, "chunks", [array])]
    return pa.chunked_array(chunks, pa.large_string())


def _arrow_ids(ids: pd.Series) -> pa.Array | pa.ChunkedArray:
    return pa.array(ids).cast(pa.large_string())


def _id_codes(
    ids: list[pa.Array | pa.ChunkedArray], dictionary: Callable[[], pa.Array]
) -> list[pa.Array | pa.ChunkedArray]:
    """Each id column's positions in `dictionary()` (int32; null for an id not in it).

    One lookup for all the columns (each lookup hashes the dictionary
    again). Event tables usually hold an account's rows together (exported
    by account): the ids of a column that come in runs (`run_starts`) are
    looked up once per run and the codes repeated (`features.id_runs`), which
    costs about half of looking every row up. The runs are found before the
    dictionary is asked for.
    """
    starts = [run_starts(array) for array in ids]
    looked_up = [
        array if first is None else take_rows(array, first)
        for array, first in zip(ids, starts, strict=True)
    ]
    codes = pc.index_in(_one_array(looked_up), value_set=dictionary())
    columns: list[pa.Array | pa.ChunkedArray] = []
    offset = 0
    for array, first, looked in zip(ids, starts, looked_up, strict=True):
        column = codes.slice(offset, len(looked))
        offset += len(looked)
        if first is not None:
            column = repeat_runs(column, first, len(array))
        columns.append(column)
    return columns


def _connect() -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB database whose dates are read in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _balanced_groups(tables: Tables, count: int) -> list[list[str]]:
    """The table names in at most `count` groups of about as many rows each, longest first."""
    groups: list[list[str]] = [[] for _ in range(count)]
    rows = [0] * count
    for name in sorted(tables, key=lambda name: len(tables[name]), reverse=True):
        smallest = rows.index(min(rows))
        groups[smallest].append(name)
        rows[smallest] += len(tables[name])
    return [group for group in groups if group]


def _arrow_tables(
    frames: Mapping[str, pd.DataFrame],
    dictionary: Callable[[], pa.Array],
    uncoded: Iterable[str] = (),
) -> dict[str, pa.Table]:
    """The contract columns of typed frames as Arrow tables for DuckDB.

    Account ids become their int32 positions in `dictionary()` (ids not in it
    become null), all the frames' ids in one lookup (each lookup hashes the
    dictionary again: 5-10 ms for 100,000 ids); the other columns are
    converted before the dictionary is asked for. Missing values (NaN, NaT,
    NA) become Arrow nulls, as DuckDB's pandas scan reads them. DuckDB scans
    the numbers and dates of an Arrow table several times faster than those
    of the pandas frame (no NaN check or date conversion per value on every
    pass). The `uncoded` tables keep their ids as text: they are coded for
    the rows a block reads (`FeatureSession._with_codes`).
    """
    given = {
        name: [column.name for column in CONTRACT[name].columns if column.name in frame.columns]
        for name, frame in frames.items()
    }
    converted = {
        (name, column): _arrow_column(frames[name][column])
        for name, columns in given.items()
        for column in columns
        if column not in ACCOUNT_ID_COLUMNS
    }
    id_columns = [
        (name, column)
        for name, columns in given.items()
        for column in columns
        if column in ACCOUNT_ID_COLUMNS
    ]
    uncoded = set(uncoded)
    for key in [key for key in id_columns if key[0] in uncoded]:
        id_columns.remove(key)
        converted[key] = _arrow_ids(frames[key[0]][key[1]])
    ids = [_arrow_ids(frames[name][column]) for name, column in id_columns]
    for key, codes in zip(id_columns, _id_codes(ids, dictionary), strict=True):
        converted[key] = codes
    return {
        name: pa.table({column: converted[name, column] for column in columns})
        for name, columns in given.items()
    }


def _arrow_column(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column as Arrow, its missing values (NaN, NaT, NA) as nulls.

    NumPy floats and dates are handed over without a copy of their values,
    which is several times cheaper than Arrow's generic pandas conversion
    (it copies NumPy dates value by value: 20 ms per 10 M). Whether any value
    is missing is read off the largest float (NaN wins) or the smallest date
    (NaT is the smallest integer), one pass without a mask; only a column
    with missing values gets its validity bitmap, packed by NumPy. Other
    dtypes take Arrow's conversion.
    """
    dtype = values.dtype
    if not (isinstance(dtype, np.dtype) and dtype.kind in "fM") or len(values) == 0:
        return pa.array(values, from_pandas=True)
    array = np.ascontiguousarray(values.to_numpy())
    if dtype.kind == "f":
        missing = np.isnan(array) if np.isnan(array.max()) else None
    else:
        array = array.view(np.int64)
        missing = array == NAT_INTEGER if array.min() == NAT_INTEGER else None
    validity = None
    if missing is not None:
        validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(dtype),
        len(array),
        [validity, pa.py_buffer(array)],
        null_count=-1 if missing is None else int(missing.sum()),
    )


# Where features are computed: DuckDB in this process, or Spark (features.spark_engine).
FEATURE_ENGINES: tuple[str, ...] = ("local", "spark")


def build_account_features(
    tables: Tables, as_of: AsOf, engine: str = "local", spark_master: str | None = None
) -> pd.DataFrame:
    """One row per account active at `as_of` (ARR > 0), features from rows dated up to `as_of`.

    Columns: `account_id` (str), `as_of` (datetime64[ns]), then the features of
    every family whose source table is given (`features.definitions.FEATURES`
    order; `arr` first). Numeric features are float64, categorical ones str;
    a value that cannot be known is missing, never a made-up zero. Raises
    FeatureError for an as-of date outside the data or unusable tables.
    `engine="spark"` runs the same query on Spark (master `spark_master`, else
    `$SPARK_MASTER`, else `local[*]`; see `features.spark_engine`).
    """
    if engine not in FEATURE_ENGINES:
        raise FeatureError(f"unknown engine {engine!r}; engines: {', '.join(FEATURE_ENGINES)}")
    if engine == "spark":
        from features.spark_engine import build_account_features_on_spark

        return build_account_features_on_spark(tables, as_of, master=spark_master)
    with FeatureSession(tables) as session:
        return session.account_features(as_of)


def arr_at(tables: Tables, dates: Iterable[AsOf]) -> pd.DataFrame:
    """ARR per account at each date: account_id, as_of, arr for the accounts with ARR > 0.

    Subscriptions: the sum of arr of the subscriptions active at the date
    (start_date <= t < end_date, or no end_date). Orders: the revenue of the
    365 days up to the date. An account absent at a date has ARR 0 there.
    """
    with FeatureSession(tables) as session:
        frames = [session.arr(day) for day in dates]
    if not frames:
        return pd.DataFrame(
            {
                "account_id": pd.Series(dtype="str"),
                "as_of": pd.Series(dtype="datetime64[ns]"),
                "arr": pd.Series(dtype="float64"),
            }
        )
    return pd.concat(frames, ignore_index=True)


def feature_frame_schema(specs: Iterable[FeatureSpec]) -> dict[str, str]:
    """Column -> pandas dtype of a feature frame with these features."""
    return {
        "account_id": "str",
        "as_of": "datetime64[ns]",
        **{spec.name: "str" if spec.kind == "categorical" else "float64" for spec in specs},
    }


def to_feature_dtypes(frame: pd.DataFrame, specs: Iterable[FeatureSpec]) -> pd.DataFrame:
    """The feature frame with the documented dtypes (ids and categories str, numbers float64)."""
    return frame.astype(feature_frame_schema(specs))


def source_row_counts(tables: Tables, as_of: AsOf) -> dict[str, int]:
    """Rows of each given table known at `as_of` (event date on or before it; accounts: all)."""
    cutoff = as_of_day(as_of) + pd.Timedelta(days=1)
    counts: dict[str, int] = {}
    for name, frame in tables.items():
        spec = CONTRACT.get(name)
        if spec is None:
            continue
        if spec.event_date is None or spec.event_date not in frame.columns:
            counts[name] = len(frame)
        else:
            counts[name] = int((frame[spec.event_date] < cutoff).sum())
    return counts


# ---------------------------------------------------------------- typed input


def available_columns(tables: Tables) -> dict[str, set[str]]:
    """Each table's contract columns that are given.

    Only the columns decide which features exist, never the values: a feature
    set that depended on the rows would change when later rows arrive, and a
    model would not find at scoring time the columns it was trained on. An
    optional column that is given but has no value in the rows known at the
    as-of date (the loader adds every contract column) yields a feature that
    is missing at that date (`FeatureSession.unknown_columns`).
    """
    return {
        name: {column.name for column in CONTRACT[name].columns if column.name in frame.columns}
        for name, frame in tables.items()
    }


def typed_contract_tables(tables: Tables) -> Tables:
    """The contract tables among `tables` with contract dtypes.

    Frames already typed (as `features.sources.load_sources` returns them) are
    kept as they are; others go through the loader's typing rules, and any
    error (unparseable dates or numbers, missing required values or columns)
    raises FeatureError naming table, column and rows.
    """
    unknown = [name for name in tables if name not in CONTRACT]
    if unknown:
        raise FeatureError(
            f"unknown table(s) {', '.join(map(repr, unknown))}; the contract tables are: "
            f"{', '.join(CONTRACT)}"
        )
    typed: Tables = {}
    to_coerce: Tables = {}
    for name, frame in tables.items():
        if name == "account_managers":
            continue  # not used for features
        if _has_contract_dtypes(name, frame):
            typed[name] = frame
        else:
            to_coerce[name] = frame
    if to_coerce:
        result = coerce_tables(to_coerce)
        errors = [issue for issue in result.issues if issue.severity == "error"]
        if errors:
            raise FeatureError(
                "the tables cannot be used for features:\n"
                + "\n".join(_issue_line(issue) for issue in errors)
            )
        for issue in result.issues:
            logger.warning("%s", issue.message)
        typed.update(result.tables)
    return typed


def _has_missing(values: pd.Series) -> bool:
    """Whether any value is missing: for NumPy floats and dates one pass without a mask."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fM" and len(values) > 0:
        array = values.to_numpy()
        if dtype.kind == "f":
            return bool(np.isnan(array.max()))
        return bool(array.view(np.int64).min() == NAT_INTEGER)
    return bool(values.isna().any())


def _issue_line(issue: Issue) -> str:
    examples = "; ".join(
        ", ".join(f"{key}={value}" for key, value in example.items())
        for example in issue.examples[:3]
    )
    return f"- {issue.message}" + (f" (e.g. {examples})" if examples else "")


def _has_contract_dtypes(name: str, frame: pd.DataFrame) -> bool:
    spec = CONTRACT[name]
    for column in spec.columns:
        if column.name not in frame.columns:
            if column.required:
                return False  # coerce_tables names the missing column
            continue
        dtype = frame[column.name].dtype
        if column.type in ("id", "string"):
            ok = isinstance(dtype, pd.StringDtype)
        elif column.type == "date":
            ok = pd.api.types.is_datetime64_dtype(dtype)  # naive only
        elif column.type == "number":
            ok = pd.api.types.is_float_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
        else:
            ok = pd.api.types.is_bool_dtype(dtype)
        if not ok:
            return False
        if column.required and _has_missing(frame[column.name]):
            return False  # coerce_tables reports the rows without a value
    return True


__all__ = [
    "FEATURE_META_COLUMNS",
    "REVENUE_SOURCE",
    "DataPeriod",
    "FeatureError",
    "FeatureSession",
    "arr_at",
    "as_of_day",
    "build_account_features",
    "check_as_of",
    "compile_feature_sql",
    "data_period",
    "included_features",
    "source_row_counts",
]
