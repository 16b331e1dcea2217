"""A challenger against the current champion, on the challenger's own evaluation rows.

`portfolio train` decides promotion with the champion gate: the champion is
re-scored on the rows the new model was evaluated on (the latest labelled
snapshot) and both are compared there. Before that decision, a data
scientist wants the same comparison in full (notebooks/02_retrain):

- `compare_with_champion(result, champion)`: both models' probabilities on
  the evaluation rows and every `training.metrics.evaluate_binary` metric
  side by side (`ModelComparison.metrics`), ready for the calibration and
  gain plots of `training.plots`;
- `gate_preview(comparison)`: what the gate (`training.registry.gate_decision`,
  the pure decision `apply_champion_gate` takes) would decide on those rows,
  without touching the registry;
- `champion_or_none` and `as_champion`: the registry's champion when there is
  one, and a trained, unregistered result wrapped like a champion (so the
  scoring code can score it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from training.metrics import evaluate_binary
from training.registry import (
    Champion,
    ChampionNotFound,
    GateDecision,
    GateSettings,
    gate_decision,
    load_champion,
)

if TYPE_CHECKING:
    from training.pipeline import TargetResult

CHALLENGER = "challenger"
UNREGISTERED = "unregistered"
# The target whose metrics are weighted by ARR (predicted ARR at risk vs churned ARR).
ARR_WEIGHTED_TARGET = "churn"
ARR_FEATURE = "arr"


@dataclass(frozen=True)
class ModelComparison:
    """Several models scored on the same evaluation rows."""

    target: str
    evaluation: str  # e.g. "snapshot 2024-10-01"
    # account_id (and as_of), label, arr when known, then one probability column per model
    rows: pd.DataFrame
    models: tuple[str, ...]
    # one row per model (index: model name), the evaluate_binary metrics as columns
    metrics: pd.DataFrame
    # model name -> registered version (None when not registered)
    versions: dict[str, str | None]

    @property
    def labels(self) -> np.ndarray:
        return self.rows["label"].to_numpy(dtype=np.float64)

    @property
    def scores(self) -> dict[str, np.ndarray]:
        """Model name -> probabilities on the evaluation rows (the plots' input)."""
        return {name: self.rows[name].to_numpy(dtype=np.float64) for name in self.models}

    def largest_disagreements(self, n: int = 5) -> pd.DataFrame:
        """The `n` rows where two compared models' probabilities differ most.

        Adds `difference` (first model minus second); ties keep the row order.
        """
        if len(self.models) != 2:
            raise ValueError(f"disagreement needs two models; the comparison holds {self.models}")
        first, second = self.models
        rows = self.rows.assign(difference=self.rows[first] - self.rows[second])
        order = rows["difference"].abs().sort_values(ascending=False, kind="stable").index
        return rows.loc[order[:n]]


def champion_or_none(
    target: str, prefix: str | None = None, uri: str | None = None
) -> Champion | None:
    """The current `@champion` of `target`, or None when the registry has none."""
    try:
        return load_champion(target, prefix, uri)
    except ChampionNotFound:
        return None


def as_champion(result: TargetResult, name: str = CHALLENGER) -> Champion:
    """A trained result wrapped like a registry champion (version: its registered one, if any)."""
    return Champion(
        name=name,
        version=result.model_version or UNREGISTERED,
        model=result.model,
        run_id=result.logged.run_id if result.logged else None,
        metadata=dict(result.model.metadata_),
    )


def metrics_vs_baselines(result: TargetResult) -> pd.DataFrame:
    """The model's evaluation metrics beside the baselines' on the same rows.

    One column per model (`model`, then each baseline that applied), one row
    per metric. A baseline that did not apply (e.g. no health signals) is left out.
    """
    columns = {"model": result.metrics}
    columns.update(
        {name: values for name, values in result.baselines.items() if isinstance(values, dict)}
    )
    return pd.DataFrame(columns)


def evaluation_features(result: TargetResult) -> pd.DataFrame:
    """The evaluation rows of a trained result with what the models read: keys, then features."""
    if result.record is None or result.evaluation is None:
        raise ValueError(f"the {result.target} result holds no evaluation rows")
    keys = result.evaluation.drop(columns=["label", "p"]).reset_index(drop=True)
    features = result.record.input_example.reset_index(drop=True)
    return pd.concat([keys, features.drop(columns=keys.columns, errors="ignore")], axis=1)


def compare_models(
    target: str,
    evaluation_rows: pd.DataFrame,
    features: pd.DataFrame,
    labels: np.ndarray,
    models: dict[str, Champion],
    evaluation: str = "",
) -> ModelComparison:
    """Score every model on the same rows and put their metrics side by side.

    `evaluation_rows` holds the row keys (account_id, as_of), `features` what
    the models read, `labels` the 0/1 outcomes, all in the same order. For
    churn the ARR-weighted metrics use the `arr` feature when present.
    """
    if not models:
        raise ValueError("no model to compare")
    if not len(evaluation_rows) == len(features) == len(labels):
        raise ValueError(
            f"evaluation rows ({len(evaluation_rows)}), features ({len(features)}) and "
            f"labels ({len(labels)}) differ in length"
        )
    taken = {"label", ARR_FEATURE, *evaluation_rows.columns}
    clashes = sorted(taken & set(models))
    if clashes:
        raise ValueError(f"model name(s) {clashes} clash with the evaluation columns")
    y = np.asarray(labels, dtype=np.float64)
    arr = (
        features[ARR_FEATURE].to_numpy(dtype=np.float64)
        if target == ARR_WEIGHTED_TARGET and ARR_FEATURE in features.columns
        else None
    )
    rows = evaluation_rows.reset_index(drop=True).assign(label=y)
    if arr is not None:
        rows[ARR_FEATURE] = arr
    metrics = {}
    for name, model in models.items():
        rows[name] = model.model.predict_proba(features)
        metrics[name] = evaluate_binary(y, rows[name].to_numpy(), arr)
    return ModelComparison(
        target=target,
        evaluation=evaluation,
        rows=rows,
        models=tuple(models),
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        versions={
            name: None if model.version == UNREGISTERED else str(model.version)
            for name, model in models.items()
        },
    )


def compare_with_champion(
    result: TargetResult, champion: Champion | None, challenger: str = CHALLENGER
) -> ModelComparison:
    """The challenger and the champion (when there is one) on the challenger's evaluation rows.

    The rows are those the challenger was evaluated on when it was trained
    (`TargetResult.evaluation` and its training record): the rows the champion
    gate re-scores the champion on.
    """
    record = result.record
    if record is None or result.evaluation is None:
        raise ValueError(f"the {result.target} result holds no evaluation rows")
    models = {challenger: as_champion(result, challenger)}
    if champion is not None:
        models[f"champion v{champion.version}"] = champion
    keys = result.evaluation.drop(columns=["label", "p"])
    return compare_models(
        result.target,
        keys,
        record.input_example,
        np.asarray(record.evaluation_labels),
        models,
        evaluation=str(result.data.get("evaluation", "")),
    )


def gate_preview(
    comparison: ModelComparison,
    candidate: str = CHALLENGER,
    settings: GateSettings | None = None,
) -> GateDecision:
    """What the champion gate would decide for `candidate` on these rows (no registry access).

    The champion is the other model of a two-model comparison; alone, the
    candidate passes ("no champion yet"), as it would in the registry.
    """
    if candidate not in comparison.models:
        raise ValueError(f"{candidate!r} is not one of the compared models {comparison.models}")
    others = [name for name in comparison.models if name != candidate]
    if len(others) > 1:
        raise ValueError(f"the gate compares two models; the comparison holds {comparison.models}")
    figures = comparison.metrics
    current = others[0] if others else None
    return gate_decision(
        {k: float(figures.loc[candidate, k]) for k in ("roc_auc", "brier")},
        {k: float(figures.loc[current, k]) for k in ("roc_auc", "brier")} if current else None,
        comparison.versions.get(candidate) or UNREGISTERED,
        comparison.versions.get(current) if current else None,
        settings,
        comparison.evaluation,
    )


__all__ = [
    "CHALLENGER",
    "ModelComparison",
    "as_champion",
    "champion_or_none",
    "compare_models",
    "compare_with_champion",
    "evaluation_features",
    "gate_preview",
    "metrics_vs_baselines",
]
