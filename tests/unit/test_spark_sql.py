"""features.spark_engine without Spark: the DuckDB -> Spark SQL rewrite and the session settings."""

from __future__ import annotations

import pytest

from features.build import compile_feature_sql
from features.contract import CONTRACT
from features.spark_engine import (
    DEFAULT_MASTER,
    LOOPBACK,
    SPARK_MASTER_ENV,
    SparkSettings,
    local_cores,
    resolve_master,
    session_conf,
    to_spark_sql,
)


def test_epoch_keeps_fractional_seconds() -> None:
    sql = to_spark_sql("SELECT (epoch(closed_at) - epoch(created_at)) / 3600.0 AS hours FROM t")
    assert "UNIX_TIMESTAMP" not in sql.upper()  # whole seconds only in Spark
    assert sql.count("CAST(UNIX_MICROS(CAST(") == 2
    assert "AS TIMESTAMP_LTZ)) AS DOUBLE) / 1e6" in sql


def test_decimal_literals_become_double_and_integers_stay() -> None:
    sql = to_spark_sql("SELECT x / 86400.0 AS a, x > 1e-09 AS b, y + 1 AS c FROM t")
    assert "CAST(86400.0 AS DOUBLE)" in sql
    assert "CAST(1e-09 AS DOUBLE)" in sql
    assert "y + 1 AS c" in sql


def test_literals_inside_casts_are_left_alone() -> None:
    assert to_spark_sql("SELECT CAST(0.5 AS DOUBLE) AS a FROM t").count("CAST(") == 1


def test_tables_become_views_under_their_own_name() -> None:
    sql = to_spark_sql(
        "SELECT usage.events, u.date FROM usage JOIN usage AS u USING (account_id)",
        {"usage": "portfolio_abc_usage"},
    )
    assert "FROM portfolio_abc_usage AS usage JOIN portfolio_abc_usage AS u" in sql
    assert "usage.events" in sql


def test_every_contract_table_of_the_feature_query_is_renamed() -> None:
    columns = {
        name: {column.name for column in CONTRACT[name].columns}
        for name in ("accounts", "subscriptions", "usage", "support_tickets", "nps", "invoices")
    }
    views = {name: f"view_{name}" for name in columns}
    sql = to_spark_sql(compile_feature_sql(columns, "2024-06-30"), views)
    for name, view in views.items():
        assert f"FROM {view} AS {name}" in sql or f"JOIN {view} AS {name}" in sql, name
    assert "EPOCH" not in sql.upper()
    assert "'2024-07-01 00:00:00'" in sql  # the cutoff: the day after the as-of date


def test_master_from_argument_then_environment_then_default(monkeypatch) -> None:
    monkeypatch.delenv(SPARK_MASTER_ENV, raising=False)
    assert resolve_master() == DEFAULT_MASTER
    monkeypatch.setenv(SPARK_MASTER_ENV, "spark://cluster:7077")
    assert resolve_master() == "spark://cluster:7077"
    assert resolve_master("local[2]") == "local[2]"


@pytest.mark.parametrize(
    ("master", "cores"),
    [("local", 1), ("local[3]", 3), ("local[4, 2]", 4), ("spark://h:7077", None), ("yarn", None)],
)
def test_local_cores(master: str, cores: int | None) -> None:
    assert local_cores(master) == cores


def test_local_session_binds_to_loopback_quietly_without_downloads() -> None:
    conf = session_conf(SparkSettings(), "local[2]", "/tmp/warehouse")
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == LOOPBACK
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    assert "log4j2.configurationFile" in conf["spark.driver.extraJavaOptions"]
    assert not any(key.startswith(("spark.jars", "spark.archives")) for key in conf)


def test_cluster_session_keeps_spark_defaults_and_takes_extra_settings() -> None:
    settings = SparkSettings(driver_host="10.0.0.5", conf={"spark.executor.memory": "4g"})
    conf = session_conf(settings, "spark://cluster:7077", "/tmp/warehouse")
    assert conf["spark.driver.bindAddress"] == "10.0.0.5"
    assert "spark.sql.shuffle.partitions" not in conf
    assert "spark.pyspark.python" not in conf  # executors use their own interpreter
    assert conf["spark.executor.memory"] == "4g"


def test_an_unknown_engine_is_a_feature_error() -> None:
    from features.build import FeatureError, build_account_features

    with pytest.raises(FeatureError, match="unknown engine 'dask'; engines: local, spark"):
        build_account_features({}, "2024-06-30", engine="dask")
