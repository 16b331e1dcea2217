"""Account features on Apache Spark, from the same definitions as the local engine.

The local engine (`features.build`) compiles the feature definitions
(`features.definitions`) into one DuckDB query per as-of date. This module
runs *that query* on Spark: `compile_feature_sql` gives the DuckDB SQL,
sqlglot transpiles it to Spark SQL, and Spark runs it over the contract
tables registered as temporary views. There is no second copy of the
feature logic; a definition added or changed in `features.definitions`
reaches both engines.

Two things the transpiler cannot know are fixed on the syntax tree
(`to_spark_sql`):

- DuckDB's `epoch(ts)` is seconds as a DOUBLE with the fraction; sqlglot
  maps it to Spark's `unix_timestamp`, which drops the fraction. It becomes
  `CAST(unix_micros(ts) AS DOUBLE) / 1e6`.
- A literal such as `86400.0` is a DECIMAL in both dialects, but DuckDB
  divides decimals in DOUBLE while Spark keeps DECIMAL arithmetic (rounded to
  a few places). Non-integer literals become DOUBLE.

Timestamps are naive (wall-clock, as the contract says): the views hold
`TIMESTAMP_NTZ` columns and the build runs with the session time zone set
to UTC, so no conversion shifts a date.

`spark_session(master)` opens a session bound to 127.0.0.1 (`local[*]` by
default, a cluster from the argument or `SPARK_MASTER`), quiet, with no
network downloads, and stops it on exit (a session that was already active
is reused and left running).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import sqlglot
from sqlglot import exp

from features.build import (
    AsOf,
    FeatureError,
    FeatureSession,
    check_as_of,
    compile_feature_sql,
    to_feature_dtypes,
)
from features.contract import CONTRACT, ColumnType, Tables
from features.definitions import FEATURES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

SPARK_MASTER_ENV = "SPARK_MASTER"
DEFAULT_MASTER = "local[*]"
LOOPBACK = "127.0.0.1"
LOG4J_CONFIG = Path(__file__).with_name("spark_log4j2.properties")

# pyspark warns on every pandas conversion that it "does not yet fully support pandas >= 3".
# The conversions here go through Arrow with explicit types, so the warning is noise.
PANDAS_VERSION_WARNING = "PySpark does not yet fully support pandas"

# Contract column type -> Spark SQL type of the view column.
SPARK_TYPES: dict[ColumnType, str] = {
    "id": "STRING",
    "string": "STRING",
    "date": "TIMESTAMP_NTZ",
    "number": "DOUBLE",
    "bool": "BOOLEAN",
}

# Contract column type -> Arrow type of a pandas column sent to Spark.
ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "id": pa.string(),
    "string": pa.string(),
    "date": pa.timestamp("us"),  # Spark keeps microseconds
    "number": pa.float64(),
    "bool": pa.bool_(),
}


# ---------------------------------------------------------------- the session


class SparkEngineError(FeatureError):
    """Spark cannot be started or used (Java missing, unreachable master, ...)."""


@dataclass(frozen=True)
class SparkSettings:
    """How `spark_session` starts Spark.

    master: a Spark master URL; None -> `$SPARK_MASTER`, else `local[*]`.
    driver_host: the address the driver binds to and advertises. The default
        (loopback) suits local masters; a cluster's executors must reach the
        driver, so set the machine's address for one.
    shuffle_partitions: `spark.sql.shuffle.partitions`; None -> 2 per local
        core for a local master (small data, few tasks), Spark's default on a
        cluster (adaptive execution coalesces small partitions).
    conf: further Spark settings, applied last.
    """

    master: str | None = None
    app_name: str = "account-portfolio"
    driver_host: str = LOOPBACK
    shuffle_partitions: int | None = None
    driver_memory: str | None = None
    log_level: str = "ERROR"
    conf: Mapping[str, str] = field(default_factory=dict)


def resolve_master(master: str | None = None) -> str:
    """The master to use: the argument, else `$SPARK_MASTER`, else `local[*]`."""
    chosen = master or os.environ.get(SPARK_MASTER_ENV) or DEFAULT_MASTER
    return chosen.strip()


def local_cores(master: str) -> int | None:
    """Cores of a `local`, `local[N]` or `local[*]` master; None for a cluster master."""
    match = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master)
    if match is None:
        return None
    cores = match.group(1)
    if cores is None:
        return 1
    return os.cpu_count() or 1 if cores == "*" else int(cores)


def session_conf(settings: SparkSettings, master: str, warehouse_dir: str) -> dict[str, str]:
    """The Spark configuration `spark_session` starts with."""
    cores = local_cores(master)
    conf = {
        "spark.app.name": settings.app_name,
        "spark.master": master,
        "spark.driver.host": settings.driver_host,
        "spark.driver.bindAddress": settings.driver_host,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        "spark.sql.warehouse.dir": warehouse_dir,
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
        "spark.executorEnv.PYTHONWARNINGS": f"ignore:{PANDAS_VERSION_WARNING}:FutureWarning",
    }
    if cores is not None:
        # Python workers run this interpreter (the project's environment).
        conf["spark.pyspark.python"] = sys.executable
        conf["spark.pyspark.driver.python"] = sys.executable
    partitions = settings.shuffle_partitions or (2 * cores if cores is not None else None)
    if partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(partitions)
    if settings.driver_memory:
        conf["spark.driver.memory"] = settings.driver_memory
    conf.update(settings.conf)
    return conf


@contextmanager
def spark_session(
    master: str | None = None, settings: SparkSettings | None = None
) -> Iterator[SparkSession]:
    """A Spark session for the block; stopped on exit unless it was already running.

    `master` overrides `settings.master`; with neither, `$SPARK_MASTER` or
    `local[*]`. When a session is already active in this process it is
    reused as it is (and left running): Spark allows one per process.
    """
    from pyspark.sql import SparkSession

    settings = settings or SparkSettings()
    active = SparkSession.getActiveSession()
    if active is not None:
        wanted = master or settings.master
        if wanted and wanted != active.sparkContext.master:
            logger.warning(
                "a Spark session on %s is already running; using it instead of %s",
                active.sparkContext.master,
                wanted,
            )
        yield active
        return
    chosen = resolve_master(master or settings.master)
    with tempfile.TemporaryDirectory(prefix="portfolio-spark-") as warehouse:
        builder = SparkSession.builder
        for key, value in session_conf(settings, chosen, warehouse).items():
            builder = builder.config(key, value)
        logger.info("starting Spark on %s", chosen)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=PANDAS_VERSION_WARNING)
                session = builder.getOrCreate()
        except Exception as error:  # Java missing, a bad master URL, no free port, ...
            logger.debug("starting Spark failed", exc_info=True)
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise SparkEngineError(
                f"cannot start Spark on {chosen}: {type(error).__name__}: {first_line}"
            ) from error
        session.sparkContext.setLogLevel(settings.log_level)
        try:
            yield session
        finally:
            session.stop()


# ---------------------------------------------------------------- DuckDB SQL -> Spark SQL


def to_spark_sql(duckdb_sql: str, views: Mapping[str, str] | None = None) -> str:
    """DuckDB SQL transpiled to Spark SQL with DuckDB's numeric semantics kept.

    `views` renames tables (contract table -> registered view); each renamed
    table keeps its original name as alias, so qualified columns still resolve.
    """
    views = dict(views or {})

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.TimeToUnix):
            micros = exp.func("unix_micros", exp.cast(node.this, exp.DataType.Type.TIMESTAMPLTZ))
            return exp.Div(
                this=exp.cast(micros, exp.DataType.Type.DOUBLE),
                expression=exp.Literal.number("1e6"),
            )
        if (
            isinstance(node, exp.Literal)
            and not node.is_string
            and not isinstance(node.parent, exp.Cast)
            and re.search(r"[.eE]", node.this)
        ):
            return exp.cast(node.copy(), exp.DataType.Type.DOUBLE)
        if isinstance(node, exp.Table) and node.name in views and not node.args.get("db"):
            alias = node.alias or node.name
            return exp.to_table(views[node.name]).as_(alias)
        return node

    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    return tree.transform(rewrite).sql(dialect="spark")


# ---------------------------------------------------------------- contract tables as views


def arrow_contract_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """A contract frame's contract columns as an Arrow table of the contract types."""
    spec = CONTRACT[name]
    present = [column for column in spec.columns if column.name in frame.columns]
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in present])
    table = pa.Table.from_pandas(frame[[c.name for c in present]], preserve_index=False)
    # ns -> us for dates (Spark's precision) and large_string -> string.
    return table.cast(schema, safe=False)


def to_spark_frame(spark: SparkSession, name: str, frame: pd.DataFrame) -> SparkDataFrame:
    """A typed contract frame as a Spark DataFrame (through Arrow)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PANDAS_VERSION_WARNING)
        return spark.createDataFrame(arrow_contract_table(name, frame))


def contract_view_frame(name: str, frame: SparkDataFrame) -> SparkDataFrame:
    """Every contract column of `name`, cast to its Spark type (NULL when not given)."""
    from pyspark.sql import functions as F

    given = set(frame.columns)
    return frame.select(
        *[
            (F.col(f"`{c.name}`") if c.name in given else F.lit(None))
            .cast(SPARK_TYPES[c.type])
            .alias(c.name)
            for c in CONTRACT[name].columns
        ]
    )


@dataclass(frozen=True)
class ContractViews:
    """Contract tables registered as temporary views under names unique to one build."""

    views: dict[str, str]  # contract table -> view name

    def drop(self, spark: SparkSession) -> None:
        for view in self.views.values():
            spark.catalog.dropTempView(view)


def register_contract_views(spark: SparkSession, tables: Tables) -> ContractViews:
    """Register each contract table as a temporary view of every contract column, typed.

    The frames must have the contract dtypes (`FeatureSession.tables` has
    them). The view names are unique, so builds sharing a session, or a
    user's own view called `orders`, do not collide.
    """
    prefix = f"portfolio_{uuid.uuid4().hex[:12]}"
    views: dict[str, str] = {}
    for name, frame in tables.items():
        if name not in CONTRACT:
            raise FeatureError(
                f"unknown table {name!r}; the contract tables are: {', '.join(CONTRACT)}"
            )
        view = f"{prefix}_{name}"
        contract_view_frame(name, to_spark_frame(spark, name, frame)).createOrReplaceTempView(view)
        views[name] = view
    return ContractViews(views)


# ---------------------------------------------------------------- features on Spark


@contextmanager
def utc_session(spark: SparkSession) -> Iterator[None]:
    """Run the block with the session time zone set to UTC (restored afterwards)."""
    key = "spark.sql.session.timeZone"
    previous = spark.conf.get(key)
    spark.conf.set(key, "UTC")
    try:
        yield
    finally:
        spark.conf.set(key, previous)


@dataclass(frozen=True)
class SparkFeatures:
    """The feature query of one as-of date, planned on Spark (nothing computed yet)."""

    frame: SparkDataFrame
    as_of: pd.Timestamp
    feature_names: list[str]
    sql: str


def plan_account_features(spark: SparkSession, tables: Tables, as_of: AsOf) -> SparkFeatures:
    """The feature frame at `as_of` as a Spark DataFrame, for callers that stay on Spark.

    The tables are typed and checked, the as-of date checked and the query
    compiled exactly as the local engine does (`features.build.FeatureSession`:
    FeatureError naming table, column and rows, or the as-of date outside the
    data); Spark runs the transpiled query. The frame has the columns and row
    order of `build_account_features`.
    """
    with FeatureSession(tables) as session:
        day = check_as_of(session.period, as_of)
        duckdb_sql = compile_feature_sql(session.columns, day, session.unknown_columns(day))
        specs = session.features
        typed = session.tables
    with utc_session(spark):
        views = register_contract_views(spark, typed)
        try:
            sql = to_spark_sql(duckdb_sql, views.views)
            frame = spark.sql(sql)  # analysed now: the plan holds the views' definitions
        finally:
            views.drop(spark)
    return SparkFeatures(frame, day, [spec.name for spec in specs], sql)


def collect_features(planned: SparkFeatures) -> pd.DataFrame:
    """Run a planned feature frame and return it as the local engine's pandas frame."""
    frame = planned.frame
    with utc_session(frame.sparkSession):
        table = frame.toArrow()
    result = table.to_pandas()
    return to_feature_dtypes(result, [FEATURES[name] for name in planned.feature_names])


def spark_account_features(spark: SparkSession, tables: Tables, as_of: AsOf) -> pd.DataFrame:
    """`build_account_features` computed by Spark: the same columns, rows, order and dtypes."""
    planned = plan_account_features(spark, tables, as_of)
    features = collect_features(planned)
    accounts = tables.get("accounts")
    if isinstance(accounts, pd.DataFrame):
        warn_accounts_without_crm_row(features, accounts, planned.as_of)
    return features


def build_account_features_on_spark(
    tables: Tables,
    as_of: AsOf,
    master: str | None = None,
    spark: SparkSession | None = None,
) -> pd.DataFrame:
    """`build_account_features(tables, as_of)` on Spark, in a session of its own unless given one.

    `master` picks the Spark master (default `$SPARK_MASTER`, else `local[*]`).
    Starting Spark takes seconds: pass `spark` to reuse a session across calls.
    """
    if spark is not None:
        return spark_account_features(spark, tables, as_of)
    with spark_session(master) as session:
        return spark_account_features(session, tables, as_of)


WARNING_EXAMPLE_IDS = 10


def warn_accounts_without_crm_row(
    features: pd.DataFrame, accounts: pd.DataFrame, day: pd.Timestamp
) -> None:
    """Log the active accounts that have revenue but no row in `accounts`."""
    if features.empty:
        return
    known = features["account_id"].isin(accounts["account_id"])
    if known.all():
        return
    missing = features.loc[~known, "account_id"].tolist()
    logger.warning(
        "%d account(s) active at %s have revenue but no row in accounts; their "
        "firmographic features are missing: %s%s",
        len(missing),
        day.date(),
        ", ".join(missing[:WARNING_EXAMPLE_IDS]),
        " ..." if len(missing) > WARNING_EXAMPLE_IDS else "",
    )


__all__ = [
    "DEFAULT_MASTER",
    "SPARK_MASTER_ENV",
    "ContractViews",
    "SparkEngineError",
    "SparkFeatures",
    "SparkSettings",
    "build_account_features_on_spark",
    "collect_features",
    "plan_account_features",
    "register_contract_views",
    "resolve_master",
    "spark_account_features",
    "spark_session",
    "to_spark_sql",
]
