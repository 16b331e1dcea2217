"""The Spark engine beside the local one: time of features and scoring, and their agreement.

Generates a synthetic SaaS portfolio (default 20,000 accounts x 24 months),
computes the features at the last date with the local engine (DuckDB) and
on Spark (`local[*]` unless `--master` or `$SPARK_MASTER` says otherwise),
trains two small models on the features, scores the accounts locally and on
Spark, and reports the times (Spark start-up apart; the first Spark query
warms the JVM, so it runs twice) and the largest differences between the
engines. Run with:

    uv run python -m benchmarks.spark [--accounts N] [--months M] [--master URL]

Results are recorded by hand in docs/benchmarks.md ("Spark engine").
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from features.build import build_account_features, data_period
from features.definitions import FEATURES
from features.spark_engine import spark_account_features, spark_session
from features.synthetic import GeneratorSettings, generate_portfolio
from serving.scoring import score_accounts
from serving.spark_scoring import score_on_spark
from training.model import CalibratedBoostedClassifier
from training.registry import Champion


@dataclass(frozen=True)
class SparkBenchmark:
    accounts: int
    source_rows: int
    active_accounts: int
    local_features_seconds: float
    spark_start_seconds: float
    spark_features_first_seconds: float
    spark_features_seconds: float
    local_score_seconds: float
    spark_score_seconds: float
    feature_max_difference: float
    missing_positions_equal: bool
    score_max_difference: float


def small_champions(features: pd.DataFrame) -> tuple[Champion, Champion]:
    """Two models trained on labels drawn from the features (speed matters here, not skill)."""
    rng = np.random.default_rng(0)
    X = features.drop(columns=["account_id", "as_of"])
    noise = rng.normal(0, 0.25, len(X))
    churn_y = ((X["seat_utilisation_28d"].fillna(0.6) + noise) < 0.6).astype(int)
    upsell_y = ((X["arr"].rank(pct=True) + noise) > 0.7).astype(int)
    params = dict(n_estimators=100, num_leaves=15, calibration="platt", n_jobs=1)
    churn = CalibratedBoostedClassifier(**params).fit(X, churn_y)
    upsell = CalibratedBoostedClassifier(**params).fit(X, upsell_y)
    return Champion("churn", "1", churn, None, {}), Champion("upsell", "1", upsell, None, {})


def feature_difference(local: pd.DataFrame, spark: pd.DataFrame) -> tuple[float, bool]:
    """Largest absolute difference of the numeric features, and whether NaNs sit in the same cells."""
    if list(local["account_id"]) != list(spark["account_id"]):
        return float("inf"), False
    numeric = [c for c in local.columns[2:] if FEATURES[c].kind == "numeric"]
    ours, theirs = local[numeric].to_numpy(float), spark[numeric].to_numpy(float)
    same_missing = bool((np.isnan(ours) == np.isnan(theirs)).all())
    known = ~np.isnan(ours) & ~np.isnan(theirs)
    return float(np.abs(ours[known] - theirs[known]).max(initial=0.0)), same_missing


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def run(accounts: int, months: int, master: str | None) -> SparkBenchmark:
    tables = generate_portfolio(
        GeneratorSettings(n_accounts=accounts, months=months, seed=11)
    ).tables
    as_of = data_period(tables).last_day
    local, local_seconds = timed(build_account_features, tables, as_of)
    champions = small_champions(local)
    local_scores, local_score_seconds = timed(score_accounts, local, *champions)

    started = time.perf_counter()
    with spark_session(master) as spark:
        spark_start = time.perf_counter() - started
        _, first_seconds = timed(spark_account_features, spark, tables, as_of)
        on_spark, spark_seconds = timed(spark_account_features, spark, tables, as_of)
        spark_scores, spark_score_seconds = timed(score_on_spark, local, *champions, spark=spark)
    difference, same_missing = feature_difference(local, on_spark)
    score_difference = max(
        float(np.abs(local_scores[c] - spark_scores[c]).max()) for c in ("p_churn", "p_upsell")
    )
    return SparkBenchmark(
        accounts=accounts,
        source_rows=sum(len(frame) for frame in tables.values()),
        active_accounts=len(local),
        local_features_seconds=local_seconds,
        spark_start_seconds=spark_start,
        spark_features_first_seconds=first_seconds,
        spark_features_seconds=spark_seconds,
        local_score_seconds=local_score_seconds,
        spark_score_seconds=spark_score_seconds,
        feature_max_difference=difference,
        missing_positions_equal=same_missing,
        score_max_difference=score_difference,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--master", default=None, help="Spark master (default local[*])")
    arguments = parser.parse_args()
    result = run(arguments.accounts, arguments.months, arguments.master)
    table = Table(title="features and scoring: local vs Spark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = {
        "accounts generated": f"{result.accounts:,}",
        "source rows": f"{result.source_rows:,}",
        "active accounts": f"{result.active_accounts:,}",
        "local features (DuckDB)": f"{result.local_features_seconds:.2f} s",
        "Spark start-up": f"{result.spark_start_seconds:.1f} s",
        "Spark features, first query": f"{result.spark_features_first_seconds:.1f} s",
        "Spark features, second query": f"{result.spark_features_seconds:.1f} s",
        "local scoring (score_accounts)": f"{result.local_score_seconds:.2f} s",
        "Spark scoring (mapInPandas)": f"{result.spark_score_seconds:.1f} s",
        "largest feature difference": f"{result.feature_max_difference:.3g}",
        "missing values in the same cells": str(result.missing_positions_equal),
        "largest score difference": f"{result.score_max_difference:.3g}",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    Console().print(table)


if __name__ == "__main__":
    main()
