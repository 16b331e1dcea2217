"""The champion gate against a temporary SQLite MLflow store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.metrics import evaluate_binary
from training.model import CalibratedBoostedClassifier
from training.registry import (
    ChampionNotFound,
    GateSettings,
    apply_champion_gate,
    champion_version,
    gate_decision,
    list_versions,
    load_champion,
    promote,
)
from training.tracking import TrainingRecord, log_training_run
from training.tuning import TuningResult

# ------------------------------------------------------------------ the pure decision


def test_no_champion_promotes():
    decision = gate_decision({"roc_auc": 0.6, "brier": 0.2}, None, "1")
    assert decision.promote and decision.reason == "no champion yet"


@pytest.mark.parametrize(
    ("candidate", "promote"),
    [
        ({"roc_auc": 0.800, "brier": 0.100}, True),  # equal passes
        ({"roc_auc": 0.796, "brier": 0.099}, True),  # AUC lower by 0.004 (within tolerance)
        ({"roc_auc": 0.794, "brier": 0.090}, False),  # AUC lower by 0.006
        ({"roc_auc": 0.900, "brier": 0.101}, False),  # Brier worse
    ],
)
def test_gate_thresholds(candidate, promote):
    decision = gate_decision(candidate, {"roc_auc": 0.8, "brier": 0.1}, "2", "1", GateSettings())
    assert decision.promote is promote
    tags = decision.tags()
    assert tags["gate.decision"] == ("promoted" if promote else "rejected")
    assert tags["gate.champion_roc_auc"] == "0.800000"
    assert tags["gate.candidate_brier"] == f"{candidate['brier']:.6f}"


# ------------------------------------------------------------------ against a real store


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(4)})
    X["noise"] = rng.normal(size=n)
    X["plan"] = pd.Series(rng.choice(["a", "b", "c"], size=n), dtype="str")
    logit = -1.0 + 1.5 * X["f0"] + 1.0 * X["f1"] - 1.0 * X["f2"] + 0.8 * (X["plan"] == "a")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy(dtype=float)
    return X, y


def _fit(X: pd.DataFrame, y: np.ndarray, columns: list[str]) -> CalibratedBoostedClassifier:
    model = CalibratedBoostedClassifier(
        n_estimators=40, num_leaves=7, n_jobs=1, calibration="platt"
    )
    return model.fit(X[columns].iloc[:1500], y[:1500], X[columns].iloc[1500:], y[1500:])


def _log(model, X_eval, y_eval, uri: str) -> str:
    p = model.predict_proba(X_eval)
    tuning = TuningResult(
        best_params=model.get_params(),
        best_value=0.5,
        metric="binary_logloss",
        design="test",
        n_trials=1,
        n_complete=1,
        n_pruned=0,
        duration_seconds=0.1,
        n_tuning_rows=len(X_eval),
    )
    record = TrainingRecord(
        target="churn",
        model=model,
        metrics=evaluate_binary(y_eval, p),
        baselines={"health_score": "not applicable: test"},
        evaluation_labels=y_eval,
        evaluation_scores={"model": p},
        tuning=tuning,
        feature_set_name="test_features",
        feature_set_version="0",
        design="time split",
        data={"evaluation": "test rows"},
        params={},
        input_example=X_eval,
    )
    logged = log_training_run(record, prefix="", uri=uri)
    assert logged.version is not None
    return logged.version


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("PORTFOLIO_MODEL_PREFIX", raising=False)
    return uri


@pytest.mark.slow
def test_gate_promotes_better_and_rejects_worse(store, tmp_path):
    X, y = _data(3000, seed=0)
    X_eval, y_eval = X.iloc[2000:], y[2000:]
    X_fit, y_fit = X.iloc[:2000], y[:2000]
    mediocre = _fit(X_fit, y_fit, ["f0"])
    bad = _fit(X_fit, y_fit, ["noise"])
    good = _fit(X_fit, y_fit, ["f0", "f1", "f2", "f3", "noise", "plan"])

    with pytest.raises(ChampionNotFound):
        load_champion("churn", uri=store)

    v1 = _log(mediocre, X_eval, y_eval, store)
    first = apply_champion_gate(
        "churn", v1, X_eval, y_eval, mediocre.predict_proba(X_eval), "test rows", uri=store
    )
    assert first.promote and champion_version("churn", uri=store) == v1

    v2 = _log(bad, X_eval, y_eval, store)
    second = apply_champion_gate(
        "churn", v2, X_eval, y_eval, bad.predict_proba(X_eval), "test rows", uri=store
    )
    assert not second.promote
    assert champion_version("churn", uri=store) == v1  # the worse model is not promoted
    assert second.champion is not None
    assert second.champion["roc_auc"] > second.candidate["roc_auc"]

    v3 = _log(good, X_eval, y_eval, store)
    third = apply_champion_gate(
        "churn", v3, X_eval, y_eval, good.predict_proba(X_eval), "test rows", uri=store
    )
    assert third.promote and champion_version("churn", uri=store) == v3

    versions = {v.version: v for v in list_versions(uri=store)}
    assert versions[v3].aliases == ["champion"] and versions[v1].aliases == []
    rejected = versions[v2].tags
    assert rejected["gate.decision"] == "rejected"
    assert rejected["gate.champion_version"] == v1
    # both sets of figures are recorded on the version, re-scored on the same rows
    champion_auc = evaluate_binary(y_eval, mediocre.predict_proba(X_eval))["roc_auc"]
    assert float(rejected["gate.champion_roc_auc"]) == pytest.approx(champion_auc, abs=1e-6)
    assert float(rejected["gate.candidate_roc_auc"]) == pytest.approx(
        second.candidate["roc_auc"], abs=1e-6
    )
    promoted = versions[v3].tags
    assert promoted["gate.decision"] == "promoted"
    assert promoted["previous_champion"] == v1 and "promoted_at" in promoted
    assert promoted["metric.roc_auc"]

    champion = load_champion("churn", uri=store)
    assert champion.version == v3 and champion.run_id
    np.testing.assert_allclose(
        champion.model.predict_proba(X_eval), good.predict_proba(X_eval), rtol=0, atol=1e-12
    )
    assert not list(tmp_path.rglob("*.pkl"))  # nothing pickled anywhere in the store

    previous = promote("churn", v1, "manual: roll back", uri=store)
    assert previous == v3 and champion_version("churn", uri=store) == v1
    rolled_back = {v.version: v for v in list_versions(uri=store)}[v1].tags
    assert rolled_back["promotion_reason"] == "manual: roll back"
    assert rolled_back["previous_champion"] == v3

    with pytest.raises(ChampionNotFound):
        promote("churn", "99", "nope", uri=store)
