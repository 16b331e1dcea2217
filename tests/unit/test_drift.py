"""PSI drift of a scoring run against the training reference: serving.drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from serving.drift import DriftSettings, drift_alerts, drift_summary, model_drift


class _TwoFeatureModel:
    """A stand-in for a fitted model: a hand-written reference and an identity `prepare`."""

    def __init__(self, reference: dict[str, Any]) -> None:
        self.feature_names_ = ["usage_trend", "plan"]
        self.reference_ = reference

    def prepare(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.feature_names_].to_numpy(dtype=float)


REFERENCE = {
    "features": {
        # two bins split at 1.0: half the training rows on each side, none missing
        "usage_trend": {"kind": "numeric", "edges": [1.0], "proportions": [0.5, 0.5], "missing": 0},
        # two levels (codes 0 and 1), 80% / 20%
        "plan": {"kind": "categorical", "proportions": [0.8, 0.2], "missing": 0},
    },
    "score": {"edges": [0.5], "proportions": [0.5, 0.5]},
}


def _psi(expected: list[float], actual: list[float]) -> float:
    floor = 1e-4
    return sum(
        (max(a, floor) - max(e, floor)) * math.log(max(a, floor) / max(e, floor))
        for e, a in zip(expected, actual, strict=True)
    )


def test_psi_per_feature_and_score_by_hand() -> None:
    features = pd.DataFrame(
        {"usage_trend": [0.5, 0.5, 0.5, 2.0], "plan": [0.0, 0.0, 0.0, 0.0]}  # 75/25, 100/0
    )
    scores = np.array([0.1, 0.2, 0.7, 0.9])  # 50/50: no drift
    drift = model_drift("churn", _TwoFeatureModel(REFERENCE), features, scores)

    by_name = drift.set_index("name")["psi"]
    assert math.isclose(by_name["score"], 0.0, abs_tol=1e-12)
    assert math.isclose(by_name["usage_trend"], _psi([0.5, 0.5, 0], [0.75, 0.25, 0]))
    assert math.isclose(by_name["plan"], _psi([0.8, 0.2, 0], [1.0, 0.0, 0]))
    # the score first, then features by descending PSI
    assert list(drift["name"]) == ["score", "plan", "usage_trend"]
    assert list(drift["alert"]) == [False, True, True]  # 0.32 and 0.27 are above 0.2


def test_missing_share_counts_as_its_own_bin() -> None:
    features = pd.DataFrame({"usage_trend": [0.5, np.nan, 2.0, np.nan], "plan": [0, 1, 0, 0.0]})
    drift = model_drift("churn", _TwoFeatureModel(REFERENCE), features, np.array([0.1, 0.9]))
    observed = drift.set_index("name").loc["usage_trend", "psi"]
    assert math.isclose(observed, _psi([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]))


def test_alerts_only_for_models_above_the_threshold() -> None:
    stable = pd.DataFrame({"usage_trend": [0.5, 2.0] * 50, "plan": [0.0] * 80 + [1.0] * 20})
    shifted = pd.DataFrame({"usage_trend": [5.0] * 100, "plan": [0.0] * 80 + [1.0] * 20})
    scores = np.array([0.1, 0.9] * 50)
    drift = pd.concat(
        [
            model_drift("churn", _TwoFeatureModel(REFERENCE), stable, scores),
            model_drift("upsell", _TwoFeatureModel(REFERENCE), shifted, scores),
        ],
        ignore_index=True,
    )
    alerts = drift_alerts(drift)
    assert [a["rule"] for a in alerts] == ["upsell_drift"]
    (alert,) = alerts
    assert alert["threshold"] == 0.2
    assert [f["feature"] for f in alert["features"]] == ["usage_trend"]
    # PSI about 4.6 on an input, but the scores held (PSI 0): a warning, not critical
    assert alert["severity"] == "warning"
    assert "scores held steady" in alert["message"]
    assert math.isclose(alert["observed"], _psi([0.5, 0.5, 0], [0.0, 1.0, 0]))

    summary = drift_summary(drift)
    assert summary["models"]["churn"]["features_drifted"] == 0
    assert summary["models"]["upsell"]["features_drifted"] == 1
    assert summary["models"]["upsell"]["score_psi"] == 0.0


def test_the_threshold_is_strict_and_configurable() -> None:
    features = pd.DataFrame({"usage_trend": [0.5, 0.5, 0.5, 2.0], "plan": [0.0] * 4})
    scores = np.array([0.1, 0.9])
    lenient = model_drift(
        "churn", _TwoFeatureModel(REFERENCE), features, scores, DriftSettings(psi_alert=2.0)
    )
    assert not lenient["alert"].any()
    assert drift_alerts(lenient, DriftSettings(psi_alert=2.0)) == []


def test_a_score_distribution_that_moved_is_critical() -> None:
    stable = pd.DataFrame({"usage_trend": [0.5, 2.0] * 50, "plan": [0.0] * 80 + [1.0] * 20})
    shifted_scores = np.full(100, 0.9)  # every score above the reference median
    drift = model_drift("churn", _TwoFeatureModel(REFERENCE), stable, shifted_scores)
    (alert,) = drift_alerts(drift)
    assert alert["severity"] == "critical"
    assert alert["score_psi"] > 1.5 * 0.2
    assert "scores moved" in alert["message"]
