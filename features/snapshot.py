"""A feature snapshot from a `sources.yaml`: load, compute at an as-of date, write Parquet.

`feature_snapshot(path, as_of)` is what `portfolio features` runs: it loads
the sources (typed and validated), refuses data with validation errors,
computes the features at the as-of date (default: the last date in the data)
and says how many accounts were active, how many rows each table contributed
and how long each step took. `write_parquet_atomically` writes the result so
that a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.build import (
    FEATURE_ENGINES,
    AsOf,
    DataPeriod,
    FeatureError,
    FeatureSession,
    check_as_of,
    source_row_counts,
)
from features.definitions import FEATURE_SET_NAME, FEATURE_SET_VERSION
from features.issues import ValidationReport
from features.sources import SourcesError, load_sources


@dataclass(frozen=True)
class FeatureSnapshot:
    """Features at one as-of date with what it took to compute them."""

    features: pd.DataFrame
    as_of: pd.Timestamp
    period: DataPeriod
    # table -> rows dated on or before the as-of date (accounts: all rows)
    source_rows: dict[str, int]
    report: ValidationReport
    load_seconds: float
    build_seconds: float

    @property
    def accounts_active(self) -> int:
        return len(self.features)

    @property
    def feature_count(self) -> int:
        return self.features.shape[1] - 2  # minus account_id and as_of


def feature_snapshot(
    sources: str | Path,
    as_of: AsOf | None = None,
    engine: str = "local",
    spark_master: str | None = None,
) -> FeatureSnapshot:
    """Load `sources` (a sources.yaml) and compute the features at `as_of` (default: the last day).

    `engine` "spark" computes them on Spark (`features.spark_engine`; master
    `spark_master`, else `$SPARK_MASTER`, else `local[*]`) with the same result.
    Raises SourcesError when the sources cannot be loaded or fail validation,
    FeatureError when the as-of date lies outside the data or the engine is unknown.
    """
    if engine not in FEATURE_ENGINES:
        raise FeatureError(f"unknown engine {engine!r}; engines: {', '.join(FEATURE_ENGINES)}")
    started = time.perf_counter()
    loaded = load_sources(sources)
    if not loaded.report.ok:
        raise SourcesError.from_issues(loaded.report.errors)
    loaded_at = time.perf_counter()
    with FeatureSession(loaded.tables) as session:
        day = check_as_of(session.period, session.period.last_day if as_of is None else as_of)
        features = session.account_features(day) if engine == "local" else None
        period = session.period
    if features is None:
        from features.spark_engine import build_account_features_on_spark

        features = build_account_features_on_spark(loaded.tables, day, master=spark_master)
    built_at = time.perf_counter()
    return FeatureSnapshot(
        features=features,
        as_of=day,
        period=period,
        source_rows=source_row_counts(loaded.tables, day),
        report=loaded.report,
        load_seconds=loaded_at - started,
        build_seconds=built_at - loaded_at,
    )


def write_parquet_atomically(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write `frame` to `path` as Parquet via a temporary file in the same folder, then rename.

    The file's metadata names the feature set and version it holds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame = frame.copy()
    frame.attrs = {
        "feature_set": FEATURE_SET_NAME,
        "feature_set_version": FEATURE_SET_VERSION,
    }
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


__all__ = ["FeatureSnapshot", "feature_snapshot", "write_parquet_atomically"]
