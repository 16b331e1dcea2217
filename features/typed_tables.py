"""Raw tables typed to the data contract.

A raw table (rows from a file, a SQL query or a DataFrame, columns already
named as in the contract) becomes a typed contract frame here:

- ids and strings -> pandas string (`str`), trimmed of white space, empty
  text -> missing;
- dates -> `datetime64[ns]` (naive, UTC for zoned values) from dates,
  timestamps, ISO text (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, with `T` or an
  offset) or `YYYYMMDD` (text or integer);
- numbers -> `float64` from numeric columns or numeric text;
- booleans -> pandas `boolean` from booleans, `1/0`, `true/false`, `t/f`,
  `yes/no`, `y/n` (any case).

A list or a record (a JSON array or object, a Parquet list column) is never
a value: it cannot be parsed as any type. A JSON column of mixed values is
read value by value as text (strings without their quotes).

Every contract column is present in the result (optional columns that were
not given are all missing) and no other column is kept. Rows whose required
value is missing or cannot be parsed are excluded; an optional value that
cannot be parsed becomes missing. Both are counted and reported with example
rows, so no row is ever dropped silently.

The typing runs inside DuckDB (vectorised) so that tens of millions of rows
load in seconds; nothing here loops over rows in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import CONTRACT, REVENUE_TABLES, ColumnSpec, Tables, TableSpec
from features.issues import EXAMPLE_ROWS, Issue, Rule, TableLoad

# datetime64[ns] covers 1677-09-21 .. 2262-04-11; dates outside are unparseable.
EARLIEST_DATE = "1678-01-01"
LATEST_DATE = "2261-12-31"

# Columns with a fixed vocabulary are compared in lower case.
LOWERCASED_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {("opportunities", "stage"), ("opportunities", "kind")}
)

TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")

PANDAS_DTYPES: dict[str, str] = {
    "id": "str",
    "string": "str",
    "date": "datetime64[ns]",
    "number": "float64",
    "bool": "boolean",
}

DUCKDB_TYPES: dict[str, str] = {
    "id": "VARCHAR",
    "string": "VARCHAR",
    "date": "TIMESTAMP_NS",  # arrives in pandas as datetime64[ns] without a conversion
    "number": "DOUBLE",
    "bool": "BOOLEAN",
}

TYPE_DESCRIPTIONS: dict[str, str] = {
    "id": "id (text or an integer, not a list or a record)",
    "string": "text (not a list or a record)",
    "date": (
        f"date (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or YYYYMMDD, between {EARLIEST_DATE[:4]}"
        f" and {LATEST_DATE[:4]})"
    ),
    "number": "finite number",
    "bool": "boolean (true/false, 1/0, yes/no)",
}

_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    }
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
_TIMESTAMP_TYPES = frozenset({"DATE", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"})
_ZONED_TYPES = frozenset({"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"})
_NESTED_TYPES = frozenset({"STRUCT", "MAP", "UNION", "LIST"})

# White space trimmed around ids, strings and the text of other values: every character
# Python's str.isspace() accepts (ASCII white space, NBSP, the Unicode spaces, line separators).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE_CODES = sorted(ord(character) for character in WHITESPACE)
# Every character strictly between these two codes is not white space.
_BELOW_PRINTABLE = max(code for code in _WHITESPACE_CODES if code < 128)
_ABOVE_PRINTABLE = min(code for code in _WHITESPACE_CODES if code >= 128)


@dataclass(frozen=True)
class TypedTable:
    """One typed contract frame with what loading did and found."""

    frame: pd.DataFrame
    load: TableLoad
    issues: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class TypedTables:
    """Typed contract frames plus what loading did and found."""

    tables: Tables
    loads: list[TableLoad]
    issues: list[Issue]


@dataclass(frozen=True)
class ColumnSelection:
    """Which source column feeds each contract column of one table."""

    sources: dict[str, str]
    ignored: list[str]
    issues: list[Issue]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def select_columns(
    table: str, source_columns: list[str], mapping: dict[str, str] | None = None
) -> ColumnSelection:
    """Match a source's columns to the contract columns of `table`.

    A contract column is fed by the source column named in `mapping`, else by
    the source column of the same name (exact, then case-insensitive). Missing
    required columns and mapped columns absent from the source are errors.
    """
    spec = CONTRACT[table]
    mapping = mapping or {}
    by_lower: dict[str, list[str]] = {}
    for column in source_columns:
        by_lower.setdefault(column.lower(), []).append(column)

    def find(name: str) -> str | None:
        if name in source_columns:
            return name
        candidates = by_lower.get(name.lower(), [])
        return candidates[0] if len(candidates) == 1 else None

    sources: dict[str, str] = {}
    issues: list[Issue] = []
    available = ", ".join(source_columns) or "(none)"
    for column in spec.columns:
        if column.name in mapping:
            found = find(mapping[column.name])
            if found is None:
                issues.append(
                    Issue(
                        table,
                        column.name,
                        Rule.MAPPED_COLUMN_NOT_FOUND,
                        "error",
                        0,
                        f"{table}.{column.name} is mapped to source column "
                        f"{mapping[column.name]!r}, which the source does not have "
                        f"(it has: {available})",
                    )
                )
                continue
            sources[column.name] = found
        else:
            found = find(column.name)
            if found is not None:
                sources[column.name] = found
            elif column.required:
                issues.append(
                    Issue(
                        table,
                        column.name,
                        Rule.MISSING_REQUIRED_COLUMN,
                        "error",
                        0,
                        f"{table} has no column {column.name!r} (required); map it with "
                        f"`columns: {{{column.name}: <source column>}}` or in the SQL "
                        f"(the source has: {available})",
                    )
                )
    used = set(sources.values())
    ignored = [column for column in source_columns if column not in used]
    return ColumnSelection(sources, ignored, issues)


def raw_select_sql(
    selection: ColumnSelection, relation_sql: str, extra: list[str] | None = None
) -> str:
    """SQL selecting the chosen source columns under their contract names (plus `extra` items)."""
    items = [
        f"{quote_identifier(source)} AS {quote_identifier(name)}"
        for name, source in selection.sources.items()
    ] + (extra or [])
    return f"SELECT {', '.join(items) or '1 AS __none'} FROM {relation_sql}"


def type_raw_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    raw_relation: str,
    *,
    source: str,
    ignored_columns: list[str] | None = None,
    row_number: str = "rowid",
    row_filter: str | None = None,
    in_row_order: bool = False,
) -> TypedTable:
    """Type the DuckDB table or view `raw_relation` (contract-named columns) as contract `table`.

    `row_number` is the expression giving a row's 0-based position in the source
    (a table's `rowid`; for a Parquet view, its `file_row_number`). `row_filter`,
    a DuckDB condition on typed columns written in braces (e.g. one partition of
    the accounts, `hash({account_id}) % 4 = 1`), keeps only the rows it holds for:
    the counts, issues and frame cover those rows. It is applied as the rows are
    read (only the columns it names are parsed for the rows it drops). With
    `in_row_order` (or a `row_filter`) the frame's rows are sorted by `row_number`
    (for a relation whose scan order is not the source's, e.g. one partition of a
    split table).
    """
    spec = CONTRACT[table]
    raw_types = {
        row[0]: row[1]
        for row in con.sql(f"DESCRIBE SELECT * FROM {raw_relation}").fetchall()
        if row[0] in spec.column_names
    }
    present_columns = [column for column in spec.columns if column.name in raw_types]
    view = quote_identifier(f"typed_{table}")
    if row_filter is not None:
        raw_relation, row_number = _filtered_rows(
            con, spec, present_columns, raw_types, raw_relation, row_number, row_filter
        )
    typed_sql = _typed_view_sql(spec, present_columns, raw_types, raw_relation, row_number)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {typed_sql}")

    checks: list[tuple[ColumnSpec, str, str]] = []  # (column, rule, condition)
    for column in present_columns:
        name = quote_identifier(column.name)
        present = quote_identifier(f"__present_{column.name}")
        if column.required:
            checks.append((column, Rule.MISSING_VALUE, f"NOT {present}"))
        checks.append((column, Rule.UNPARSEABLE_VALUE, f"{present} AND {name} IS NULL"))
    # One pass over the rows (parsing is the costly part): the typed columns of every row with
    # a flag per check and the exclusion flag; the flags are counted and the excluded rows
    # dropped in Arrow.
    output = ", ".join(
        f"CAST({quote_identifier(column.name) if column.name in raw_types else 'NULL'} "
        f"AS {DUCKDB_TYPES[column.type]}) AS {quote_identifier(column.name)}"
        for column in spec.columns
    )
    flags = "".join(f", {condition} AS __check_{i}" for i, (_, _, condition) in enumerate(checks))
    # a filtered scan may return rows out of their source order: put them back in it
    order = " ORDER BY __row" if row_filter is not None or in_row_order else ""
    arrow = con.sql(f"SELECT {output}, __excluded{flags} FROM {view}{order}").to_arrow_table()
    rows_read = arrow.num_rows
    rows_excluded = _true_count(arrow["__excluded"])
    counts = [_true_count(arrow[f"__check_{i}"]) for i in range(len(checks))]
    if rows_excluded:
        arrow = arrow.filter(pc.invert(arrow["__excluded"]))
    arrow = arrow.select([column.name for column in spec.columns])

    issues: list[Issue] = []
    raw_columns = ", ".join(
        f"{quote_identifier('__raw_' + column.name)} AS {quote_identifier(column.name)}"
        for column in present_columns
    )
    for (column, rule, condition), count in zip(checks, counts, strict=True):
        if not count:
            continue
        examples = [
            _example(row, ["row", *[c.name for c in present_columns]])
            for row in con.sql(
                f"SELECT __row + 1 AS row, {raw_columns} FROM {view} WHERE {condition} "
                f"ORDER BY __row LIMIT {EXAMPLE_ROWS}"
            ).fetchall()
        ]
        issues.append(_loading_issue(table, column, rule, int(count), examples))

    frame = arrow_to_contract_frame(arrow, spec)
    if row_filter is not None:
        con.execute(f"DROP TABLE {raw_relation}")  # the filtered copy
    load = TableLoad(table, source, rows_read, rows_read - rows_excluded, ignored_columns or [])
    return TypedTable(frame, load, issues)


def _true_count(flags: pa.ChunkedArray) -> int:
    """How many of the flags are true (a missing flag is not)."""
    return int(pc.sum(flags).as_py() or 0)


def typing_connection() -> duckdb.DuckDBPyConnection:
    """A new DuckDB database for typing source rows (`type_raw_table`).

    Dates are read in UTC, and text comes out as Arrow large strings, what
    pandas' `str` dtype holds: the frame takes them without a copy (from
    32-bit offsets pandas copies every string: 0.2 s for 10 M ids).
    """
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET arrow_large_buffer_size = true")
    return con


def arrow_to_contract_frame(arrow: pa.Table, spec: TableSpec) -> pd.DataFrame:
    """An Arrow table with the contract columns of `spec` as a frame of contract dtypes."""
    frame = arrow.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
    return frame.astype({column.name: PANDAS_DTYPES[column.type] for column in spec.columns})


def empty_contract_frame(table: str, rows: int = 0) -> pd.DataFrame:
    """A frame of contract `table` with `rows` all-missing rows and the contract dtypes."""
    spec = CONTRACT[table]
    return pd.DataFrame(
        {
            column.name: pd.Series([None] * rows, dtype=PANDAS_DTYPES[column.type])
            for column in spec.columns
        }
    )


def derive_accounts(tables: Tables) -> pd.DataFrame:
    """An accounts table holding the account ids of the revenue table(s), in order of appearance."""
    ids = [tables[name]["account_id"] for name in REVENUE_TABLES if name in tables]
    if not ids:
        return empty_contract_frame("accounts")
    unique_ids = pd.concat(ids, ignore_index=True).dropna().drop_duplicates()
    accounts = empty_contract_frame("accounts", len(unique_ids))
    accounts["account_id"] = unique_ids.to_numpy()
    return accounts.astype({"account_id": "str"})


def coerce_tables(raw: Tables) -> TypedTables:
    """Type hand-made or already-typed frames to the contract (the same rules as loading)."""
    tables: Tables = {}
    loads: list[TableLoad] = []
    issues: list[Issue] = []
    with typing_connection() as con:
        for table, frame in raw.items():
            if table not in CONTRACT:
                issues.append(unknown_table_issue(table))
                continue
            source_columns = [str(column) for column in frame.columns]
            selection = select_columns(table, source_columns)
            issues.extend(selection.issues)
            if any(issue.severity == "error" for issue in selection.issues):
                continue
            relation = f"frame_{table}"
            try:
                con.register(relation, frame.rename(columns=str))
                raw_relation = quote_identifier(f"raw_{table}")
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {raw_relation} AS "
                    + raw_select_sql(selection, quote_identifier(relation))
                )
            except duckdb.Error as error:
                issues.append(
                    Issue(
                        table,
                        None,
                        Rule.READ_ERROR,
                        "error",
                        0,
                        f"{table}: the frame cannot be read: {first_lines(str(error))}",
                    )
                )
                continue
            typed = type_raw_table(
                con, table, raw_relation, source="frame", ignored_columns=selection.ignored
            )
            tables[table] = typed.frame
            loads.append(typed.load)
            issues.extend(typed.issues)
    return TypedTables(tables, loads, issues)


def unknown_table_issue(table: str) -> Issue:
    return Issue(
        table,
        None,
        Rule.UNKNOWN_TABLE,
        "error",
        0,
        f"unknown table {table!r}; the contract tables are: {', '.join(CONTRACT)}",
    )


def first_lines(text: str, lines: int = 6) -> str:
    """The first few lines of a (DuckDB) error message."""
    return "\n".join(text.strip().splitlines()[:lines])


def _typed_view_sql(
    spec: TableSpec,
    columns: list[ColumnSpec],
    raw_types: dict[str, str],
    raw_relation: str,
    row_number: str,
) -> str:
    """Three layers: the values the parsing reads as text, trimmed (once: trimming is the
    costly part), parse every column, then apply range checks and the exclusion flag."""
    texts: list[str] = ["*", f"{row_number} AS __row"]
    parsed: list[str] = ["__row"]
    checked: list[str] = ["__row"]
    for column in columns:
        name = quote_identifier(column.name)
        raw = quote_identifier(column.name)
        raw_type = raw_types[column.name].upper()
        text = quote_identifier("__text_" + column.name)
        expression, present = _parse_expression(spec.name, column, raw, raw_type, text)
        if text in expression or text in present:
            # only where the parsing reads it: a typed column (Parquet numbers and dates) is
            # read as it is, and DuckDB computes the text of every row even when unused
            texts.append(f"{_text_expression(raw, raw_type)} AS {text}")
        parsed.append(f"{expression} AS {name}")
        parsed.append(f"{present} AS {quote_identifier('__present_' + column.name)}")
        parsed.append(f"CAST({raw} AS VARCHAR) AS {quote_identifier('__raw_' + column.name)}")
        checked.append(f"{_checked_expression(column, name)} AS {name}")
        checked.append(quote_identifier("__present_" + column.name))
        checked.append(quote_identifier("__raw_" + column.name))
    required = [c for c in columns if c.required]
    excluded = (
        " OR ".join(f"{_checked_expression(c, quote_identifier(c.name))} IS NULL" for c in required)
        or "false"
    )
    checked.append(f"({excluded}) AS __excluded")
    return (
        f"SELECT {', '.join(checked)} FROM "
        f"(SELECT {', '.join(parsed)} FROM "
        f"(SELECT {', '.join(texts)} FROM {raw_relation}) AS texts) AS parsed"
    )


def _filtered_rows(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    columns: list[ColumnSpec],
    raw_types: dict[str, str],
    raw_relation: str,
    row_number: str,
    row_filter: str,
) -> tuple[str, str]:
    """The raw rows `row_filter` keeps, copied once into a temp table (source scanned once).

    The filter reads the parsed values of the columns it names. Returns the
    table and the column holding each row's position in the source.
    """
    parsed = {
        column.name: parsed_value_sql(spec.name, column.name, raw_types[column.name])
        for column in columns
    }
    filtered = quote_identifier(f"filtered_{spec.name}")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {filtered} AS SELECT *, {row_number} AS __filtered_row "
        f"FROM {raw_relation} WHERE {row_filter.format_map(parsed)}"
    )
    return filtered, "__filtered_row"


def parsed_value_sql(table: str, column: str, raw_type: str) -> str:
    """The DuckDB expression of raw `column` (of DuckDB type `raw_type`, named as in the
    contract) parsed as contract `table`'s column (NULL when it does not parse)."""
    spec = CONTRACT[table]
    column_spec = next(c for c in spec.columns if c.name == column)
    expression, _ = _parse_expression(
        table, column_spec, quote_identifier(column), raw_type.upper()
    )
    return f"({expression})"


def _is_nested(raw_type: str) -> bool:
    return raw_type.endswith("]") or re.sub(r"\(.*\)$", "", raw_type) in _NESTED_TYPES


def _as_text(raw: str, raw_type: str) -> tuple[str, str]:
    """(a raw value as text, whether it is a JSON array or object) for DuckDB type `raw_type`."""
    if raw_type == "JSON":
        # A column of mixed JSON values: scalars as their text (strings without their
        # quotes); arrays and objects have none.
        container = f"coalesce(json_type({raw}) IN ('ARRAY', 'OBJECT'), false)"
        return f"(CASE WHEN NOT {container} THEN {raw} ->> '$' END)", container
    return (raw if raw_type == "VARCHAR" else f"CAST({raw} AS VARCHAR)"), "false"


def _text_expression(raw: str, raw_type: str) -> str:
    """A raw value as text trimmed of white space; NULL when nothing is left."""
    as_text, _ = _as_text(raw, raw_type)
    # trim() only where needed: it copies every string, which is slow on millions of ids. The
    # end characters are looked up in the white space codes only when one is not printable
    # ASCII: an IN list (or list_contains) alone becomes a join, which costs more and does
    # not keep the rows in their source order.
    ends = (f"ascii({as_text})", f"ascii(right({as_text}, 1))")
    printable = " AND ".join(
        f"{end} BETWEEN {_BELOW_PRINTABLE + 1} AND {_ABOVE_PRINTABLE - 1}" for end in ends
    )
    codes = ", ".join(str(code) for code in _WHITESPACE_CODES)
    edge_space = (
        f"(CASE WHEN {printable} THEN false ELSE list_has_any([{codes}], [{', '.join(ends)}]) END)"
    )
    trimmed = f"trim({as_text}, {quote_literal(WHITESPACE)})"
    return f"CASE WHEN {edge_space} THEN NULLIF({trimmed}, '') ELSE NULLIF({as_text}, '') END"


def _parse_expression(
    table: str, column: ColumnSpec, raw: str, raw_type: str, text: str | None = None
) -> tuple[str, str]:
    """(typed value, whether a value is present) for one raw column of DuckDB type `raw_type`.

    `text` names a column already holding `_text_expression` of the value (else it is inlined).
    """
    if _is_nested(raw_type):
        # A list or a record (e.g. a JSON array, a Parquet list column) is not a value of any
        # contract type: present but unparseable, never its text.
        return "NULL", f"({raw} IS NOT NULL)"
    base_type = re.sub(r"\(.*\)$", "", raw_type)
    is_float = base_type in _FLOAT_TYPES
    is_integer = base_type in _INTEGER_TYPES
    is_numeric = is_float or is_integer or base_type == "DECIMAL"
    _, container = _as_text(raw, raw_type)
    text = text or f"({_text_expression(raw, raw_type)})"
    if is_float:
        # Not isnan(): DuckDB 2.0 answers it wrongly for some NaNs read straight from Parquet.
        present = f"({raw} IS NOT NULL AND (isfinite({raw}) OR isinf({raw})))"
    elif is_numeric or base_type in _TIMESTAMP_TYPES | _ZONED_TYPES | {"BOOLEAN"}:
        present = f"({raw} IS NOT NULL)"
    else:
        present = f"({container} OR {text} IS NOT NULL)"

    # Integral floats (ids or YYYYMMDD read as floats, e.g. from a DataFrame with gaps) as integers.
    integral_text = (
        f"CASE WHEN {raw} = trunc({raw}) AND abs({raw}) < 1e18 "
        f"THEN CAST(CAST({raw} AS BIGINT) AS VARCHAR) ELSE CAST({raw} AS VARCHAR) END"
    )
    if column.type in ("id", "string"):
        if is_integer:
            value = f"CAST({raw} AS VARCHAR)"
        elif is_float:
            value = f"CASE WHEN isfinite({raw}) THEN {integral_text} END"  # inf is no id
        elif raw_type == "JSON":
            # a JSON number as written (exact, whatever its size), but an integral one written
            # with a zero fraction (12.0, as pandas writes ids with gaps) is the integer's id
            value = (
                f"CASE WHEN json_type({raw}) = 'DOUBLE' "
                f"THEN regexp_replace({text}, '^(-?[0-9]+)\\.0+$', '\\1') ELSE {text} END"
            )
        else:
            value = text
        if (table, column.name) in LOWERCASED_COLUMNS:
            value = f"lower({value})"
        return value, present

    if column.type == "date":
        if base_type in _TIMESTAMP_TYPES:
            return f"CAST({raw} AS TIMESTAMP)", present
        if base_type in _ZONED_TYPES:
            return f"timezone('UTC', {raw})", present
        source_text = integral_text if is_float else text
        compact = f"CASE WHEN regexp_full_match({source_text}, '[0-9]{{8}}') THEN TRY_STRPTIME({source_text}, '%Y%m%d') END"
        if is_numeric:
            return compact, present
        iso = f"timezone('UTC', TRY_CAST({text} AS TIMESTAMPTZ))"
        return f"COALESCE({compact}, {iso})", present

    if column.type == "number":
        if is_numeric:
            return f"CAST({raw} AS DOUBLE)", present
        return f"TRY_CAST({text} AS DOUBLE)", present

    # bool
    if base_type == "BOOLEAN":
        return raw, present
    if is_numeric:
        return f"CASE WHEN {raw} = 1 THEN true WHEN {raw} = 0 THEN false END", present
    true_words = ", ".join(quote_literal(word) for word in TRUE_WORDS)
    false_words = ", ".join(quote_literal(word) for word in FALSE_WORDS)
    return (
        f"CASE WHEN lower({text}) IN ({true_words}) THEN true "
        f"WHEN lower({text}) IN ({false_words}) THEN false END"
    ), present


def _checked_expression(column: ColumnSpec, name: str) -> str:
    """The parsed value with out-of-range values (non-finite numbers, far dates) set missing."""
    if column.type == "date":
        return (
            f"CASE WHEN {name} BETWEEN TIMESTAMP '{EARLIEST_DATE}' "
            f"AND TIMESTAMP '{LATEST_DATE} 23:59:59' THEN {name} END"
        )
    if column.type == "number":
        return f"CASE WHEN isfinite({name}) THEN {name} END"
    return name


def _example(row: tuple, names: list[str]) -> dict[str, object]:
    return {name: value for name, value in zip(names, row, strict=True)}


def _loading_issue(
    table: str, column: ColumnSpec, rule: str, count: int, examples: list[dict[str, object]]
) -> Issue:
    where = f"{table}.{column.name}"
    if rule == Rule.MISSING_VALUE:
        message = f"{count:,} row(s) have no {where} (required); these rows are excluded"
        return Issue(table, column.name, rule, "error", count, message, examples)
    kind = TYPE_DESCRIPTIONS[column.type]
    if column.required:
        message = f"{count:,} row(s) have a value in {where} that is not a valid {kind}; these rows are excluded"
        return Issue(table, column.name, rule, "error", count, message, examples)
    message = (
        f"{count:,} row(s) have a value in {where} that is not a valid {kind}; "
        "the value is set to missing and the rows are kept"
    )
    return Issue(table, column.name, rule, "warning", count, message, examples)
