"""Training without tracking, then logging, registering and gating the result later.

`train_from_sources(..., panel=...)` reuses a panel that was already built;
`log_target` and `gate_target` are the steps `portfolio train` runs after
fitting, callable on a result trained with `track=False` (the notebooks'
challenger flow).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import build_training_panel, default_snapshot_dates
from features.synthetic import GeneratorSettings, generate_portfolio
from training.backtest import backtest_dates, run_backtest, walk_forward_models
from training.compare import (
    champion_or_none,
    compare_with_champion,
    evaluation_features,
    metrics_vs_baselines,
)
from training.pipeline import (
    TrainingError,
    TrainingSettings,
    gate_target,
    log_target,
    train_from_sources,
)
from training.registry import champion_version, list_versions
from training.tuning import TuningSettings

HORIZON = 90
pytestmark = pytest.mark.slow  # trains small models and logs to a SQLite MLflow store


@pytest.fixture(scope="module")
def tables():
    return generate_portfolio(GeneratorSettings(n_accounts=150, months=18, seed=3)).tables


@pytest.fixture(scope="module")
def panel(tables):
    return build_training_panel(tables, default_snapshot_dates(tables, None, HORIZON), HORIZON)


def _settings(**changes) -> TrainingSettings:
    quick = TuningSettings(n_trials=1, timeout_seconds=30, max_rounds=60)
    return TrainingSettings(tuning=quick, **{"track": False, **changes})


@pytest.fixture(scope="module")
def untracked(tables, panel):
    return train_from_sources(
        tables, horizon_days=HORIZON, target="churn", settings=_settings(), panel=panel
    )


def test_a_given_panel_trains_the_same_model_as_a_rebuilt_one(tables, untracked):
    rebuilt = train_from_sources(tables, horizon_days=HORIZON, target="churn", settings=_settings())
    given, built = untracked.targets["churn"], rebuilt.targets["churn"]
    assert given.data == built.data
    assert given.metrics == pytest.approx(built.metrics, nan_ok=True)
    pd.testing.assert_frame_equal(given.evaluation, built.evaluation)


def test_snapshots_a_given_panel_lacks_are_built(tables, panel, untracked):
    last = panel["as_of"].max()
    partial = train_from_sources(
        tables,
        horizon_days=HORIZON,
        target="churn",
        settings=_settings(),
        panel=panel[panel["as_of"] < last],
    )
    pd.testing.assert_frame_equal(
        partial.targets["churn"].evaluation, untracked.targets["churn"].evaluation
    )
    with pytest.raises(TrainingError, match="no churn"):
        train_from_sources(
            tables,
            horizon_days=HORIZON,
            target="churn",
            settings=_settings(),
            panel=panel.drop(columns=["churn"]),
        )
    with pytest.raises(TrainingError, match="columns differ"):
        train_from_sources(
            tables,
            horizon_days=HORIZON,
            target="churn",
            settings=_settings(),
            panel=panel[panel["as_of"] < last].drop(columns=["arr"]),
        )


def test_untracked_result_keeps_what_logging_needs(untracked):
    result = untracked.targets["churn"]
    assert result.logged is None and result.gate is None
    record = result.record
    assert record is not None
    assert len(record.input_example) == len(result.evaluation)
    np.testing.assert_array_equal(record.evaluation_labels, result.evaluation["label"])
    np.testing.assert_allclose(record.evaluation_scores["model"], result.evaluation["p"])


def test_log_register_then_gate_later(untracked, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # MLflow writes both variables when logging: set here, they are restored afterwards
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    result = untracked.targets["churn"]
    with pytest.raises(TrainingError, match="no registered version"):
        gate_target(result, _settings(tracking_uri=uri))

    log_target(result, _settings(track=True, register=True, promote=False, tracking_uri=uri))
    assert result.model_version == "1"
    assert result.gate is None
    assert champion_version("churn", uri=uri) is None  # registered, not promoted
    with pytest.raises(TrainingError, match="already logged"):
        log_target(result, _settings(track=True, tracking_uri=uri))

    assert champion_or_none("churn", uri=uri) is None
    decision = gate_target(result, _settings(tracking_uri=uri))
    assert decision.promote and decision.reason == "no champion yet"
    assert champion_version("churn", uri=uri) == "1"
    (version,) = list_versions(uri=uri, targets=("churn",))
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["evaluation"] == result.data["evaluation"]
    champion = champion_or_none("churn", uri=uri)
    assert champion is not None and champion.version == "1"


def test_challenger_comparison_uses_its_evaluation_rows(untracked):
    result = untracked.targets["churn"]
    comparison = compare_with_champion(result, None)
    assert comparison.evaluation == result.data["evaluation"]
    pd.testing.assert_frame_equal(
        comparison.rows[["account_id", "as_of"]], result.evaluation[["account_id", "as_of"]]
    )
    np.testing.assert_allclose(comparison.scores["challenger"], result.evaluation["p"])
    assert comparison.metrics.loc["challenger"].to_dict() == pytest.approx(
        result.metrics, nan_ok=True
    )
    table = metrics_vs_baselines(result)
    assert table["model"].to_dict() == result.metrics
    applied = [name for name, values in result.baselines.items() if isinstance(values, dict)]
    assert list(table.columns) == ["model", *applied] and "logistic" in applied
    assert table.loc["roc_auc", "logistic"] == result.baselines["logistic"]["roc_auc"]
    rows = evaluation_features(result)
    assert list(rows.columns[:2]) == ["account_id", "as_of"]
    np.testing.assert_allclose(result.model.predict_proba(rows), result.evaluation["p"])


def test_walk_forward_models_only_learn_from_labels_known_at_their_date(tables, panel):
    dates = backtest_dates(sorted(panel["as_of"].unique()), HORIZON, count=2, step=2)
    train_at = walk_forward_models(tables, HORIZON, _settings(track=True), panel)
    trained = {}

    def models_at(day):
        trained[day] = train_at(day)
        return trained[day]

    backtest = run_backtest(panel, dates, models_at)
    assert sorted(trained) == dates
    for day, models in trained.items():
        for target in ("churn", "upsell"):
            evaluated = pd.Timestamp(models[target].metadata["evaluation_as_of"])
            assert evaluated + pd.Timedelta(days=HORIZON) <= day
            assert models[target].version == "unregistered"
    assert set(backtest.summary["model"]) == {
        f"{target} trained as of {day.date()}" for day in dates for target in ("churn", "upsell")
    }
    assert backtest.summary["out_of_time"].all()
    assert len(backtest.summary) == 2 * len(dates)
