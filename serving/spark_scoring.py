"""Scoring on Spark: `serving.scoring.score_accounts` run on every partition of the features.

`score_on_spark(features, churn, upsell)` gives the frame `score_accounts`
gives locally (same rows, order, columns, dtypes and values), computed by
Spark executors with `mapInPandas`:

- the champions travel as text: each model's LightGBM booster text and its
  `model.json` (`CalibratedBoostedClassifier.to_json_dict`), broadcast once;
  every partition rebuilds the models with
  `CalibratedBoostedClassifier.from_strings`. No model object is pickled.
- each Arrow batch of a partition goes through `score_accounts`, the function
  the nightly job and the service call, so scores and reasons cannot drift
  from the local engine.
- columns Spark has no type for (the `reasons` lists) cross back to the
  driver as JSON text and are decoded there; a row number carried through
  restores the input order.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.spark_engine import PANDAS_VERSION_WARNING, spark_session, utc_session
from serving.scoring import score_accounts
from training.model import CalibratedBoostedClassifier
from training.registry import Champion

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructType

logger = logging.getLogger(__name__)

ROW_COLUMN = "__portfolio_row"

# Default rows per Spark partition when scoring (memory for reasons stays bounded).
ROWS_PER_PARTITION = 50_000


class SparkScoringError(RuntimeError):
    """Scoring failed on an executor, or Spark returned other rows than it was given."""


# ---------------------------------------------------------------- champions as text


@dataclass(frozen=True)
class ChampionText:
    """A champion as plain strings: what crosses from the driver to Spark executors."""

    name: str
    version: str
    run_id: str | None
    booster_text: str
    model_json: str
    metadata_json: str

    @classmethod
    def from_champion(cls, champion: Champion) -> ChampionText:
        model = champion.model
        return cls(
            name=champion.name,
            version=str(champion.version),
            run_id=champion.run_id,
            booster_text=model.booster_.model_to_string(),
            model_json=json.dumps(model.to_json_dict(), allow_nan=False),
            metadata_json=json.dumps(champion.metadata, default=str),
        )

    def to_champion(self) -> Champion:
        model = CalibratedBoostedClassifier.from_strings(
            self.booster_text, self.model_json, source=f"{self.name} v{self.version}"
        )
        return Champion(self.name, self.version, model, self.run_id, json.loads(self.metadata_json))


# ---------------------------------------------------------------- frames across the boundary


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json_text(value: Any) -> str | None:
    """A cell of an object column as JSON (floats round-trip exactly; NaN kept)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return json.dumps(value, default=_json_default)


def spark_type(dtype: Any) -> DataType | None:
    """The Spark type of a pandas column, or None for columns sent as JSON text."""
    from pyspark.sql import types as T

    if isinstance(dtype, pd.StringDtype):
        return T.StringType()
    if pd.api.types.is_bool_dtype(dtype):
        return T.BooleanType()
    if pd.api.types.is_integer_dtype(dtype):
        return T.LongType()
    if pd.api.types.is_float_dtype(dtype):
        return T.DoubleType()
    if pd.api.types.is_datetime64_dtype(dtype):
        return T.TimestampNTZType()
    return None


@dataclass(frozen=True)
class ScoreLayout:
    """The columns and dtypes `score_accounts` returns, and how they cross Spark."""

    dtypes: dict[str, str]  # column -> pandas dtype name, in output order
    json_columns: tuple[str, ...]

    @classmethod
    def of(cls, scores: pd.DataFrame) -> ScoreLayout:
        json_columns = tuple(c for c in scores.columns if spark_type(scores[c].dtype) is None)
        dtypes = {c: str(scores[c].dtype) for c in scores.columns}
        return cls(dtypes, json_columns)

    def spark_schema(self) -> StructType:
        from pyspark.sql import types as T

        fields = [
            T.StructField(
                name,
                T.StringType()
                if name in self.json_columns
                else spark_type(pd.api.types.pandas_dtype(dtype)),
                True,
            )
            for name, dtype in self.dtypes.items()
        ]
        return T.StructType([*fields, T.StructField(ROW_COLUMN, T.LongType(), False)])

    def encode(self, scores: pd.DataFrame) -> pd.DataFrame:
        """Object columns as JSON text (executor side)."""
        return scores.assign(
            **{c: scores[c].map(to_json_text).astype("str") for c in self.json_columns}
        )

    def decode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The `score_accounts` frame back from what Spark returned (driver side)."""
        decoded = frame.assign(
            **{
                c: pd.Series(
                    [
                        None if text is None or pd.isna(text) else json.loads(text)
                        for text in frame[c]
                    ],
                    index=frame.index,
                    dtype=object,
                )
                for c in self.json_columns
            }
        )
        plain = {c: d for c, d in self.dtypes.items() if c not in self.json_columns}
        return decoded[list(self.dtypes)].astype(plain)


def feature_dtypes(features: pd.DataFrame) -> dict[str, str]:
    """Column -> dtype name, to give each executor batch the dtypes of the local frame."""
    return {c: str(features[c].dtype) for c in features.columns}


def features_to_spark(spark: SparkSession, features: pd.DataFrame) -> SparkDataFrame:
    """The feature frame (plus its row number) as a Spark DataFrame, through Arrow."""
    numbered = features.reset_index(drop=True).assign(
        **{ROW_COLUMN: np.arange(len(features), dtype=np.int64)}
    )
    table = pa.Table.from_pandas(numbered, preserve_index=False)
    # Spark keeps microseconds; large strings become strings.
    schema = pa.schema(
        [
            pa.field(f.name, pa.timestamp("us"))
            if pa.types.is_timestamp(f.type)
            else pa.field(f.name, pa.string())
            if pa.types.is_large_string(f.type)
            else f
            for f in table.schema
        ]
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PANDAS_VERSION_WARNING)
        return spark.createDataFrame(table.cast(schema, safe=False))


# ---------------------------------------------------------------- scoring


def score_partitions(
    spark_features: SparkDataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int,
    dtypes: Mapping[str, str],
    layout: ScoreLayout,
) -> SparkDataFrame:
    """The lazy Spark frame of scores: `score_accounts` on every Arrow batch of every partition."""
    spark = spark_features.sparkSession
    models = spark.sparkContext.broadcast(
        (ChampionText.from_champion(churn), ChampionText.from_champion(upsell))
    )
    batch_dtypes = {c: d for c, d in dtypes.items() if c != ROW_COLUMN}

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        churn_text, upsell_text = models.value
        churn_model, upsell_model = churn_text.to_champion(), upsell_text.to_champion()
        for batch in batches:
            rows = batch[ROW_COLUMN].to_numpy(dtype=np.int64)
            frame = batch.drop(columns=[ROW_COLUMN]).astype(batch_dtypes)
            scores = score_accounts(frame, churn_model, upsell_model, top_k=top_k)
            yield layout.encode(scores).assign(**{ROW_COLUMN: rows})

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PANDAS_VERSION_WARNING)
        return spark_features.mapInPandas(score_batches, layout.spark_schema())


def collect_arrow(frame: SparkDataFrame) -> pa.Table:
    """Run `frame`; an error raised by Python code on an executor becomes a SparkScoringError."""
    from pyspark.errors import PythonException

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PANDAS_VERSION_WARNING)
            return frame.toArrow()
    except PythonException as error:
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        raise SparkScoringError(
            f"scoring failed on a Spark executor: {lines[-1] if lines else error}"
        ) from error


def score_on_spark(
    features: pd.DataFrame | SparkDataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int = 3,
    spark: SparkSession | None = None,
    master: str | None = None,
    partitions: int | None = None,
) -> pd.DataFrame:
    """`score_accounts(features, churn, upsell, top_k)` computed on Spark.

    `features` is a pandas frame or a Spark DataFrame (e.g.
    `features.spark_engine.plan_account_features(...).frame`, scored where
    it is computed). The result is what `score_accounts` returns for the
    same rows: same order, columns, dtypes and values.

    pandas input: `spark` reuses a session; otherwise one is started on
    `master` (default `$SPARK_MASTER`, else `local[*]`) and stopped
    afterwards. The driver scores the first row before Spark starts, so
    input errors (e.g. a missing or negative `arr`) are raised as
    `score_accounts` raises them; `partitions` defaults to one per
    `ROWS_PER_PARTITION` rows (each Python worker imports the scoring code
    once, so a small frame is best scored by one).

    Spark input: scored in its own session and partitioning (or
    `partitions`); an error on an executor is a SparkScoringError.
    """
    if not isinstance(features, pd.DataFrame):
        return score_spark_features(features, churn, upsell, top_k, partitions)
    sample = score_accounts(features.head(1), churn, upsell, top_k=top_k)
    if features.empty:
        return sample
    if spark is None:
        with spark_session(master) as session:
            return score_on_spark(features, churn, upsell, top_k, session, partitions=partitions)
    wanted = partitions or max(1, math.ceil(len(features) / ROWS_PER_PARTITION))
    with utc_session(spark):  # naive timestamps cross unshifted
        return collect_scores(
            features_to_spark(spark, features),
            churn,
            upsell,
            top_k,
            feature_dtypes(features),
            ScoreLayout.of(sample),
            wanted,
            expected_rows=len(features),
        )


def score_spark_features(
    features: SparkDataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int = 3,
    partitions: int | None = None,
) -> pd.DataFrame:
    """`score_on_spark` for a Spark DataFrame of features (rows in the frame's order)."""
    from pyspark.sql import functions as F

    dtypes = pandas_dtypes(features.schema)
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
    layout = ScoreLayout.of(score_accounts(empty, churn, upsell, top_k=top_k))
    # Increasing with the frame's order (partition by partition): sorting on it restores it.
    numbered = features.withColumn(ROW_COLUMN, F.monotonically_increasing_id())
    with utc_session(features.sparkSession):
        return collect_scores(
            numbered,
            churn,
            upsell,
            top_k,
            dtypes,
            layout,
            partitions or numbered.rdd.getNumPartitions(),
            expected_rows=None,
        )


def pandas_dtypes(schema: StructType) -> dict[str, str]:
    """The pandas dtype of each column of a Spark feature frame (as the local engine types it)."""
    from pyspark.sql import types as T

    dtypes: dict[str, str] = {}
    for spark_field in schema.fields:
        kind = spark_field.dataType
        if isinstance(kind, T.StringType):
            dtypes[spark_field.name] = "str"
        elif isinstance(kind, T.TimestampType | T.TimestampNTZType | T.DateType):
            dtypes[spark_field.name] = "datetime64[ns]"
        elif isinstance(kind, T.BooleanType):
            dtypes[spark_field.name] = "boolean"
        elif isinstance(kind, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
            dtypes[spark_field.name] = "int64"
        else:
            dtypes[spark_field.name] = "float64"
    return dtypes


def collect_scores(
    numbered: SparkDataFrame,
    churn: Champion,
    upsell: Champion,
    top_k: int,
    dtypes: Mapping[str, str],
    layout: ScoreLayout,
    partitions: int,
    expected_rows: int | None,
) -> pd.DataFrame:
    """Score a row-numbered Spark frame in `partitions` partitions and bring the scores back in order."""
    current = numbered.rdd.getNumPartitions()
    if partitions < current:
        numbered = numbered.coalesce(partitions)
    elif partitions > current:
        numbered = numbered.repartition(partitions)
    scored = score_partitions(numbered, churn, upsell, top_k, dtypes, layout)
    frame = collect_arrow(scored).to_pandas().sort_values(ROW_COLUMN, kind="stable")
    rows = frame[ROW_COLUMN].to_numpy()
    if expected_rows is not None and not np.array_equal(rows, np.arange(expected_rows)):
        raise SparkScoringError(
            f"Spark returned {len(rows)} score rows for {expected_rows} feature rows"
        )
    if expected_rows is None and len(np.unique(rows)) != len(rows):
        raise SparkScoringError("Spark returned a feature row's scores more than once")
    return layout.decode(frame.reset_index(drop=True))


__all__ = [
    "ChampionText",
    "ScoreLayout",
    "SparkScoringError",
    "collect_scores",
    "score_on_spark",
    "score_partitions",
    "score_spark_features",
]
