"""`portfolio features`: the point-in-time feature table at an as-of date, as Parquet."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from serving.cli.app import app, console, fail

logger = logging.getLogger(__name__)


@app.command("features")
def features_command(
    sources: Annotated[
        Path,
        typer.Option("--sources", help="The sources.yaml that maps your data onto the contract."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The Parquet file to write.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="As-of date YYYY-MM-DD: only rows dated on or before it are used "
            "(default: the last date in the data).",
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (DuckDB) or spark (same features, on Spark).")
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master URL with --engine spark (default: $SPARK_MASTER, else local[*]).",
        ),
    ] = None,
) -> None:
    """One row per account active at the as-of date, features from what was known then."""
    from features.build import FeatureError
    from features.snapshot import feature_snapshot, write_parquet_atomically
    from features.sources import SourcesError

    try:
        snapshot = feature_snapshot(sources, as_of, engine=engine, spark_master=spark_master)
    except SourcesError as error:
        raise fail(f"{sources} cannot be used:\n{error}") from None
    except FeatureError as error:
        raise fail(str(error)) from None
    started = time.perf_counter()
    try:
        write_parquet_atomically(snapshot.features, out)
    except OSError as error:
        logger.debug("writing %s failed", out, exc_info=True)
        raise fail(f"could not write {out}: {error}") from None
    write_seconds = time.perf_counter() - started

    table = Table(title=f"features at {snapshot.as_of.date()}")
    table.add_column("table")
    table.add_column("rows known at the as-of date", justify="right")
    for name, rows in snapshot.source_rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    warnings = len(snapshot.report.warnings)
    if warnings:
        console.print(
            f"{warnings} validation warning(s): see `portfolio validate --sources {sources}`"
        )
    console.print(
        f"{snapshot.accounts_active:,} accounts active, {snapshot.feature_count} features; "
        f"load {snapshot.load_seconds:.2f}s, features {snapshot.build_seconds:.2f}s, "
        f"write {write_seconds:.2f}s"
    )
    console.print(f"wrote [bold]{out}[/]")
