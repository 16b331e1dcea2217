"""Loading a company's data through its `sources.yaml` (the data contract).

```yaml
name: acme
tables:
  accounts:
    path: crm/accounts.csv               # CSV, Parquet or JSON, by extension
    columns: {account_id: Id, segment: Tier}
  usage:
    path: exports/usage_*.parquet         # a glob reads several files as one table
  orders:
    sql: >                                # any DuckDB query returning contract columns
      SELECT CustomerID AS account_id, InvoiceDate AS date, Quantity * UnitPrice AS amount
      FROM read_csv('orders.csv')
```

Paths, in `path` and inside `sql`, are relative to the folder of the YAML
file. A `path` table may also give `format` (csv / parquet / json, when the
extension does not say) and `read_options` (passed to DuckDB's `read_csv`,
`read_parquet` or `read_json`, e.g. `{delim: ";"}`). CSV files are read as
text and typed by the contract's rules (so ids keep their leading zeros);
JSON ids as the text of their values (so integer ids are exact at any size).
A CSV quote that never closes is an error naming its line, and a quoted
value over several lines a warning naming its row.

`load_sources` returns typed contract frames (see `features.typed_tables`),
an `accounts` table derived from the revenue table's ids when none is given,
the validation report, and a content fingerprint per table. Problems that
make a table unreadable (bad YAML, unknown table, missing file, SQL error,
missing required column) raise `SourcesError` naming every such problem.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.contract import CONTRACT, Tables
from features.issues import Issue, Rule, TableLoad, ValidationReport
from features.typed_tables import (
    ColumnSelection,
    TypedTable,
    empty_contract_frame,
    first_lines,
    parsed_value_sql,
    quote_identifier,
    quote_literal,
    raw_select_sql,
    select_columns,
    type_raw_table,
    typing_connection,
    unknown_table_issue,
)
from features.validation import check_loaded_tables

logger = logging.getLogger(__name__)

FileFormat = Literal["csv", "parquet", "json"]

FORMAT_BY_SUFFIX: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")
READ_FUNCTIONS: dict[FileFormat, str] = {
    "csv": "read_csv",
    "parquet": "read_parquet",
    "json": "read_json",
}
# CSV is read as text so that the contract's typing rules apply (and ids keep leading zeros).
DEFAULT_READ_OPTIONS: dict[FileFormat, dict[str, Any]] = {
    "csv": {"all_varchar": True},
    "parquet": {},
    "json": {},
}
# The columns read_parquet adds with each row's position in its file and the file's name.
PARQUET_ROW_NUMBER = "file_row_number"
PARQUET_FILE_NAME = "__source_file"
# A raw row's 0-based position in its source (across the files of a glob, in their order).
SOURCE_ROW = "__source_row"
# The column a split table is partitioned by (`split_sources`): the folder `<table>/__partition=<k>`.
PARTITION_COLUMN = "__partition"
# The DuckDB table of the accounts that have a parent, with their parent group (`AccountPartition`),
# its columns, and the file `split_sources` writes it to.
ACCOUNT_GROUPS = "__account_groups"
GROUP_ACCOUNT_COLUMN = "__group_account"
GROUP_COLUMN = "__group"
_ACCOUNT_KEY = "__account_key"  # a row's parsed account id while it is split
_LINE_BREAK = "__line_break"  # whether a raw CSV row holds a value over several lines
ACCOUNT_GROUPS_FILE = "__account_groups.parquet"
# How much of a failing query the error message shows.
QUERY_PREVIEW_CHARS = 300

# A CSV or JSON file this small is checked for being empty (white space or `[]`).
EMPTY_FILE_MAX_BYTES = 64

_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# DuckDB's names for the copies of a repeated CSV header (`arr_1`) and for headerless columns.
_RENAMED_COPY = re.compile(r"^(.*)_\d+$")
_GENERATED_NAME = re.compile(r"^column\d+$")
_GLOB_CHARS = re.compile(r"[*?\[]")
# DuckDB's error for a CSV quote that never closes (its line and first line), and its file.
_DUCKDB_UNTERMINATED_QUOTE = re.compile(
    r"CSV Error on Line: (\d+)\s*\n(?:Original Line: )?([^\n]*)(?s:.*)unterminated quote"
)
_DUCKDB_ERROR_FILE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)
# The types DuckDB guesses for a JSON column of numbers (read as JSON text when they are ids).
_JSON_NUMBER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UHUGEINT", "DOUBLE"}
)


class SourcesError(Exception):
    """A `sources.yaml` that cannot be loaded; `issues` names every problem found."""

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.issues: list[Issue] = issues or [
            Issue(None, None, Rule.INVALID_CONFIG, "error", 0, message)
        ]

    @classmethod
    def from_issues(cls, issues: list[Issue]) -> SourcesError:
        return cls("\n".join(issue.message for issue in issues), issues)


class TableSource(BaseModel):
    """Where one contract table comes from: a file (`path`) or a DuckDB query (`sql`)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    sql: str | None = None
    columns: dict[str, str] = Field(
        default_factory=dict, description="contract column -> source column"
    )
    format: FileFormat | None = None
    read_options: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> TableSource:
        if (self.path is None) == (self.sql is None):
            raise ValueError("give exactly one of `path` or `sql`")
        if self.sql is not None and (self.format or self.read_options):
            raise ValueError("`format` and `read_options` apply to `path` only")
        for option in self.read_options:
            if not _OPTION_NAME.match(option):
                raise ValueError(f"read option {option!r} is not a valid option name")
        return self


class SourcesConfig(BaseModel):
    """The parsed `sources.yaml`."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    tables: dict[str, TableSource]


@dataclass(frozen=True)
class SplitTable:
    """One table of `SplitSources`: where its partitions are, and what loading it reported."""

    folder: Path  # holds `__partition=<k>/*.parquet`
    source: str  # the label of the original source in the report ("parquet usage/*.parquet")
    ignored_columns: list[str]
    issues: list[Issue] = field(default_factory=list)  # about the whole source (partition 0's)


@dataclass(frozen=True)
class SplitSources:
    """The account-keyed tables of a `sources.yaml` split once into `count` partitions.

    Written by `split_sources`: each table's raw rows (its contract columns as
    read, before any typing, so that loading a partition types and checks them
    as loading the original would) with their row number in the original
    source (`SOURCE_ROW`, so that issues name the user's rows), one folder of
    Parquet files per partition. `fingerprints` are those of the original
    files (or query results). Tables not in `tables` (not keyed by account, or
    empty) are read from the sources as before. `groups` is the Parquet file of
    the accounts' parent groups (`AccountPartition`), None when no account has
    a parent.
    """

    folder: Path
    count: int
    tables: dict[str, SplitTable] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    groups: Path | None = None


@dataclass(frozen=True)
class AccountPartition:
    """One of `count` disjoint parts of the accounts: `hash(group) % count = index`.

    An account's group is its parent group, the one `parent_arr_share` (features.
    definitions, FIRMOGRAPHICS) sums over: the smallest `parent_account_id` the
    `accounts` table gives it (its direct parent, whether or not that is an
    account), else the account itself (also for an id without an `accounts` row).
    So every partition holds whole parent groups, and the features that look
    across the accounts of a group come out as over the whole portfolio.

    Loading a partition keeps, in every table keyed by account, only the rows of
    the accounts in it: read from the partition's own files when the sources
    were split once (`split`, see `split_sources`), otherwise filtered in DuckDB
    as the files are scanned (every partition scans every file; the groups are
    read from the `accounts` source first); the rest never reaches memory.
    `account_managers` is read whole. All rows of one account land in the same
    partition, so per-account rules (duplicate ids, orphans) hold within it.
    Files are hashed for the fingerprints in partition 0 only (`with_fingerprints`).
    """

    index: int
    count: int
    split: SplitSources | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} is not one of 0..{self.count - 1}")
        if self.split is not None and self.split.count != self.count:
            raise ValueError(
                f"the sources were split into {self.split.count} partitions, not {self.count}"
            )

    @property
    def with_fingerprints(self) -> bool:
        return self.index == 0

    def row_filter(self, table: str, grouped: bool = False) -> str | None:
        """The DuckDB condition on `table`'s typed columns (`features.typed_tables.type_raw_table`);
        None when the table is read whole.

        `grouped`: some accounts have a parent (the connection holds
        `ACCOUNT_GROUPS`): an account in it is in the partition of its group,
        any other in its own (a row without an account id too, as `hash(NULL)`).
        So the rows kept are those of the partition by their own id, except the
        few accounts whose group puts them in or out of it: one uncorrelated `IN`
        over those, which DuckDB runs as a hash join (a correlated lookup over
        the parsed id ran row by row).
        """
        if not is_keyed_by_account(table) or self.count == 1:
            return None
        own = f"{partition_key_sql(self.count)} = {self.index}"
        if not grouped:
            return own
        moved = (
            f"SELECT {GROUP_ACCOUNT_COLUMN} FROM {ACCOUNT_GROUPS} "
            f"WHERE (hash({GROUP_COLUMN}) % {self.count} = {self.index}) "
            f"!= (hash({GROUP_ACCOUNT_COLUMN}) % {self.count} = {self.index})"
        )
        return f"(({own}) != coalesce({{account_id}} IN ({moved}), false))"


def partition_key_sql(count: int) -> str:
    """The partition of a row as DuckDB SQL over its parsed `{account_id}` (a format field),
    for an account without a parent group (see `AccountPartition`)."""
    return f"hash({{account_id}}) % {count}"


def is_keyed_by_account(table: str) -> bool:
    """Whether contract `table` has an `account_id` column (split into partitions)."""
    return "account_id" in CONTRACT[table].column_names


@dataclass(frozen=True)
class LoadedSources:
    """Typed contract tables loaded through a `sources.yaml`, with the report and fingerprints."""

    name: str
    path: Path
    base_dir: Path
    config: SourcesConfig
    tables: Tables
    report: ValidationReport
    # table name -> "sha256:<hex>" of the file(s) read, or of the query result for `sql`.
    fingerprints: dict[str, str]

    def raise_for_errors(self) -> LoadedSources:
        """Self when the data is usable; otherwise SourcesError listing the errors."""
        if self.report.ok:
            return self
        raise SourcesError.from_issues(self.report.errors)


def read_sources_config(path: str | Path) -> SourcesConfig:
    """Parse and check a `sources.yaml` (structure, table and column names); no data is read."""
    path = Path(path)
    if not path.is_file():
        raise SourcesError(
            f"sources file {str(path)!r} does not exist",
            [
                Issue(
                    None,
                    None,
                    Rule.FILE_NOT_FOUND,
                    "error",
                    0,
                    f"sources file {str(path)!r} does not exist",
                )
            ],
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise SourcesError(f"{path} is not valid YAML: {error}") from None
    except OSError as error:
        raise SourcesError(f"cannot read {path}: {error.strerror or error}") from None
    if not isinstance(document, dict):
        raise SourcesError(
            f"{path} must be a mapping with a `tables:` key (see docs/data-contract.md)"
        )
    try:
        config = SourcesConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc']) or '(top level)'}: {detail['msg']}"
            for detail in error.errors()
        )
        raise SourcesError(f"{path} does not follow the sources.yaml format: {problems}") from None

    issues = [unknown_table_issue(table) for table in config.tables if table not in CONTRACT]
    for table, source in config.tables.items():
        if table not in CONTRACT:
            continue
        allowed = CONTRACT[table].column_names
        for column in source.columns:
            if column not in allowed:
                issues.append(
                    Issue(
                        table,
                        column,
                        Rule.UNKNOWN_COLUMN,
                        "error",
                        0,
                        f"tables.{table}.columns maps {column!r}, which is not a column of "
                        f"{table}; its columns are: {', '.join(allowed)}",
                    )
                )
        if source.path is not None and source.format is None and _file_format(source.path) is None:
            issues.append(
                Issue(
                    table,
                    None,
                    Rule.INVALID_CONFIG,
                    "error",
                    0,
                    f"tables.{table}.path {source.path!r}: the extension does not say the "
                    "format; add `format: csv` (or parquet, json)",
                )
            )
    if issues:
        raise SourcesError.from_issues(issues)
    return config


def load_sources(path: str | Path, partition: AccountPartition | None = None) -> LoadedSources:
    """Load every table of a `sources.yaml`, typed to the contract and validated.

    Raises SourcesError when a table cannot be read at all; row-level problems
    (excluded rows, rule violations) are in `.report` instead. With a
    `partition`, only the rows of its accounts are loaded and validated (see
    `AccountPartition`; the nightly job runs large portfolios part by part).
    """
    path = Path(path)
    config = read_sources_config(path)
    base_dir = path.resolve().parent
    name = config.name or base_dir.name
    files = _source_files(config, base_dir)
    split = partition.split if partition is not None else None

    tables: Tables = {}
    loads: list[TableLoad] = []
    issues: list[Issue] = []
    fingerprints: dict[str, str] = {}
    fatal: list[Issue] = []
    with _connection(base_dir) as con:
        accounts_raw, grouped = None, False
        if partition is not None and partition.count > 1:
            if split is None:
                accounts_raw, grouped = _read_account_groups(con, config, files)
            elif split.groups is not None and any(
                is_keyed_by_account(table) and table not in split.tables for table in config.tables
            ):
                grouped = True  # a table read from its source is filtered by group
                con.execute(
                    f"CREATE TEMP TABLE {ACCOUNT_GROUPS} AS "
                    f"SELECT * FROM read_parquet({quote_literal(str(split.groups))})"
                )
        for table, source in config.tables.items():
            started = time.perf_counter()
            try:
                if split is not None and table in split.tables:
                    assert partition is not None
                    outcome = _load_split_table(con, table, split.tables[table], partition.index)
                else:
                    outcome = _load_table(
                        con,
                        table,
                        source,
                        files.get(table, []),
                        read=not fatal,
                        row_filter=(
                            partition.row_filter(table, grouped) if partition is not None else None
                        ),
                        raw=accounts_raw if table == "accounts" else None,
                        source_issues=partition is None or partition.with_fingerprints,
                    )
            except duckdb.Error as error:
                fatal.append(_read_failure(table, source, error))
                continue
            if isinstance(outcome, list):  # the table's columns do not fit the contract
                fatal.extend(outcome)
                continue
            if outcome is None:  # an earlier table failed: checked, but not read
                continue
            typed, fingerprint = outcome
            tables[table] = typed.frame
            loads.append(typed.load)
            issues.extend(typed.issues)
            if partition is None or partition.with_fingerprints:
                fingerprints[table] = (
                    fingerprint
                    or (split.fingerprints.get(table) if split is not None else None)
                    or _files_fingerprint(files[table], base_dir)
                )
            logger.info(
                "loaded %s from %s: %d of %d rows in %.2fs",
                table,
                typed.load.source,
                typed.load.rows_loaded,
                typed.load.rows_read,
                time.perf_counter() - started,
            )
    if fatal:
        raise SourcesError.from_issues(fatal)

    completed, report = check_loaded_tables(tables, loads, issues, name=name, sources=str(path))
    return LoadedSources(name, path, base_dir, config, completed, report, fingerprints)


def split_sources(path: str | Path, count: int, folder: str | Path) -> SplitSources:
    """Write the account-keyed tables of a `sources.yaml` into `folder` as `count` partitions.

    One pass over each source (instead of one per partition): every raw row,
    its contract columns as read with its row number in the source
    (`SOURCE_ROW`), goes to `<folder>/<table>/__partition=<k>/` where
    `k = hash(parsed account_id) % count`, the partition `AccountPartition`
    gives it. Loading `AccountPartition(k, count, split)` then types and
    validates exactly the rows, values and row numbers a filtered scan of the
    sources would. The tables' columns are checked first, and a source that
    cannot be read raises SourcesError with the same issues `load_sources`
    names. A table whose column types Parquet does not keep, or without rows,
    is left out (read from the source). `folder` must be empty or missing;
    the caller removes it.
    """
    path = Path(path)
    config = read_sources_config(path)
    base_dir = path.resolve().parent
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = _source_files(config, base_dir)
    fatal: list[Issue] = []
    with _connection(base_dir) as con:
        con.execute(f"SET temp_directory = {quote_literal(str(folder / '.spill'))}")
        accounts_raw, grouped = (
            _read_account_groups(con, config, files) if count > 1 else (None, False)
        )
        groups = folder / ACCOUNT_GROUPS_FILE if grouped else None
        if groups is not None:
            con.execute(f"COPY {ACCOUNT_GROUPS} TO {quote_literal(str(groups))} (FORMAT parquet)")
        split = SplitSources(folder, count, groups=groups)
        for table, source in config.tables.items():
            started = time.perf_counter()
            keyed = is_keyed_by_account(table) and count > 1
            try:
                if table == "accounts" and accounts_raw is not None:
                    raw = accounts_raw
                    if fatal:  # an earlier table failed: checked, not read
                        accounts_raw.drop(con)
                        raw = None
                else:
                    raw = _raw_table(
                        con, table, source, files.get(table, []), read=keyed and not fatal
                    )
                if isinstance(raw, list):
                    fatal.extend(raw)
                    continue
                if raw is None:
                    continue
                split_table = _write_partitions(con, table, raw, folder / table, count, grouped)
                if split_table is not None:
                    split.tables[table] = split_table
                    split.fingerprints[table] = raw.fingerprint or _files_fingerprint(
                        files[table], base_dir
                    )
                raw.drop(con)
            except duckdb.Error as error:
                fatal.append(_read_failure(table, source, error))
                continue
            logger.info(
                "split %s into %d partitions in %.2fs%s",
                table,
                count,
                time.perf_counter() - started,
                "" if split_table is not None else " (not split: read from the source)",
            )
    shutil.rmtree(folder / ".spill", ignore_errors=True)
    if fatal:
        raise SourcesError.from_issues(fatal)
    return split


def _connection(base_dir: Path) -> duckdb.DuckDBPyConnection:
    con = typing_connection()
    con.execute(f"SET file_search_path = {quote_literal(str(base_dir))}")
    return con


def _source_files(config: SourcesConfig, base_dir: Path) -> dict[str, list[Path]]:
    """The files of each `path` table; SourcesError naming every table without any."""
    files: dict[str, list[Path]] = {}
    missing: list[Issue] = []
    for table, source in config.tables.items():
        if source.path is None:
            continue
        found = _matching_files(base_dir, source.path)
        if found:
            files[table] = found
        else:
            missing.append(
                Issue(
                    table,
                    None,
                    Rule.FILE_NOT_FOUND,
                    "error",
                    0,
                    f"{table}: file {source.path!r} does not exist "
                    f"(looked for {base_dir / source.path})",
                )
            )
    if missing:
        raise SourcesError.from_issues(missing)
    return files


@dataclass(frozen=True)
class _RawTable:
    """A source's chosen columns under their contract names, as read (a DuckDB view or table)."""

    relation: str | None  # None: every file is empty (no rows)
    label: str
    ignored_columns: list[str]
    row_number: str  # the expression of a row's 0-based position in the source
    is_view: bool = False
    fingerprint: str | None = None  # of the query result, for `sql` tables
    issues: list[Issue] = field(default_factory=list)  # warnings about the whole source

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.relation is not None:
            con.execute(f"DROP {'VIEW' if self.is_view else 'TABLE'} {self.relation}")


def _read_account_groups(
    con: duckdb.DuckDBPyConnection, config: SourcesConfig, files: dict[str, list[Path]]
) -> tuple[_RawTable | None, bool]:
    """The raw `accounts` source, read once, and whether some account has a parent.

    Creates `ACCOUNT_GROUPS` (`AccountPartition`) when one has: each account with
    a parent (its parsed id, as typing gives it) and the smallest of its parents.
    A source that cannot be read, or whose columns do not fit the contract, is
    left to loading it, which says what is wrong: (None, False).
    """
    source = config.tables.get("accounts")
    if source is None:
        return None, False
    try:
        raw = _raw_table(con, "accounts", source, files.get("accounts", []), read=True)
    except duckdb.Error:
        return None, False
    if not isinstance(raw, _RawTable):
        return None, False
    if raw.relation is None:
        return raw, False
    types = dict(
        (row[0], row[1]) for row in con.sql(f"DESCRIBE SELECT * FROM {raw.relation}").fetchall()
    )
    if "parent_account_id" not in types:
        return raw, False
    account = parsed_value_sql("accounts", "account_id", types["account_id"])
    parent = parsed_value_sql("accounts", "parent_account_id", types["parent_account_id"])
    con.execute(
        f"CREATE TEMP TABLE {ACCOUNT_GROUPS} AS "
        f"SELECT {account} AS {GROUP_ACCOUNT_COLUMN}, min({parent}) AS {GROUP_COLUMN} "
        f"FROM {raw.relation} WHERE {account} IS NOT NULL AND {parent} IS NOT NULL GROUP BY 1"
    )
    if con.sql(f"SELECT count(*) FROM {ACCOUNT_GROUPS}").fetchall()[0][0] == 0:
        con.execute(f"DROP TABLE {ACCOUNT_GROUPS}")
        return raw, False
    return raw, True


def _raw_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: TableSource,
    files: list[Path],
    *,
    read: bool,
) -> _RawTable | list[Issue] | None:
    """The raw relation of one table's source, after checking its columns against the contract.

    Returns the issues when its columns do not fit the contract, or None when
    `read` is false (only the columns were checked). Raises duckdb.Error when
    the source cannot be read or the query fails.
    """
    # Parquet files are read straight from the files (no copy in DuckDB; rows are
    # numbered across the files in their order); every other source is
    # materialised once, since it is scanned several times.
    if source.path is not None:
        # Empty files hold no rows: an empty table (the rules say whether that is an error).
        files = [file for file in files if not _is_empty_file(file, _source_format(source))]
        if not files:
            if not read:
                return None
            return _RawTable(None, f"{_source_format(source)} {source.path}", [], "rowid")
    direct = bool(files) and _source_format(source) == "parquet"
    relation_sql, label = _relation_sql(source, files, row_numbers=direct)
    source_types = {
        row[0]: row[1]
        for row in con.sql(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()
        if not (direct and row[0] in (PARQUET_ROW_NUMBER, PARQUET_FILE_NAME))
    }
    source_columns = list(source_types)
    quoted: list[Path] = []
    if _source_format(source) == "csv":
        quoted = _quoted_files(source, files)
        unterminated = _unterminated_quote_issues(con, table, source, quoted)
        if unterminated:
            return unterminated
    selection = select_columns(table, source_columns, source.columns)
    duplicated = _duplicated_header_issues(con, table, source, files, source_columns)
    if selection.issues or duplicated:
        return _no_header_issues(table, source, source_columns) + duplicated + selection.issues
    if not read:
        return None
    if _source_format(source) == "json":
        relation_sql = _json_relation_with_exact_text(table, source, files, source_types, selection)
    raw_relation = quote_identifier(f"raw_{table}")
    if direct:
        con.execute(
            f"CREATE TEMP VIEW {raw_relation} AS "
            + raw_select_sql(
                selection,
                relation_sql,
                extra=[f"{_parquet_row_number(con, files)} AS {SOURCE_ROW}"],
            )
        )
        return _RawTable(raw_relation, label, selection.ignored, SOURCE_ROW, is_view=True)
    # a quoted value may run over several lines: flagged while the rows are read (a quote left
    # open merges the rows after it into one value, see `_line_break_warnings`)
    line_breaks = (
        [
            f"contains({quote_identifier(name)}, chr({code}))"
            for name, type_name in source_types.items()
            if type_name == "VARCHAR"
            for code in (10, 13)
        ]
        if quoted
        else []
    )
    extra = [f"({' OR '.join(line_breaks)}) AS {_LINE_BREAK}"] if line_breaks else []
    con.execute(
        f"CREATE TEMP TABLE {raw_relation} AS " + raw_select_sql(selection, relation_sql, extra)
    )
    warnings = _line_break_warnings(con, table, source, raw_relation) if line_breaks else []
    fingerprint = (
        _result_fingerprint(con, raw_relation, source.sql) if source.sql is not None else None
    )
    return _RawTable(
        raw_relation, label, selection.ignored, "rowid", fingerprint=fingerprint, issues=warnings
    )


def _json_relation_with_exact_text(
    table: str,
    source: TableSource,
    files: list[Path],
    source_types: dict[str, str],
    selection: ColumnSelection,
) -> str:
    """The `read_json` of a JSON source with its id and text columns read as JSON text.

    DuckDB guesses a column of numbers as BIGINT, UBIGINT, HUGEINT or DOUBLE: an
    integer id beyond 2**64 (or one in a column that also holds fractions) would
    come back as a rounded DOUBLE. Read as JSON, every value keeps the text it
    has in the file (`features.typed_tables` takes a JSON column's scalars as
    their text), so ids are exact whatever their size. The other columns keep
    the types DuckDB found; a `columns` read option given by the user is kept.
    """
    text_types = {"id", "string"}
    text_sources = {
        selection.sources[column.name]
        for column in CONTRACT[table].columns
        if column.type in text_types and column.name in selection.sources
    }
    retyped = {
        name: "JSON"
        for name, type_name in source_types.items()
        if name in text_sources and type_name.upper() in _JSON_NUMBER_TYPES
    }
    if "columns" in source.read_options or not retyped:
        return _relation_sql(source, files)[0]
    columns = {name: retyped.get(name, type_name) for name, type_name in source_types.items()}
    exact = source.model_copy(update={"read_options": {**source.read_options, "columns": columns}})
    return _relation_sql(exact, files)[0]


def _load_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: TableSource,
    files: list[Path],
    *,
    read: bool,
    row_filter: str | None = None,
    raw: _RawTable | None = None,
    source_issues: bool = True,
) -> tuple[TypedTable, str | None] | list[Issue] | None:
    """Read and type one table (only the rows `row_filter` keeps, see `type_raw_table`).

    Returns the typed table with its fingerprint (None for `path` tables, whose
    files are hashed by the caller), the issues when its columns do not fit the
    contract, or None when `read` is false (only the columns were checked).
    `raw`: the table's source already read (`_read_account_groups`).
    `source_issues`: report the warnings about the whole source (one partition does).
    Raises duckdb.Error when the source cannot be read or the query fails.
    """
    if raw is not None and not read:
        raw.drop(con)
        return None
    if raw is None:
        raw = _raw_table(con, table, source, files, read=read)
    if raw is None or isinstance(raw, list):
        return raw
    if raw.relation is None:
        return TypedTable(empty_contract_frame(table), TableLoad(table, raw.label, 0, 0)), None
    typed = type_raw_table(
        con,
        table,
        raw.relation,
        source=raw.label,
        ignored_columns=raw.ignored_columns,
        row_number=raw.row_number,
        row_filter=row_filter,
    )
    raw.drop(con)
    if source_issues and raw.issues:
        typed = dataclasses.replace(typed, issues=[*raw.issues, *typed.issues])
    return typed, raw.fingerprint


def _write_partitions(
    con: duckdb.DuckDBPyConnection,
    table: str,
    raw: _RawTable,
    folder: Path,
    count: int,
    grouped: bool = False,
) -> SplitTable | None:
    """Copy `raw`'s rows with their row numbers into `folder`, one subfolder per partition
    (`partition_key_sql`; `grouped`: by the accounts' parent groups in `ACCOUNT_GROUPS`).

    None (nothing kept) when the table has no rows or Parquet would not keep
    the types of its columns.
    """
    if raw.relation is None:
        return None
    raw_types = dict(
        (row[0], row[1]) for row in con.sql(f"DESCRIBE SELECT * FROM {raw.relation}").fetchall()
    )
    if "account_id" not in raw_types:
        return None
    account = parsed_value_sql(table, "account_id", raw_types["account_id"])
    row_number = "" if raw.row_number == SOURCE_ROW else f", {raw.row_number} AS {SOURCE_ROW}"
    if grouped:  # the partition of the account's parent group: one hash join on the parsed id
        group = f"coalesce(found.{GROUP_COLUMN}, source_rows.{_ACCOUNT_KEY})"
        rows = (
            f"SELECT source_rows.* EXCLUDE ({_ACCOUNT_KEY}), "
            f"{partition_key_sql(count).format(account_id=group)} AS {PARTITION_COLUMN} "
            f"FROM (SELECT *{row_number}, {account} AS {_ACCOUNT_KEY} FROM {raw.relation}) "
            f"AS source_rows LEFT JOIN {ACCOUNT_GROUPS} AS found "
            f"ON found.{GROUP_ACCOUNT_COLUMN} = source_rows.{_ACCOUNT_KEY}"
        )
    else:
        key = partition_key_sql(count).format(account_id=account)
        rows = f"SELECT *{row_number}, {key} AS {PARTITION_COLUMN} FROM {raw.relation}"
    # the rows are sorted by their row number on loading: no order to keep while copying
    # (but a CSV's rows must be materialised in order: their rowid is their row number)
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(
            f"COPY ({rows}) "
            f"TO {quote_literal(str(folder))} (FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}))"
        )
    except duckdb.Error as error:
        # a type Parquet cannot hold, or a source unreadable past its first rows: loading
        # from the source says what is wrong, as it would without the split
        logger.info(
            "%s cannot be split (%s): read from the source", table, first_lines(str(error), 2)
        )
        shutil.rmtree(folder, ignore_errors=True)
        return None
    finally:
        con.execute("RESET preserve_insertion_order")
    written = sorted(folder.glob(f"{PARTITION_COLUMN}=*/*.parquet"))
    if not written:
        return None
    split_types = dict(
        (row[0], row[1])
        for row in con.sql(
            f"DESCRIBE SELECT * FROM read_parquet({quote_literal(str(written[0]))}, "
            "hive_partitioning = false)"
        ).fetchall()
    )
    if split_types != {**raw_types, SOURCE_ROW: split_types.get(SOURCE_ROW)}:
        logger.info(
            "%s: Parquet does not keep the types of its columns (%s as %s): read from the source",
            table,
            raw_types,
            split_types,
        )
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return SplitTable(folder, raw.label, raw.ignored_columns, raw.issues)


def _load_split_table(
    con: duckdb.DuckDBPyConnection, table: str, split: SplitTable, index: int
) -> tuple[TypedTable, None]:
    """Type one partition of a table written by `split_sources` (its rows in source order)."""
    files = sorted((split.folder / f"{PARTITION_COLUMN}={index}").glob("*.parquet"))
    if files:
        relation = (
            f"read_parquet({_sql_value([str(file) for file in files])}, hive_partitioning = false)"
        )
    else:  # no account of this partition has rows in the table: its columns, no rows
        any_files = quote_literal(str(split.folder / f"{PARTITION_COLUMN}=*" / "*.parquet"))
        relation = f"(SELECT * FROM read_parquet({any_files}, hive_partitioning = false) LIMIT 0)"
    typed = type_raw_table(
        con,
        table,
        relation,
        source=split.source,
        ignored_columns=split.ignored_columns,
        row_number=SOURCE_ROW,
        in_row_order=True,
    )
    if index == 0 and split.issues:
        typed = dataclasses.replace(typed, issues=[*split.issues, *typed.issues])
    return typed, None


def _parquet_row_number(con: duckdb.DuckDBPyConnection, files: list[Path]) -> str:
    """A row's 0-based position across the Parquet `files` read in order (as one table).

    Raises duckdb.Error when a file's metadata cannot be read.
    """
    if len(files) == 1:
        return PARQUET_ROW_NUMBER
    names = [str(file) for file in files]
    rows = dict(
        con.execute("SELECT file_name, num_rows FROM parquet_file_metadata(?)", [names]).fetchall()
    )
    offsets, start = [], 0
    for name in names:
        offsets.append(f"WHEN {quote_literal(name)} THEN {start}")
        start += int(rows[name])
    return f"{PARQUET_ROW_NUMBER} + CASE {PARQUET_FILE_NAME} {' '.join(offsets)} END"


def _is_empty_file(file: Path, file_format: FileFormat | None) -> bool:
    """A CSV or JSON file without rows: 0 bytes, only white space, or an empty JSON array."""
    if file_format == "parquet":  # a Parquet file always has a footer: DuckDB says what is wrong
        return False
    size = file.stat().st_size
    if size == 0:
        return True
    if size > EMPTY_FILE_MAX_BYTES or file.suffix.lower() in COMPRESSION_SUFFIXES:
        return False
    return file.read_bytes().strip() in (b"", b"[]")


def _quoted_files(source: TableSource, files: list[Path]) -> list[Path]:
    """The files of a CSV source that may hold a quoted value (they hold its quote character;
    zstd files are not read here, so they may)."""
    quote = str(source.read_options.get("quote", '"'))
    if not quote:
        return []
    return [
        file
        for file in files
        if file.suffix.lower() in COMPRESSION_SUFFIXES[1:] or _holds_quote(file, quote.encode())
    ]


def _line_break_warnings(
    con: duckdb.DuckDBPyConnection, table: str, source: TableSource, raw_relation: str
) -> list[Issue]:
    """A warning for the rows of a CSV source with a quoted value over several lines (and the
    flag column `_LINE_BREAK` dropped from `raw_relation`).

    That is valid CSV (a note, an address), read as one value; but a quote left
    open and closed by a stray quote further down reads the same, the rows in
    between merged into one value: the warning names the first such row.
    """
    count, first = con.execute(
        f"SELECT count(*) FILTER (WHERE {_LINE_BREAK}), min(rowid) FILTER (WHERE {_LINE_BREAK}) "
        f"FROM {raw_relation}"
    ).fetchall()[0]
    con.execute(f"ALTER TABLE {raw_relation} DROP COLUMN {_LINE_BREAK}")
    if not count:
        return []
    return [
        Issue(
            table,
            None,
            Rule.MULTILINE_VALUE,
            "warning",
            int(count),
            f"{int(count):,} row(s) of {source.path!r} hold a quoted value that runs over "
            f"several lines, the first at row {int(first) + 1:,}: valid CSV, read as one value; "
            "but if a quote was left open there, the rows up to the next quote were merged into "
            "that value and are missing",
            [{"row": int(first) + 1}],
        )
    ]


def _unterminated_quote_issues(
    con: duckdb.DuckDBPyConnection, table: str, source: TableSource, files: list[Path]
) -> list[Issue]:
    """An error for a CSV file with a quoted value that opens and is never closed.

    DuckDB's sniffer, finding that a `"` does not close, reads such a file
    without quoting (the quotes become text and values with the delimiter split
    apart) or as one column, so the rows would load wrong, or fail with a
    misleading "no column" error. Only then (and when the file holds a `"`) are
    its lines read here, to name the line where the quote opens. (A quote that
    never closes in a file the sniffer reads with quoting makes DuckDB fail,
    see `_read_failure`.) Nothing is checked when `read_options` give `quote`.
    `files`: those that hold a `"` (`_quoted_files`).
    """
    if "quote" in source.read_options:
        return []
    for file in files:
        if file.suffix.lower() in COMPRESSION_SUFFIXES[1:]:
            continue  # zstd: not read here (DuckDB's own checks apply)
        options = {**DEFAULT_READ_OPTIONS["csv"], **source.read_options}
        if Path(source.path or "").suffix.lower() == ".tsv":
            options.setdefault("delim", "\t")
        arguments = ", ".join(
            [
                quote_literal(str(file)),
                *(f"{name} = {_sql_value(v)}" for name, v in options.items()),
            ]
        )
        try:
            delimiter, quote, columns = con.execute(
                f"SELECT Delimiter, Quote, len(Columns) FROM sniff_csv({arguments})"
            ).fetchall()[0]
        except duckdb.Error:
            continue  # reading the file says what is wrong
        if quote == '"' and columns > 1:
            continue
        # read as one column, the sniffed delimiter is not the file's: any usual one opens a value
        given = source.read_options.get("delim", options.get("delim"))
        delimiters = (str(given),) if given else (delimiter,) if columns > 1 else COMMON_DELIMITERS
        found = _unterminated_quote_line(file, delimiters)
        if found is None:
            continue
        line, text = found
        how = "as a single column" if columns <= 1 else "with the quotes as plain text"
        return [
            _unterminated_quote_error(
                table,
                source,
                line,
                text,
                file.name if len(files) > 1 else None,
                f" DuckDB would read the file {how}.",
            )
        ]
    return []


def _unterminated_quote_error(
    table: str, source: TableSource, line: int, text: str, file: str | None, how: str = ""
) -> Issue:
    """The error for a CSV quote that opens on `line` (of `file`, when the source has several)
    and is never closed."""
    text = text.strip()[:UNTERMINATED_QUOTE_PREVIEW]
    return Issue(
        table,
        None,
        Rule.READ_ERROR,
        "error",
        0,
        f"{table}: line {line:,} of {source.path!r}"
        + (f" ({file})" if file else "")
        + f" opens a quoted value that is never closed (an unterminated quote): {text!r}.{how}"
        ' Close the quote (a quote inside a quoted value is written twice: ""), or set '
        "`read_options: {quote: ''}` if quotes are plain text in this file",
        [{"line": line, "text": text}],
    )


UNTERMINATED_QUOTE_PREVIEW = 80
COMMON_DELIMITERS = (",", ";", "\t", "|")


def _holds_quote(file: Path, quote: bytes = b'"', chunk: int = 1 << 24) -> bool:
    """Whether a (text or gzip) file holds `quote` at all (read in chunks)."""
    opener = gzip.open if file.suffix.lower() == ".gz" else open
    with opener(file, "rb") as handle:
        while block := handle.read(chunk):
            if quote in block:
                return True
    return False


def _unterminated_quote_line(file: Path, delimiters: tuple[str, ...]) -> tuple[int, str] | None:
    """(1-based line, its start) of the first line of a CSV file where a quote opens a value
    (at the start of the line or just after one of `delimiters`) and is not closed on that line.

    A `"` inside an unquoted value (`12" screen`) is text; `""` inside a quoted
    value is a quote. Only lines holding a `"` are looked at.
    """
    opener = gzip.open if file.suffix.lower() == ".gz" else open
    separators = tuple(delimiter.encode() for delimiter in delimiters)
    with opener(file, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if b'"' not in line:
                continue
            inside, position = False, line.find(b'"')
            while position != -1:
                if inside:
                    if line[position + 1 : position + 2] == b'"':  # an escaped quote
                        position += 1
                    else:
                        inside = False
                else:
                    before = line[:position].rstrip(b" ")
                    inside = not before or before.endswith(separators)
                position = line.find(b'"', position + 1)
            if inside:
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                return number, text[:UNTERMINATED_QUOTE_PREVIEW]
    return None


def _duplicated_header_issues(
    con: duckdb.DuckDBPyConnection,
    table: str,
    source: TableSource,
    files: list[Path],
    source_columns: list[str],
) -> list[Issue]:
    """Errors for a CSV header that names a column the table reads more than once.

    DuckDB renames the copies (`arr`, `arr_1`), so the header line itself is
    read (only when names look renamed) to tell copies from real `_1` columns.
    """
    lowered = {column.lower() for column in source_columns}
    renamed = [_RENAMED_COPY.match(column) for column in source_columns]
    if (
        _source_format(source) != "csv"
        or source.read_options.get("header") is False
        or not any(match and match.group(1).lower() in lowered for match in renamed)
    ):
        return []
    headerless = source.model_copy(
        update={"read_options": {**source.read_options, "header": False}}
    )
    relation_sql, _ = _relation_sql(headerless, files[:1])
    rows = con.execute(f"SELECT * FROM {relation_sql} LIMIT 1").fetchall()
    header = rows[0] if rows else ()
    names = [str(name).strip() for name in header if name is not None]
    feeds = {column.lower(): column for column in CONTRACT[table].column_names}
    feeds |= {source_name.lower(): column for column, source_name in source.columns.items()}
    issues = []
    for name in dict.fromkeys(names):
        copies = [other for other in names if other.lower() == name.lower()]
        if len(copies) > 1 and name.lower() in feeds:
            issues.append(
                Issue(
                    table,
                    feeds[name.lower()],
                    Rule.DUPLICATE_COLUMN,
                    "error",
                    0,
                    f"{table}: the header of {source.path!r} names the column {name!r} "
                    f"{len(copies)} times ({', '.join(map(repr, copies))}), so it is not clear "
                    "which one to read; give each column its own name",
                )
            )
    return issues


def _no_header_issues(table: str, source: TableSource, source_columns: list[str]) -> list[Issue]:
    """An explanation when DuckDB found no header row in a CSV (it names columns column0, ...)."""
    if _source_format(source) != "csv" or not all(
        _GENERATED_NAME.match(column) for column in source_columns
    ):
        return []
    return [
        Issue(
            table,
            None,
            Rule.READ_ERROR,
            "error",
            0,
            f"{table}: {source.path!r} was read without a header row (its columns came out as "
            f"{', '.join(source_columns[:5])}{', ...' if len(source_columns) > 5 else ''}): "
            "the first line must name the columns and every line must have as many fields "
            "as the header; check the delimiter, or set read_options (delim, header, skip)",
        )
    ]


def _source_format(source: TableSource) -> FileFormat | None:
    if source.path is None:
        return None
    return source.format or _file_format(source.path)


def _file_format(path: str) -> FileFormat | None:
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    return FORMAT_BY_SUFFIX.get(suffixes[-1]) if suffixes else None


def _matching_files(base_dir: Path, path: str) -> list[Path]:
    full = base_dir / path
    if _GLOB_CHARS.search(path):
        return sorted(Path(match) for match in glob.glob(str(full), recursive=True))
    return [full] if full.is_file() else []


def _relation_sql(
    source: TableSource, files: list[Path], *, row_numbers: bool = False
) -> tuple[str, str]:
    """(DuckDB FROM-clause item for the source, a short label for the report)."""
    if source.sql is not None:
        query = source.sql.strip().rstrip(";").strip()
        return f"({query}) AS source_query", "sql"
    file_format = _source_format(source)
    assert source.path is not None and file_format is not None  # read_sources_config checked
    options = {**DEFAULT_READ_OPTIONS[file_format], **source.read_options}
    if Path(source.path).suffix.lower() == ".tsv":
        options.setdefault("delim", "\t")
    if row_numbers:
        options[PARQUET_ROW_NUMBER] = True
        if len(files) > 1:
            options["filename"] = PARQUET_FILE_NAME
    targets = (
        _sql_value([str(file) for file in files])
        if len(files) > 1
        else quote_literal(str(files[0]))
    )
    arguments = ", ".join(
        [targets, *(f"{option} = {_sql_value(value)}" for option, value in options.items())]
    )
    return f"{READ_FUNCTIONS[file_format]}({arguments})", f"{file_format} {source.path}"


def _sql_value(value: Any) -> str:
    """A YAML value as a DuckDB literal (for `read_options`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return quote_literal(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_sql_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{quote_literal(str(k))}: {_sql_value(v)}" for k, v in value.items())
            + "}"
        )
    raise SourcesError(f"read option value {value!r} is not a number, text, list or mapping")


def _read_failure(table: str, source: TableSource, error: duckdb.Error) -> Issue:
    detail = first_lines(str(error), 12)
    if source.sql is not None:
        query = " ".join(source.sql.split())
        preview = query[:QUERY_PREVIEW_CHARS] + ("..." if len(query) > QUERY_PREVIEW_CHARS else "")
        return Issue(
            table,
            None,
            Rule.SQL_ERROR,
            "error",
            0,
            f"{table}: the SQL query failed.\nquery: {preview}\nDuckDB: {detail}",
        )
    unterminated = _DUCKDB_UNTERMINATED_QUOTE.search(str(error))
    if unterminated is not None and _source_format(source) == "csv":
        file = _DUCKDB_ERROR_FILE.search(str(error))
        return _unterminated_quote_error(
            table,
            source,
            int(unterminated.group(1)),
            unterminated.group(2),
            Path(file.group(1).strip()).name if file and _is_glob(source) else None,
        )
    return Issue(
        table,
        None,
        Rule.READ_ERROR,
        "error",
        0,
        f"{table}: cannot read {source.path!r}.\nDuckDB: {detail}",
    )


def _is_glob(source: TableSource) -> bool:
    return source.path is not None and _GLOB_CHARS.search(source.path) is not None


def _files_fingerprint(files: list[Path], base_dir: Path) -> str:
    if len(files) == 1:
        with files[0].open("rb") as handle:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    combined = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        combined.update(
            f"{file.relative_to(base_dir) if file.is_relative_to(base_dir) else file}:{digest}\n".encode()
        )
    return "sha256:" + combined.hexdigest()


def _result_fingerprint(con: duckdb.DuckDBPyConnection, raw_relation: str, query: str) -> str:
    """An order-independent content hash of a query's (contract columns) result."""
    rows, row_hash_sum = con.sql(
        f"SELECT count(*), CAST(sum(hash(r)) AS VARCHAR) FROM {raw_relation} AS r"
    ).fetchall()[0]
    text = f"{' '.join(query.split())}\n{rows}\n{row_hash_sum}"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
