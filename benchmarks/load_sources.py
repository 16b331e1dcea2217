"""How fast `load_sources` types and validates a large Parquet portfolio.

Writes a portfolio of random Parquet tables (100,000 accounts, 10 million
daily usage rows by default) into a temporary folder with a `sources.yaml`,
then times `features.sources.load_sources` on it and reports the peak memory
of the process. Run with:

    uv run python -m benchmarks.load_sources [--accounts N] [--usage-rows N]

Results are recorded by hand in docs/benchmarks.md ("Loading sources").
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table

from features.sources import load_sources

START = np.datetime64("2022-01-01", "D")
DAYS = 3 * 365


@dataclass(frozen=True)
class LoadBenchmark:
    accounts: int
    usage_rows: int
    rows_total: int
    write_seconds: float
    load_seconds: float
    peak_rss_gb: float
    issues: int


def write_large_portfolio(folder: Path, accounts: int, usage_rows: int, seed: int = 7) -> Path:
    """Random contract tables as Parquet (vectorised) plus their sources.yaml; returns its path."""
    rng = np.random.default_rng(seed)
    ids = pa.array([f"A{i:07d}" for i in range(accounts)])

    def dates(n: int) -> pa.Array:
        return pa.array(START + rng.integers(0, DAYS, n).astype("timedelta64[D]"))

    owners = pa.array([f"M{i:04d}" for i in range(max(accounts // 100, 1))])
    tables = {
        "accounts": pa.table(
            {
                "account_id": ids,
                "segment": pa.array(rng.choice(["enterprise", "mid-market", "smb"], accounts)),
                "employees": rng.lognormal(5, 1.5, accounts),
                "created_at": dates(accounts),
                "owner_id": owners.take(pa.array(rng.integers(0, len(owners), accounts))),
                "is_target": rng.random(accounts) < 0.3,
            }
        ),
        "account_managers": pa.table(
            {"owner_id": owners, "capacity_accounts": np.full(len(owners), 120.0)}
        ),
    }
    n_subscriptions = accounts * 3
    start = dates(n_subscriptions)
    tables["subscriptions"] = pa.table(
        {
            "account_id": ids.take(pa.array(rng.integers(0, accounts, n_subscriptions))),
            "start_date": start,
            "end_date": pa.array(
                np.asarray(start, dtype="datetime64[D]") + np.timedelta64(365, "D")
            ),
            "arr": rng.lognormal(9, 1.2, n_subscriptions),
            "seats": rng.integers(1, 500, n_subscriptions).astype("float64"),
        }
    )
    seats = rng.integers(5, 500, usage_rows)
    tables["usage"] = pa.table(
        {
            "account_id": ids.take(pa.array(rng.integers(0, accounts, usage_rows))),
            "date": dates(usage_rows),
            "active_users": (seats * rng.random(usage_rows)).round(),
            "events": rng.poisson(40, usage_rows).astype("float64"),
            "seats_licensed": seats.astype("float64"),
        }
    )
    for name, table in tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    sources = folder / "sources.yaml"
    document = {
        "name": "load-benchmark",
        "tables": {name: {"path": f"{name}.parquet"} for name in tables},
    }
    sources.write_text(yaml.safe_dump(document, sort_keys=False))
    return sources


def run(accounts: int, usage_rows: int) -> LoadBenchmark:
    with tempfile.TemporaryDirectory(prefix="load-benchmark-") as folder:
        started = time.perf_counter()
        sources = write_large_portfolio(Path(folder), accounts, usage_rows)
        written = time.perf_counter()
        loaded = load_sources(sources)
        finished = time.perf_counter()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return LoadBenchmark(
        accounts=accounts,
        usage_rows=usage_rows,
        rows_total=sum(len(frame) for frame in loaded.tables.values()),
        write_seconds=written - started,
        load_seconds=finished - written,
        peak_rss_gb=peak_kb / 1024**2,
        issues=len(loaded.report.issues),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--usage-rows", type=int, default=10_000_000)
    arguments = parser.parse_args()
    result = run(arguments.accounts, arguments.usage_rows)
    table = Table(title="load_sources on Parquet")
    for name in ("accounts", "usage rows", "rows loaded", "load s", "peak RSS GB", "issues"):
        table.add_column(name, justify="right")
    table.add_row(
        f"{result.accounts:,}",
        f"{result.usage_rows:,}",
        f"{result.rows_total:,}",
        f"{result.load_seconds:.1f}",
        f"{result.peak_rss_gb:.2f}",
        str(result.issues),
    )
    Console().print(table)


if __name__ == "__main__":
    main()
