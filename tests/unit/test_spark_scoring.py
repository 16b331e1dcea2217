"""serving.spark_scoring without Spark: champions as text, score frames across the boundary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving.scoring import score_accounts
from serving.spark_scoring import ROW_COLUMN, ChampionText, ScoreLayout, to_json_text
from training.model import CalibratedBoostedClassifier
from training.registry import Champion


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame(
        {
            "account_id": pd.array([f"A{i:03d}" for i in range(n)], dtype="str"),
            "as_of": pd.to_datetime(["2024-06-30"] * n).astype("datetime64[ns]"),
            "arr": rng.uniform(1_000, 50_000, n),
            "tenure_days": rng.uniform(0, 900, n),
            "seats": rng.uniform(1, 100, n),
            "segment": pd.array(rng.choice(["smb", "enterprise"], n), dtype="str"),
        }
    )
    frame.loc[rng.random(n) < 0.1, "seats"] = np.nan
    return frame


@pytest.fixture(scope="module")
def champions(features: pd.DataFrame) -> tuple[Champion, Champion]:
    X = features.drop(columns=["account_id", "as_of"])
    params = dict(
        n_estimators=15, num_leaves=5, min_child_samples=10, calibration="platt", n_jobs=1
    )
    churn = CalibratedBoostedClassifier(**params).fit(X, (X["tenure_days"] < 300).astype(int))
    upsell = CalibratedBoostedClassifier(**params).fit(X, (X["seats"].fillna(0) > 60).astype(int))
    return (
        Champion("churn", "3", churn, "run-1", {"horizon_days": 90}),
        Champion("upsell", "5", upsell, None, {}),
    )


def test_a_champion_crosses_as_strings_and_scores_the_same(features, champions) -> None:
    churn, _ = champions
    text = ChampionText.from_champion(churn)
    assert all(isinstance(getattr(text, f), str) for f in ("booster_text", "model_json"))
    rebuilt = text.to_champion()
    assert (rebuilt.name, rebuilt.version, rebuilt.run_id) == ("churn", "3", "run-1")
    assert rebuilt.metadata == {"horizon_days": 90}
    np.testing.assert_array_equal(
        rebuilt.model.predict_proba(features), churn.model.predict_proba(features)
    )


def test_a_score_frame_survives_encoding_to_spark_types(features, champions) -> None:
    scores = score_accounts(features, *champions, top_k=2)
    layout = ScoreLayout.of(scores)
    assert layout.json_columns == ("reasons",)
    encoded = layout.encode(scores)
    assert isinstance(encoded["reasons"].iloc[0], str)
    json.loads(encoded["reasons"].iloc[0])
    back = layout.decode(encoded.assign(**{ROW_COLUMN: np.arange(len(scores))}))
    assert list(back.columns) == list(scores.columns)
    assert back.dtypes.to_dict() == scores.dtypes.to_dict()
    pd.testing.assert_frame_equal(back.drop(columns="reasons"), scores.drop(columns="reasons"))
    assert back["reasons"].tolist() == scores["reasons"].tolist()


def test_the_spark_schema_names_every_score_column(features, champions) -> None:
    scores = score_accounts(features.head(3), *champions)
    schema = ScoreLayout.of(scores).spark_schema()
    assert [f.name for f in schema.fields] == [*scores.columns, ROW_COLUMN]
    types = {f.name: f.dataType.simpleString() for f in schema.fields}
    assert types["p_churn"] == "double"
    assert types["as_of"] == "timestamp_ntz"
    assert types["reasons"] == "string"
    assert types["account_id"] == "string"


def test_json_text_keeps_floats_and_missing() -> None:
    value = [{"contribution": 0.1 + 0.2, "rank": np.int64(1), "value": None}]
    assert json.loads(to_json_text(value)) == [
        {"contribution": 0.30000000000000004, "rank": 1, "value": None}
    ]
    assert to_json_text(None) is None
    assert to_json_text(float("nan")) is None


def test_a_spark_feature_schema_maps_to_the_local_dtypes() -> None:
    from pyspark.sql import types as T

    from serving.spark_scoring import pandas_dtypes

    schema = T.StructType(
        [
            T.StructField("account_id", T.StringType()),
            T.StructField("as_of", T.TimestampNTZType()),
            T.StructField("arr", T.DoubleType()),
            T.StructField("plan", T.StringType()),
        ]
    )
    assert pandas_dtypes(schema) == {
        "account_id": "str",
        "as_of": "datetime64[ns]",
        "arr": "float64",
        "plan": "str",
    }
