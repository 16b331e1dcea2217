"""The nightly job part by part: how many partitions, and putting the parts back together.

A large portfolio does not fit in memory as source rows (about 250 bytes a
row once loaded and typed), so the nightly job loads, validates and builds
features for one partition of the accounts at a time
(`features.sources.AccountPartition`: `hash(parent group) % K = k`, so the
feature that looks across accounts, an account's share of its parent group's
ARR, sees the whole group; the sources are first split once into one set of
files per partition, `features.sources.split_sources`) and keeps only what
the rest of the run needs: the feature rows, the validation report and the
few whole tables the portfolio analytics read (`PORTFOLIO_TABLES`). The
functions here are the pure pieces of that: choosing K from the sizes of the
sources, and merging the partitions' reports, data periods and unknown
columns into those of the whole portfolio. The result is the same as loading
everything at once (tested with K = 1 and K = 3).
"""

from __future__ import annotations

import glob
import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import pandas as pd

from features.build import DataPeriod
from features.contract import CONTRACT, REVENUE_TABLES, Tables
from features.issues import Issue, Rule, TableLoad, ValidationReport
from features.sources import SourcesConfig, TableSource
from features.validation import check_tables

logger = logging.getLogger(__name__)

# Whole tables the run keeps beside the features (portfolio analytics, outcomes, report).
PORTFOLIO_TABLES: tuple[str, ...] = (
    "accounts",
    "account_managers",
    "opportunities",
    *REVENUE_TABLES,
)

# Rules that compare rows of different accounts: checked once over the whole tables.
WHOLE_TABLE_RULES: frozenset[str] = frozenset(
    {
        Rule.DUPLICATE_ACCOUNT_ID,
        Rule.UNKNOWN_PARENT_ACCOUNT,
        Rule.DUPLICATE_OWNER_ID,
        Rule.UNKNOWN_OWNER_ID,
    }
)

# How an issue message counts the accounts it concerns (features.validation, orphan rows).
ACCOUNT_ID_COUNT = re.compile(r"\(([\d,]+) account id\(s\)\)")

# Bytes per row assumed for text sources (CSV, JSON) when estimating their rows (on the low side,
# so that the estimate errs towards more partitions).
TEXT_BYTES_PER_ROW = 40


# --------------------------------------------------------------------------- how many partitions


def estimated_source_rows(config: SourcesConfig, base_dir: Path) -> dict[str, int]:
    """Rows per `path` table: exact for Parquet (file metadata), estimated from the size of text files.

    Tables given as `sql` are not counted (only running the query would say).
    """
    rows: dict[str, int] = {}
    for table, source in config.tables.items():
        if source.path is None:
            continue
        files = _source_files(base_dir, source)
        if not files:
            continue
        if _is_parquet(source):
            with duckdb.connect() as con:
                counts = con.execute(
                    "SELECT file_name, max(num_rows) FROM parquet_file_metadata(?) "
                    "GROUP BY file_name",
                    [[str(file) for file in files]],
                ).fetchall()
            rows[table] = int(sum(count for _, count in counts))
        else:
            rows[table] = sum(file.stat().st_size for file in files) // TEXT_BYTES_PER_ROW
    return rows


def partition_count(source_rows: Mapping[str, int], rows_per_partition: int) -> int:
    """K: enough partitions that each holds about `rows_per_partition` source rows or fewer."""
    total = sum(source_rows.values())
    return max(1, math.ceil(total / rows_per_partition))


def _source_files(base_dir: Path, source: TableSource) -> list[Path]:
    assert source.path is not None
    pattern = base_dir / source.path
    if any(char in source.path for char in "*?["):
        return sorted(Path(match) for match in glob.glob(str(pattern), recursive=True))
    return [pattern] if pattern.is_file() else []


def _is_parquet(source: TableSource) -> bool:
    if source.format is not None:
        return source.format == "parquet"
    return Path(source.path or "").suffix.lower() in (".parquet", ".pq")


# --------------------------------------------------------------------------- merging the parts


def merge_periods(periods: Iterable[DataPeriod]) -> DataPeriod:
    """The data period of the whole portfolio from those of its partitions."""
    periods = list(periods)
    starts: dict[str, pd.Timestamp] = {}
    for period in periods:
        for table, start in period.table_starts.items():
            starts[table] = min(start, starts.get(table, start))
    return DataPeriod(
        min(period.start for period in periods), max(period.end for period in periods), starts
    )


def merge_unknown_columns(parts: Iterable[Mapping[str, set[str]]]) -> dict[str, set[str]]:
    """Columns no known row fills in any partition (a column is known if one partition knows it)."""
    merged: dict[str, set[str]] | None = None
    for unknown in parts:
        if merged is None:
            merged = {table: set(columns) for table, columns in unknown.items()}
        else:
            merged = {
                table: columns & set(unknown.get(table, set())) for table, columns in merged.items()
            }
    return merged or {}


def merge_reports(
    reports: list[ValidationReport], whole_tables: Tables, *, partitioned: bool
) -> ValidationReport:
    """The validation report of the whole portfolio from those of its partitions.

    Rows read and loaded add up per table, and so do the issues of the same
    table, column and rule (their examples are the first ones). Tables read
    whole in every partition (`account_managers`) count once; the rules that
    compare different accounts (`WHOLE_TABLE_RULES`) are checked again over
    `whole_tables`; a table is empty only if it is empty in every partition.
    """
    first = reports[0]
    if not partitioned:
        return first
    loads: dict[str, list[TableLoad]] = {}
    for report in reports:
        for load in report.tables:
            loads.setdefault(load.table, []).append(load)
    merged_loads = [_merged_load(parts) for parts in loads.values()]

    grouped: dict[tuple, list[Issue]] = {}
    for index, report in enumerate(reports):
        for issue in report.issues:
            if issue.rule in WHOLE_TABLE_RULES:
                continue
            if issue.table is not None and not _keyed_by_account(issue.table) and index > 0:
                continue  # read whole in every partition: counted in the first
            key = (issue.table, issue.column, issue.rule, issue.severity)
            grouped.setdefault(key, []).append(issue)
    issues = []
    for (table, _, rule, _), parts in grouped.items():
        if rule == Rule.EMPTY_TABLE and len(parts) < len(reports):
            continue  # rows in another partition
        if rule in (Rule.EMPTY_TABLE, Rule.NO_REVENUE_TABLE) or not _keyed_by_account(table):
            issues.append(parts[0])
        else:
            issues.append(_merged_issue(parts))
    whole = {
        name: frame
        for name, frame in whole_tables.items()
        if name in ("accounts", "account_managers")
    }
    issues += [issue for issue in check_tables(whole) if issue.rule in WHOLE_TABLE_RULES]
    return ValidationReport(
        issues=issues, tables=merged_loads, name=first.name, sources=first.sources
    )


def _keyed_by_account(table: str | None) -> bool:
    return table is not None and table in CONTRACT and "account_id" in CONTRACT[table].column_names


def _merged_load(parts: list[TableLoad]) -> TableLoad:
    first = parts[0]
    if not _keyed_by_account(first.table):
        return first
    return TableLoad(
        first.table,
        first.source,
        sum(part.rows_read for part in parts),
        sum(part.rows_loaded for part in parts),
        first.ignored_columns,
    )


def _merged_issue(parts: list[Issue]) -> Issue:
    """One issue for rows found in several partitions: counts add up, the first examples."""
    first = parts[0]
    if len(parts) == 1:
        return first
    count = sum(part.count for part in parts)
    examples = [example for part in parts for example in part.examples]
    if examples and all("row" in example for example in examples):
        examples.sort(key=lambda example: example["row"])
    prefix = f"{first.count:,} "
    message = (
        f"{count:,} " + first.message[len(prefix) :]
        if first.message.startswith(prefix)
        else first.message
    )
    # "(N account id(s))": an account is in one partition only, so these add up too
    ids = [ACCOUNT_ID_COUNT.search(part.message) for part in parts]
    if all(ids):
        total = sum(int(match.group(1).replace(",", "")) for match in ids if match)
        message = ACCOUNT_ID_COUNT.sub(f"({total:,} account id(s))", message, count=1)
    return Issue(
        first.table,
        first.column,
        first.rule,
        first.severity,
        count,
        message,
        examples[: max(len(part.examples) for part in parts)],
    )


def concat_tables(parts: list[Tables]) -> Tables:
    """Each table's rows from every partition, sorted by account (stable: an account's rows
    keep their order), so that the result does not depend on the number of partitions."""
    names = [name for name in parts[0]] if parts else []
    tables: Tables = {}
    for name in names:
        frames = [part[name] for part in parts if name in part]
        if not _keyed_by_account(name):
            tables[name] = frames[0]
            continue
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        tables[name] = frame.sort_values("account_id", kind="stable").reset_index(drop=True)
    return tables
