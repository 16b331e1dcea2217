"""Generated user input for fuzzing the loader: contract tables as files plus a `sources.yaml`.

The hypothesis strategy `source_plans()` draws a few contract tables the way
users hand them over: CSV, Parquet or JSON files, with wrong types, empty
files (0 bytes, header only), huge values (1e308, 2**63, long strings),
unicode ids (emoji, right-to-left text, NUL, whitespace-only, ids differing
only by case or whitespace), duplicated headers, mixed date formats, missing
values in required columns, missing required columns and extra columns.

Every generated cell knows what loading must make of it (`Cell.status`: ok,
missing or bad, and the typed value when ok), so a plan also says what the
validation report must count: the rows read, loaded and excluded per table,
the issues per column, and the fatal problems that stop loading. Both
tests/unit/test_input_fuzzing.py (in process) and
tests/integration/test_cli_input_fuzzing.py (the `portfolio` commands) use it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import strategies as st

from features.contract import CONTRACT, ColumnSpec

Status = Literal["ok", "missing", "bad"]
FileFormat = Literal["csv", "parquet", "json"]
# How a column's values are written: all text, the column's own type (Parquet), or a mix of
# JSON scalars, arrays and objects (JSON).
Representation = Literal["text", "native", "mixed"]
Layout = Literal["rows", "empty_file"]

EARLIEST = pd.Timestamp("1678-01-01")
LATEST = pd.Timestamp("2261-12-31 23:59:59")

# Problems that stop loading, as (table, column, rule).
Fatal = tuple[str, str | None, str]


@dataclass(frozen=True)
class Cell:
    """One written value and what loading must make of it."""

    value: Any  # as written: text for CSV, a Python value for Parquet and JSON (None = empty)
    status: Status
    expected: Any = None  # the typed value when ok (str, pd.Timestamp, float or bool)


@dataclass(frozen=True)
class ColumnPlan:
    """One written column: the contract column it feeds (None for an extra column)."""

    contract: str | None
    header: str
    cells: list[Cell]
    representation: Representation = "text"
    mapped: bool = False  # sources.yaml maps the contract column to `header`
    arrow_type: pa.DataType | None = None  # Parquet columns written natively


@dataclass(frozen=True)
class TablePlan:
    """One contract table as a file."""

    table: str
    file_format: FileFormat
    columns: list[ColumnPlan]
    n_rows: int
    layout: Layout = "rows"
    json_lines: bool = False
    duplicated_header: str | None = None  # a used header written twice (CSV)

    @property
    def file_name(self) -> str:
        suffix = {
            "csv": "csv",
            "parquet": "parquet",
            "json": "jsonl" if self.json_lines else "json",
        }
        return f"{self.table}.{suffix[self.file_format]}"

    @property
    def spec(self):
        return CONTRACT[self.table]

    def contract_column(self, name: str) -> ColumnPlan | None:
        return next((c for c in self.columns if c.contract == name), None)

    @property
    def without_records(self) -> bool:
        """A 0-byte file, or a JSON file without records: an empty table, whatever its columns."""
        if self.layout == "empty_file":
            return self.file_format != "parquet"
        return self.file_format == "json" and self.n_rows == 0

    def fatal(self) -> set[Fatal]:
        """The problems that must stop loading (a missing column, a duplicated header, ...)."""
        if self.layout == "empty_file" and self.file_format == "parquet":
            return {(self.table, None, "read_error")}  # a Parquet file always has a footer
        if self.without_records:
            return set()
        problems: set[Fatal] = set()
        for column in self.spec.columns:
            if column.required and self.contract_column(column.name) is None:
                problems.add((self.table, column.name, "missing_required_column"))
        if self.duplicated_header is not None:
            used = next(c for c in self.columns if c.header == self.duplicated_header)
            problems.add((self.table, used.contract, "duplicate_column"))
        return problems

    @property
    def rows_read(self) -> int:
        return 0 if self.without_records else self.n_rows

    def loaded_rows(self) -> list[int]:
        """The rows whose every required value can be read."""
        required = [self.contract_column(c.name) for c in self.spec.columns if c.required]
        return [
            row
            for row in range(self.rows_read)
            if all(column is not None and column.cells[row].status == "ok" for column in required)
        ]

    def issue_counts(self) -> dict[tuple[str, str, str], int]:
        """(column, rule, severity) -> rows, for the issues loading must report."""
        counts: dict[tuple[str, str, str], int] = {}
        if self.without_records:
            return counts
        for spec in self.spec.columns:
            column = self.contract_column(spec.name)
            if column is None:
                continue
            missing = sum(cell.status == "missing" for cell in column.cells)
            bad = sum(cell.status == "bad" for cell in column.cells)
            if spec.required and missing:
                counts[(spec.name, "missing_value", "error")] = missing
            if bad:
                severity = "error" if spec.required else "warning"
                counts[(spec.name, "unparseable_value", severity)] = bad
        return counts

    def expected_values(self, column: str) -> list[Any]:
        """The typed values of `column` in the loaded rows (missing ones left out)."""
        plan = self.contract_column(column)
        if plan is None:
            return []
        return [
            plan.cells[row].expected for row in self.loaded_rows() if plan.cells[row].status == "ok"
        ]

    def write(self, folder: Path) -> None:
        path = folder / self.file_name
        if self.layout == "empty_file":
            path.write_bytes(b"")
        elif self.file_format == "csv":
            path.write_text(self._csv_text(), encoding="utf-8")
        elif self.file_format == "parquet":
            pq.write_table(self._arrow_table(), path)
        else:
            path.write_text(self._json_text(), encoding="utf-8")

    def source_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.file_name}
        mapping = {c.contract: c.header for c in self.columns if c.mapped and c.contract}
        if mapping:
            entry["columns"] = mapping
        if self.file_format == "csv" and self.layout != "empty_file" and len(self._headers()) == 1:
            # One column gives DuckDB's sniffer nothing to tell the delimiter by: a value such as
            # ';|A' reads as two columns. A user with such a file states it, as here.
            entry["read_options"] = {"delim": ",", "header": True}
        return entry

    def _headers(self) -> list[str]:
        headers = [c.header for c in self.columns]
        if self.duplicated_header is not None:
            headers.append(self.duplicated_header)
        return headers

    def _csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self._headers())
        for row in range(self.n_rows):
            values = [
                "" if c.cells[row].value is None else c.cells[row].value for c in self.columns
            ]
            if self.duplicated_header is not None:
                values.append(f"other value {row}")
            writer.writerow(values)
        return buffer.getvalue()

    def _arrow_table(self) -> pa.Table:
        arrays = []
        for column in self.columns:
            values = [cell.value for cell in column.cells]
            arrays.append(pa.array(values, type=column.arrow_type or pa.string()))
        return pa.table(arrays, names=[c.header for c in self.columns])

    def _json_text(self) -> str:
        records = []
        for row in range(self.n_rows):
            record = {}
            for column in self.columns:
                value = column.cells[row].value
                # A missing value is written as null or left out of the record.
                if value is not None or row % 2 == 0:
                    record[column.header] = value
            records.append(record)
        if self.json_lines:
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return json.dumps(records, ensure_ascii=False)


@dataclass(frozen=True)
class SourcesPlan:
    """Several tables and their `sources.yaml`."""

    tables: list[TablePlan] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for table in self.tables:
            table.write(folder)
        document = {
            "name": "fuzzed",
            "tables": {table.table: table.source_entry() for table in self.tables},
        }
        sources = folder / "sources.yaml"
        sources.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return sources

    def describe(self) -> str:
        """The plan in a few lines (for hypothesis' report of a failing example)."""
        lines = []
        for table in self.tables:
            lines.append(
                f"{table.file_name} ({table.layout}, {table.n_rows} rows, "
                f"duplicated header {table.duplicated_header!r})"
            )
            for column in table.columns:
                cells = ", ".join(f"{cell.value!r}:{cell.status}" for cell in column.cells)
                lines.append(
                    f"  {column.header!r} -> {column.contract} ({column.representation}"
                    f"{', mapped' if column.mapped else ''}): {cells}"
                )
        return "\n".join(lines)

    def fatal(self) -> set[Fatal]:
        return set().union(*(table.fatal() for table in self.tables)) if self.tables else set()

    def table(self, name: str) -> TablePlan:
        return next(t for t in self.tables if t.table == name)


# --------------------------------------------------------------------------- cells

WHITESPACE = " \t\u00a0\u2003\u3000"
# Text that stresses ids: emoji, right-to-left, combining marks, quotes, delimiters, NUL.
ID_ALPHABET = st.sampled_from([*"aAbB09_-.,;|'\"/", *"éßİ😀\u200d\u202e\u200fשل中\u0301\x00\n\t"])
SPECIAL_IDS = [
    "😀",
    "\u202eabc",  # right-to-left override
    "שלום",
    "acme",
    "ACME",
    "Acme",
    "x" * 5000,
    "a\x00b",
    "007",
    "1042",
]


def _strip(text: str) -> str:
    """What loading makes of an id or string: surrounding white space removed."""
    return text.strip()


def text_value(text: str) -> Cell:
    """An id or a string as text: empty after trimming white space means missing."""
    stripped = _strip(text)
    return Cell(text, "ok", stripped) if stripped else Cell(text, "missing")


def padded(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pads = st.sampled_from(["", "", "", " ", "  ", "\t", "\u00a0", " \u3000"])
    return st.tuples(pads, text, pads).map(lambda parts: "".join(parts))


ids_as_text = padded(st.sampled_from(SPECIAL_IDS) | st.text(ID_ALPHABET, min_size=1, max_size=8))
blank_text = st.sampled_from(["", " ", "   ", "\t", "\u00a0", " \u3000 "])


def id_cells(representation: Representation) -> st.SearchStrategy[Cell]:
    text = ids_as_text.map(text_value) | blank_text.map(lambda t: Cell(t or None, "missing"))
    if representation == "text":
        return text
    if representation == "native":  # an integer column
        return st.integers(0, 2**63 - 1).map(lambda n: Cell(n, "ok", str(n))) | st.just(
            Cell(None, "missing")
        )
    # mixed JSON values: strings, integers (up to 2**63), booleans, arrays, objects, null
    return st.one_of(
        text,
        st.integers(-(2**63), 2**63).map(lambda n: Cell(n, "ok", str(n))),
        st.just(Cell(None, "missing")),
        st.sampled_from([[1, 2], ["a"], {"id": 1}, {}]).map(lambda v: Cell(v, "bad")),
    )


days = st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31))
times = st.times().map(lambda t: t.replace(microsecond=0))


def _date_text(day: dt.date, time: dt.time, form: str) -> Cell:
    stamp = pd.Timestamp(dt.datetime.combine(day, time))
    if form == "iso":
        return Cell(day.isoformat(), "ok", pd.Timestamp(day))
    if form == "slashes":
        return Cell(day.strftime("%Y/%m/%d"), "ok", pd.Timestamp(day))
    if form == "compact":
        return Cell(day.strftime("%Y%m%d"), "ok", pd.Timestamp(day))
    if form == "datetime":
        return Cell(stamp.strftime("%Y-%m-%d %H:%M:%S"), "ok", stamp)
    if form == "t_datetime":
        return Cell(stamp.strftime("%Y-%m-%dT%H:%M:%S"), "ok", stamp)
    if form == "offset":  # +02:00 is converted to UTC
        return Cell(stamp.strftime("%Y-%m-%dT%H:%M:%S+02:00"), "ok", stamp - pd.Timedelta(hours=2))
    if form == "padded":
        return Cell(f"  {day.isoformat()} ", "ok", pd.Timestamp(day))
    if form == "day_first":
        return Cell(day.strftime("%d/%m/%Y"), "bad")
    if form == "month_first":
        return Cell(day.strftime("%m/%d/%Y"), "bad")
    if form == "words":
        return Cell(day.strftime("%d %B %Y"), "bad")
    raise ValueError(form)


DATE_FORMS = [
    "iso",
    "slashes",
    "compact",
    "datetime",
    "t_datetime",
    "offset",
    "padded",
    "day_first",
    "month_first",
    "words",
]
BAD_DATE_TEXT = ["2023-13-45", "2023-02-30", "20231345", "yesterday", "1600-01-01", "9999-12-31"]


def date_cells(representation: Representation) -> st.SearchStrategy[Cell]:
    text = (
        st.builds(_date_text, days, times, st.sampled_from(DATE_FORMS))
        | st.sampled_from(BAD_DATE_TEXT).map(lambda t: Cell(t, "bad"))
        | blank_text.map(lambda t: Cell(t or None, "missing"))
    )
    if representation == "text":
        return text
    if representation == "native":  # a date32 column, some dates outside what pandas can hold
        return st.dates(dt.date(1500, 1, 1), dt.date(2600, 12, 31)).map(
            lambda d: (
                Cell(d, "ok", pd.Timestamp(d))
                if EARLIEST <= pd.Timestamp(d.isoformat()) <= LATEST
                else Cell(d, "bad")
            )
        ) | st.just(Cell(None, "missing"))
    return st.one_of(
        text,
        days.map(lambda d: Cell(int(d.strftime("%Y%m%d")), "ok", pd.Timestamp(d))),
        st.sampled_from([2**62, 19991399, 1, True]).map(lambda v: Cell(v, "bad")),
        st.sampled_from([["2023-01-01"], {"date": "2023-01-01"}]).map(lambda v: Cell(v, "bad")),
        st.just(Cell(None, "missing")),
    )


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
BAD_NUMBER_TEXT = ["1,234", "$12", "n/a", "1e309", "-1e999", "inf", "nan", "-Infinity", "12abc"]
HUGE_NUMBER_TEXT = ["1e308", "-1.7976931348623157e308", str(2**63), str(2**64), "0.000001"]


def _number_text(value: float) -> Cell:
    return Cell(repr(value), "ok", value)


def number_cells(representation: Representation) -> st.SearchStrategy[Cell]:
    text = (
        finite.map(_number_text)
        | st.integers(-(10**6), 10**6).map(lambda n: Cell(f" {n} ", "ok", float(n)))
        | st.sampled_from(HUGE_NUMBER_TEXT).map(lambda t: Cell(t, "ok", float(t)))
        | st.sampled_from(BAD_NUMBER_TEXT).map(lambda t: Cell(t, "bad"))
        | blank_text.map(lambda t: Cell(t or None, "missing"))
    )
    if representation == "text":
        return text
    if representation == "native":  # a float64 column: NaN is missing, infinity cannot be read
        return st.one_of(
            finite.map(lambda v: Cell(v, "ok", v)),
            st.just(Cell(math.nan, "missing")),
            st.just(Cell(None, "missing")),
            st.sampled_from([math.inf, -math.inf]).map(lambda v: Cell(v, "bad")),
        )
    return st.one_of(
        text,
        finite.map(lambda v: Cell(v, "ok", v)),
        st.integers(-(2**63), 2**63).map(lambda n: Cell(n, "ok", float(n))),
        st.sampled_from([True, [1], {"n": 1}]).map(lambda v: Cell(v, "bad")),
        st.just(Cell(None, "missing")),
    )


TRUE_TEXT = ["true", "True", "TRUE", "t", "yes", "Y", "1", " yes "]
FALSE_TEXT = ["false", "F", "no", "N", "0", "No"]


def bool_cells(representation: Representation) -> st.SearchStrategy[Cell]:
    text = (
        st.sampled_from(TRUE_TEXT).map(lambda t: Cell(t, "ok", True))
        | st.sampled_from(FALSE_TEXT).map(lambda t: Cell(t, "ok", False))
        | st.sampled_from(["maybe", "2", "tru", "ja", "-1"]).map(lambda t: Cell(t, "bad"))
        | blank_text.map(lambda t: Cell(t or None, "missing"))
    )
    if representation == "text":
        return text
    if representation == "native":
        return st.booleans().map(lambda b: Cell(b, "ok", b)) | st.just(Cell(None, "missing"))
    return st.one_of(
        text,
        st.booleans().map(lambda b: Cell(b, "ok", b)),
        st.sampled_from([0, 1]).map(lambda n: Cell(n, "ok", bool(n))),
        st.sampled_from([2, [True], {"b": 1}]).map(lambda v: Cell(v, "bad")),
        st.just(Cell(None, "missing")),
    )


CELLS: dict[str, Callable[[Representation], st.SearchStrategy[Cell]]] = {
    "id": id_cells,
    "string": id_cells,
    "date": date_cells,
    "number": number_cells,
    "bool": bool_cells,
}
NATIVE_TYPES: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "string": pa.int64(),
    "date": pa.date32(),
    "number": pa.float64(),
    "bool": pa.bool_(),
}
# Parquet columns of the wrong type: (contract type, Arrow type, cells, status).
WRONG_NATIVE: dict[str, tuple[pa.DataType, st.SearchStrategy[Any], Status]] = {
    "number": (pa.bool_(), st.booleans(), "bad"),
    "date": (pa.float64(), st.floats(1.0, 1e300), "bad"),
    "id": (pa.list_(pa.string()), st.lists(st.text(max_size=3), max_size=2), "bad"),
    "bool": (pa.string(), st.sampled_from(["sometimes", "often"]), "bad"),
}


def _loaded_string(spec: ColumnSpec, table: str, cell: Cell) -> Cell:
    """opportunities.stage and .kind are read in lower case."""
    if cell.status == "ok" and (table, spec.name) in {
        ("opportunities", "stage"),
        ("opportunities", "kind"),
    }:
        return Cell(cell.value, "ok", str(cell.expected).lower())
    return cell


@st.composite
def column_plans(
    draw: st.DrawFn, table: str, spec: ColumnSpec, file_format: FileFormat, n_rows: int
) -> ColumnPlan:
    representation: Representation = "text"
    if file_format == "parquet":
        representation = draw(st.sampled_from(["text", "native", "native", "wrong"]))
    elif file_format == "json":
        representation = draw(st.sampled_from(["text", "mixed"]))
    arrow_type = None
    if representation == "wrong" and spec.type in WRONG_NATIVE:
        arrow_type, values, status = WRONG_NATIVE[spec.type]
        cells = [Cell(v, status) for v in draw(st.lists(values, min_size=n_rows, max_size=n_rows))]
        representation = "native"
    else:
        if representation == "wrong":
            representation = "native"
        if representation == "native":
            arrow_type = NATIVE_TYPES[spec.type]
        strategy = CELLS[spec.type](representation)
        cells = [
            _loaded_string(spec, table, cell)
            for cell in draw(st.lists(strategy, min_size=n_rows, max_size=n_rows))
        ]
    header_form = draw(st.sampled_from(["exact", "exact", "exact", "upper", "mapped"]))
    header = {"exact": spec.name, "upper": spec.name.upper(), "mapped": f"Source {spec.name}"}[
        header_form
    ]
    return ColumnPlan(
        spec.name,
        header,
        cells,
        representation,
        mapped=header_form == "mapped",
        arrow_type=arrow_type,
    )


EXTRA_HEADERS = ["notes", "Région", "😀 score", "  padded  ", "id2", "arr_total", "x.y"]


@st.composite
def table_plans(
    draw: st.DrawFn, table: str, max_rows: int = 6, allow_fatal: bool = True
) -> TablePlan:
    spec = CONTRACT[table]
    file_format: FileFormat = draw(st.sampled_from(["csv", "parquet", "json"]))
    n_rows = draw(st.integers(0, max_rows))
    optional = [c for c in spec.columns if not c.required]
    chosen = draw(st.lists(st.sampled_from(optional), unique=True, max_size=3)) if optional else []
    specs = [c for c in spec.columns if c.required or c in chosen]
    if allow_fatal and len(specs) > 1 and draw(st.integers(0, 9)) == 0:
        dropped = draw(st.sampled_from([c for c in specs if c.required]))
        specs = [c for c in specs if c is not dropped]
    columns = [draw(column_plans(table, c, file_format, n_rows)) for c in specs]
    for name in draw(st.lists(st.sampled_from(EXTRA_HEADERS), unique=True, max_size=2)):
        values = draw(st.lists(st.text(ID_ALPHABET, max_size=4), min_size=n_rows, max_size=n_rows))
        columns.append(ColumnPlan(None, name, [Cell(v, "ok") for v in values]))
    columns = draw(st.permutations(columns))
    layout: Layout = "rows"
    if allow_fatal and draw(st.integers(0, 14)) == 0:
        layout = "empty_file"
    duplicated = None
    if allow_fatal and file_format == "csv" and columns and draw(st.integers(0, 9)) == 0:
        duplicated = draw(st.sampled_from([c.header for c in columns if c.contract]))
    return TablePlan(
        table,
        file_format,
        list(columns),
        n_rows,
        layout=layout,
        json_lines=draw(st.booleans()),
        duplicated_header=duplicated,
    )


OTHER_TABLES = [t for t in CONTRACT if t not in ("subscriptions", "orders")]


@st.composite
def source_plans(draw: st.DrawFn, max_rows: int = 6, allow_fatal: bool = True) -> SourcesPlan:
    """One or two revenue tables plus up to two other contract tables."""
    revenue = draw(st.sampled_from([["subscriptions"], ["orders"], ["subscriptions", "orders"]]))
    others = draw(st.lists(st.sampled_from(OTHER_TABLES), unique=True, max_size=2))
    return SourcesPlan([draw(table_plans(t, max_rows, allow_fatal)) for t in [*revenue, *others]])


# --------------------------------------------------------------------------- portfolios to score

SCORING_AS_OF = pd.Timestamp("2023-06-30")
BASE_IDS = ["A1", "A2", "A3", "B4", "b5", "0006"]
SubscriptionKind = Literal["normal", "unicode_id", "id_variant", "huge_arr", "zero_arr", "bad"]


@dataclass(frozen=True)
class Subscription:
    """One subscription row as written (text) and as it must load."""

    account_id: str
    start_date: str
    end_date: str
    arr: str
    loaded_id: str | None  # None when a required value is unusable (the row is an error)
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    arr_value: float | None


def _subscription(
    account_id: str, start: dt.date, end: dt.date | None, arr: str, *, bad: bool = False
) -> Subscription:
    return Subscription(
        account_id,
        start.isoformat(),
        end.isoformat() if end else "",
        arr,
        None if bad else _strip(account_id),
        pd.Timestamp(start),
        pd.Timestamp(end) if end else None,
        None if bad else float(arr),
    )


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    kind: SubscriptionKind = draw(
        st.sampled_from(["normal"] * 4 + ["unicode_id", "id_variant", "huge_arr", "zero_arr"])
    )
    start = draw(st.dates(dt.date(2021, 1, 1), dt.date(2023, 6, 30)))
    end = draw(st.none() | st.dates(dt.date(2021, 6, 1), dt.date(2024, 12, 31)))
    if end is not None and end <= start:
        end = None
    base = draw(st.sampled_from(BASE_IDS))
    arr = repr(float(draw(st.integers(1, 100_000))))
    if kind == "unicode_id":
        base = draw(padded(st.sampled_from(SPECIAL_IDS)))
    elif kind == "id_variant":  # the same account padded, or another one differing by case
        base = draw(st.sampled_from([f"{base}\t", f"\u00a0{base} ", base.swapcase()]))
    elif kind == "huge_arr":
        arr = draw(st.sampled_from(["1e308", str(2**63), "1.7976931348623157e308"]))
    elif kind == "zero_arr":
        arr = "0"
    return _subscription(base, start, end, arr)


BAD_SUBSCRIPTIONS = [
    Subscription("A1", "31/12/2022", "", "100", None, None, None, None),
    Subscription("A2", "2022-01-01", "", "n/a", None, None, None, None),
    Subscription(" \t", "2022-01-01", "", "100", None, None, None, None),
    Subscription("A3", "2022-01-01", "", "1e309", None, None, None, None),
]


@dataclass(frozen=True)
class ScoringPlan:
    """A small portfolio to score: subscriptions (maybe with unusable rows) and maybe usage."""

    rows: list[Subscription]
    subscriptions_format: FileFormat
    usage: TablePlan | None

    @property
    def usable(self) -> bool:
        return all(row.loaded_id is not None for row in self.rows)

    def active_accounts(self) -> set[str]:
        """Accounts with ARR > 0 at the as-of date (an overflowing sum is still > 0)."""
        arr: dict[str, float] = {}
        for row in self.rows:
            assert row.loaded_id is not None and row.start is not None
            if row.start <= SCORING_AS_OF and (row.end is None or row.end > SCORING_AS_OF):
                arr[row.loaded_id] = arr.get(row.loaded_id, 0.0) + (row.arr_value or 0.0)
        return {account for account, value in arr.items() if value > 0}

    def subscriptions_table(self) -> TablePlan:
        def column(name: str, values: list[str]) -> ColumnPlan:
            return ColumnPlan(name, name, [Cell(v or None, "ok") for v in values])

        return TablePlan(
            "subscriptions",
            self.subscriptions_format,
            [
                column("account_id", [r.account_id for r in self.rows]),
                column("start_date", [r.start_date for r in self.rows]),
                column("end_date", [r.end_date for r in self.rows]),
                column("arr", [r.arr for r in self.rows]),
            ],
            len(self.rows),
        )

    def write(self, folder: Path) -> Path:
        tables = [self.subscriptions_table(), *([self.usage] if self.usage else [])]
        return SourcesPlan(tables).write(folder)

    def describe(self) -> str:
        lines = [f"subscriptions ({self.subscriptions_format}):"]
        lines += [
            f"  {r.account_id!r}, {r.start_date!r}, {r.end_date!r}, {r.arr!r}" for r in self.rows
        ]
        if self.usage is not None:
            lines.append(SourcesPlan([self.usage]).describe())
        return "\n".join(lines)


@st.composite
def scoring_plans(draw: st.DrawFn) -> ScoringPlan:
    rows = draw(st.lists(subscriptions(), min_size=2, max_size=10))
    # One subscription starting on the as-of date: the data reaches it.
    rows.append(_subscription("A1", SCORING_AS_OF.date(), None, "1200.0"))
    if draw(st.integers(0, 3)) == 0:
        rows.insert(draw(st.integers(0, len(rows))), draw(st.sampled_from(BAD_SUBSCRIPTIONS)))
    usage = None
    if draw(st.booleans()):
        usage = draw(table_plans("usage", max_rows=6, allow_fatal=False))
        usage = TablePlan(
            "usage",
            usage.file_format,
            usage.columns,
            usage.n_rows,
            layout=draw(st.sampled_from(["rows", "rows", "empty_file"]))
            if usage.file_format != "parquet"
            else "rows",
            json_lines=usage.json_lines,
        )
    return ScoringPlan(rows, draw(st.sampled_from(["csv", "parquet", "json"])), usage)
