"""Drift of a scoring run against the champion's training reference.

Each champion keeps, in its `reference_`, how its prepared features and its
calibrated scores were distributed when it was trained (decile bins per
numeric feature, level shares per categorical one; see
`training.reference`). For a scoring run, `model_drift` computes the
population stability index (PSI) of every feature and of the score
distribution against that reference, and `drift_alerts` turns the values
above the threshold (0.2 by default: a large shift) into portfolio alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from training.reference import feature_psi, score_psi

DRIFT_COLUMNS: tuple[str, ...] = ("target", "kind", "name", "psi", "alert")


@dataclass(frozen=True)
class DriftSettings:
    """When a PSI value is an alert, and how alerts are reported."""

    psi_alert: float = 0.2
    critical_ratio: float = 1.5  # critical when psi >= critical_ratio x psi_alert
    max_features_listed: int = 10


class ReferencedModel(Protocol):
    """What drift needs from a fitted model: its reference and how it prepares rows."""

    reference_: dict[str, Any]
    feature_names_: list[str]

    def prepare(self, X: pd.DataFrame) -> np.ndarray: ...


def model_drift(
    target: str,
    model: ReferencedModel,
    features: pd.DataFrame,
    scores: np.ndarray,
    settings: DriftSettings | None = None,
) -> pd.DataFrame:
    """PSI per feature and for the score distribution of one model, one row each.

    Columns: target, kind ("feature" or "score"), name (the feature, or "score"),
    psi, alert (psi > settings.psi_alert). Features absent from the reference
    are skipped; the score row comes first, then features by descending PSI.
    """
    settings = settings or DriftSettings()
    reference = model.reference_
    matrix = model.prepare(features)
    rows: list[dict[str, Any]] = [
        {
            "target": target,
            "kind": "score",
            "name": "score",
            "psi": score_psi(reference, np.asarray(scores, dtype=float)),
        }
    ]
    feature_rows = [
        {
            "target": target,
            "kind": "feature",
            "name": name,
            "psi": feature_psi(reference["features"][name], matrix[:, j]),
        }
        for j, name in enumerate(model.feature_names_)
        if name in reference.get("features", {})
    ]
    feature_rows.sort(key=lambda row: (-row["psi"], row["name"]))
    frame = pd.DataFrame(rows + feature_rows, columns=list(DRIFT_COLUMNS[:-1]))
    frame["target"] = frame["target"].astype("string")
    frame["kind"] = frame["kind"].astype("string")
    frame["name"] = frame["name"].astype("string")
    frame["psi"] = frame["psi"].astype("float64")
    frame["alert"] = frame["psi"] > settings.psi_alert
    return frame


def drift_alerts(
    drift: pd.DataFrame, settings: DriftSettings | None = None
) -> list[dict[str, Any]]:
    """One alert per model whose score distribution or features drifted beyond the threshold.

    Each alert has the keys of the portfolio alerts: rule, threshold, observed
    (the largest PSI), severity, suggested_action, plus the drifted features.
    """
    settings = settings or DriftSettings()
    alerts: list[dict[str, Any]] = []
    for target in sorted(drift["target"].unique()):
        model_rows = drift[drift["target"] == target]
        drifted = model_rows[model_rows["alert"]]
        if drifted.empty:
            continue
        observed = float(drifted["psi"].max())
        score_row = model_rows[model_rows["kind"] == "score"]
        score_psi = float(score_row["psi"].iloc[0]) if len(score_row) else None
        features = drifted[drifted["kind"] == "feature"].head(settings.max_features_listed)
        scores_drifted = score_psi is not None and score_psi > settings.psi_alert
        # Inputs that moved while the score distribution held are worth a look
        # (a warning); a score distribution that moved changes decisions (critical
        # when far beyond the threshold).
        critical = scores_drifted and score_psi >= settings.critical_ratio * settings.psi_alert
        what = "scores" if scores_drifted else "inputs (its scores held steady)"
        alerts.append(
            {
                "rule": f"{target}_drift",
                "message": (
                    f"The {target} model's {what} moved away from its training data "
                    f"(largest PSI {observed:.2f} > {settings.psi_alert:g})"
                ),
                "threshold": settings.psi_alert,
                "observed": observed,
                "severity": "critical" if critical else "warning",
                "suggested_action": (
                    f"Check the drifted sources for data problems; if the shift is real, "
                    f"retrain the {target} model (portfolio train) and compare it with the champion"
                ),
                "score_psi": score_psi,
                "features": [
                    {"feature": str(name), "psi": float(psi)}
                    for name, psi in zip(features["name"], features["psi"], strict=True)
                ],
                "accounts": [],
            }
        )
    return alerts


def drift_summary(drift: pd.DataFrame, settings: DriftSettings | None = None) -> dict[str, Any]:
    """A JSON-ready summary per model: score PSI, the largest feature PSIs, how many alert."""
    settings = settings or DriftSettings()
    summary: dict[str, Any] = {"psi_alert": settings.psi_alert, "models": {}}
    for target in sorted(drift["target"].unique()):
        rows = drift[drift["target"] == target]
        score = rows[rows["kind"] == "score"]
        features = rows[rows["kind"] == "feature"]
        summary["models"][str(target)] = {
            "score_psi": float(score["psi"].iloc[0]) if len(score) else None,
            "features_checked": len(features),
            "features_drifted": int(features["alert"].sum()),
            "top_features": [
                {"feature": str(name), "psi": float(psi), "alert": bool(alert)}
                for name, psi, alert in features[["name", "psi", "alert"]]
                .head(settings.max_features_listed)
                .itertuples(index=False)
            ],
        }
    return summary
