"""The Spark engine against the local one: identical features and identical scores.

One local Spark session (`local[2]`, on 127.0.0.1) serves the whole module.
The portfolios are small: generated (200 accounts, 18 months, SaaS and
orders) and the public RavenStack and CDNOW examples. Features are compared
column by column (same rows, order, dtypes, values to 1e-9, missing values
in the same places), scores row by row, and the nightly job's published
files file by file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_account_features, data_period
from features.contract import Tables
from features.definitions import FEATURES
from features.sources import load_sources
from features.spark_engine import plan_account_features, spark_account_features, spark_session
from features.synthetic import GeneratorSettings, generate_portfolio, write_portfolio
from serving.scoring import score_accounts
from serving.spark_scoring import score_on_spark
from training.model import CalibratedBoostedClassifier
from training.registry import Champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    with spark_session("local[2]") as session:
        yield session


@pytest.fixture
def new_york_session_time(spark) -> Iterator[None]:
    """The session's time zone is not UTC: naive contract dates must not shift."""
    key = "spark.sql.session.timeZone"
    previous = spark.conf.get(key)
    spark.conf.set(key, "America/New_York")
    yield
    assert spark.conf.get(key) == "America/New_York"  # the engine restored it
    spark.conf.set(key, previous)


def _portfolio(kind: str) -> Tables:
    return generate_portfolio(
        GeneratorSettings(n_accounts=200, months=18, seed=3, kind=kind)
    ).tables


@pytest.fixture(scope="module")
def saas() -> Tables:
    return _portfolio("saas")


@pytest.fixture(scope="module")
def orders() -> Tables:
    return _portfolio("orders")


def with_gaps(tables: Tables, as_of: pd.Timestamp) -> Tables:
    """Edge cases: an optional column nobody filled, an active account without a CRM row."""
    gapped = dict(tables)
    tickets = tables["support_tickets"].copy()
    tickets["csat"] = np.nan
    gapped["support_tickets"] = tickets
    subscriptions = tables["subscriptions"]
    running = subscriptions[
        (subscriptions["start_date"] <= as_of) & subscriptions["end_date"].isna()
    ]
    orphan = running["account_id"].iloc[0]
    gapped["accounts"] = tables["accounts"][tables["accounts"]["account_id"] != orphan]
    return gapped


def mid_history(tables: Tables) -> pd.Timestamp:
    return data_period(tables).last_day - pd.Timedelta(days=45)


def assert_identical_features(local: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert list(spark.columns) == list(local.columns)
    assert spark.dtypes.to_dict() == local.dtypes.to_dict()
    assert spark["account_id"].tolist() == local["account_id"].tolist()
    assert (spark["as_of"] == local["as_of"]).all()
    for column in local.columns[2:]:
        ours, theirs = local[column], spark[column]
        np.testing.assert_array_equal(
            ours.isna().to_numpy(), theirs.isna().to_numpy(), err_msg=f"missing {column}"
        )
        if FEATURES[column].kind == "categorical":
            assert ours.dropna().tolist() == theirs.dropna().tolist(), column
        else:
            known = ours.notna().to_numpy()
            np.testing.assert_allclose(
                theirs.to_numpy()[known],
                ours.to_numpy()[known],
                rtol=TOLERANCE,
                atol=TOLERANCE,
                err_msg=column,
            )


def test_orders_portfolio_gives_identical_features(spark, orders) -> None:
    as_of = data_period(orders).last_day
    local = build_account_features(orders, as_of)
    on_spark = spark_account_features(spark, orders, as_of)
    assert len(local) > 100  # most of the 200 accounts are active
    assert_identical_features(local, on_spark)
    # Every feature column holds values (a comparison of empty columns proves nothing).
    assert local.iloc[:, 2:].notna().any().all()


def test_saas_portfolio_with_gaps_gives_identical_features(
    spark, saas, caplog, new_york_session_time
) -> None:
    as_of = mid_history(saas)
    tables = with_gaps(saas, as_of)
    local = build_account_features(tables, as_of)
    with caplog.at_level(logging.WARNING, logger="features.spark_engine"):
        on_spark = spark_account_features(spark, tables, as_of)
    assert len(local) > 100
    assert_identical_features(local, on_spark)
    unknown = {"support_csat_mean_180d"}  # a column nobody filled: missing, never 0
    assert local[sorted(unknown)].isna().all().all()
    assert local.drop(columns=sorted(unknown)).iloc[:, 2:].notna().any().all()
    assert (local["parent_arr_share"].dropna() < 1).any()  # children share their parent's ARR
    assert "no row in accounts" in caplog.text


@pytest.mark.parametrize("example", ["ravenstack", "cdnow"])
def test_public_datasets_give_identical_features(spark, example: str) -> None:
    """RavenStack (multi-table SaaS) and CDNOW (orders) through their example mappings."""
    mapping = Path(__file__).resolve().parents[2] / "examples" / example / "sources.yaml"
    tables = load_sources(mapping).tables
    as_of = data_period(tables).last_day
    local = build_account_features(tables, as_of)
    assert len(local) >= 500
    assert_identical_features(local, spark_account_features(spark, tables, as_of))


# ---------------------------------------------------------------- scoring


def _champions(features: pd.DataFrame) -> tuple[Champion, Champion]:
    """Two small models trained here on labels derived from the features (with noise)."""
    rng = np.random.default_rng(7)
    X = features.drop(columns=["account_id", "as_of"])
    noise = rng.normal(0, 0.25, len(X))
    churn_y = ((X["seat_utilisation_28d"].fillna(0.6) + noise) < 0.6).astype(int)
    upsell_y = ((X["arr"].rank(pct=True) + noise) > 0.7).astype(int)
    params = dict(
        n_estimators=25, num_leaves=7, min_child_samples=10, calibration="platt", n_jobs=1
    )
    churn = CalibratedBoostedClassifier(**params).fit(X, churn_y)
    upsell = CalibratedBoostedClassifier(**params).fit(X, upsell_y)
    return (
        Champion("portfolio-churn", "4", churn, "run-churn", {"horizon_days": 90}),
        Champion("portfolio-upsell", "9", upsell, "run-upsell", {}),
    )


def test_spark_scores_equal_local_scores(spark, saas, new_york_session_time) -> None:
    """Features computed and scored on Spark (2 partitions) = local features scored locally."""
    as_of = data_period(saas).last_day
    features = build_account_features(saas, as_of)
    churn, upsell = _champions(features)
    local = score_accounts(features, churn, upsell, top_k=3)
    spark_features = plan_account_features(spark, saas, as_of).frame
    on_spark = score_on_spark(spark_features, churn, upsell, top_k=3, partitions=2)

    assert list(on_spark.columns) == list(local.columns)
    assert on_spark.dtypes.to_dict() == local.dtypes.to_dict()
    assert len(on_spark) == len(features)
    for column in local.columns:
        if pd.api.types.is_float_dtype(local[column].dtype):
            np.testing.assert_allclose(
                on_spark[column], local[column], rtol=TOLERANCE, atol=TOLERANCE, err_msg=column
            )
        elif column != "reasons":
            assert on_spark[column].tolist() == local[column].tolist(), column
    assert local["p_churn"].std() > 0.01  # the models discriminate: equal scores mean something
    for ours, theirs in zip(local["reasons"], on_spark["reasons"], strict=True):
        assert len(theirs) == len(ours) == 6  # top 3 of each model
        for mine, spark_reason in zip(ours, theirs, strict=True):
            assert {k: v for k, v in spark_reason.items() if k != "contribution"} == {
                k: v for k, v in mine.items() if k != "contribution"
            }
            assert spark_reason["contribution"] == pytest.approx(
                mine["contribution"], abs=TOLERANCE
            )


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def small_sources(tmp_path_factory) -> Path:
    """A small generated portfolio written as Parquet with its sources.yaml."""
    portfolio = generate_portfolio(GeneratorSettings(n_accounts=80, months=12, seed=5))
    return write_portfolio(portfolio, tmp_path_factory.mktemp("spark") / "portfolio")


def test_features_command_on_spark(spark, small_sources, tmp_path) -> None:
    from serving.cli import commands  # noqa: F401  (registers the subcommands)
    from serving.cli.app import app

    sources = small_sources
    runner = CliRunner()
    outputs = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"features-{engine}.parquet"
        result = runner.invoke(
            app,
            ["features", "--sources", str(sources), "--out", str(out), "--engine", engine],
        )
        assert result.exit_code == 0, result.output
        outputs[engine] = pd.read_parquet(out)
    assert len(outputs["local"]) > 20
    assert_identical_features(outputs["local"], outputs["spark"])


def test_nightly_job_on_spark_publishes_the_local_scores(
    spark, small_sources, tmp_path, monkeypatch
) -> None:
    from serving import batch

    tables = load_sources(small_sources).tables
    day = data_period(tables).last_day
    training_features = build_account_features(tables, day)
    champions = _champions(training_features)
    monkeypatch.setattr(batch, "load_champions", lambda: champions)
    settings = batch.NightlyJobSettings(allocate=False)
    runs = {
        engine: batch.run_nightly_job(
            small_sources, day, tmp_path / engine, settings=settings, engine=engine
        )
        for engine in ("local", "spark")
    }
    assert runs["spark"].manifest["engine"] == "spark"
    assert runs["spark"].scored == runs["local"].scored > 20
    for name in ("features", "scores"):
        local = pd.read_parquet(runs["local"].paths[name])
        on_spark = pd.read_parquet(runs["spark"].paths[name])
        pd.testing.assert_frame_equal(on_spark, local, rtol=TOLERANCE, atol=TOLERANCE)
