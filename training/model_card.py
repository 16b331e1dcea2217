"""The model card: a markdown page logged with every model version."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CARD_METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "ece",
    "lift_top_decile",
    "arr_at_risk_rel_error",
)

TARGET_MEANING = {
    "churn": "the account stops (ARR falls to zero, or no positive order) within the horizon",
    "upsell": "the account's revenue over the horizon reaches at least 1.10 x its level before",
}


@dataclass(frozen=True)
class ModelCard:
    target: str
    model_name: str
    feature_set: str
    data: Mapping[str, Any]
    metrics: Mapping[str, float]
    baselines: Mapping[str, Mapping[str, float] | str]
    tuning: Mapping[str, Any]
    calibration: Mapping[str, Any]
    top_features: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def render_model_card(card: ModelCard) -> str:
    """The card as markdown."""
    meaning = TARGET_MEANING.get(card.target, card.target)
    lines = [
        f"# Model card: `{card.model_name}`",
        "",
        f"**Predicts** the probability that {meaning}.",
        "",
        "**Model**: LightGBM gradient boosting, tuned with Optuna (TPE, pruning, early "
        f"stopping), calibrated with {card.calibration.get('method', '?')} "
        f"({card.calibration.get('fitted_on', '')}). Stored as LightGBM text + JSON (no pickle).",
        "",
        f"**Feature set**: `{card.feature_set}`",
        "",
        "## Data",
        "",
        "| item | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in card.data.items()],
        "",
        "## Evaluation (held-out rows, never used to train, tune or calibrate)",
        "",
    ]
    columns = ["model", *card.baselines]
    lines += [
        "| metric | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for metric in CARD_METRICS:
        if metric not in card.metrics:
            continue
        row = [_fmt(card.metrics[metric])]
        for baseline in card.baselines.values():
            row.append(
                _fmt(baseline.get(metric, math.nan)) if isinstance(baseline, Mapping) else "-"
            )
        lines.append(f"| {metric} | " + " | ".join(row) + " |")
    not_applicable = {k: v for k, v in card.baselines.items() if isinstance(v, str)}
    if not_applicable:
        lines.append("")
        lines += [f"- baseline `{k}`: {v}" for k, v in not_applicable.items()]
    lines += [
        "",
        "## Tuning",
        "",
        f"{card.tuning.get('n_trials', '?')} trials ({card.tuning.get('n_complete', '?')} complete, "
        f"{card.tuning.get('n_pruned', '?')} pruned) in "
        f"{float(card.tuning.get('duration_seconds', math.nan)):.1f} s, "
        f"{card.tuning.get('design', '')}; best validation {card.tuning.get('metric', '')} "
        f"{_fmt(card.tuning.get('best_value', math.nan))}.",
        "",
    ]
    if card.top_features:
        lines += ["## Most important features (gain)", ""]
        lines += [f"{i}. `{name}`" for i, name in enumerate(card.top_features, 1)]
        lines.append("")
    lines += ["## Limitations", ""]
    lines += [f"- {item}" for item in card.limitations]
    lines.append("")
    return "\n".join(lines)


def default_limitations(target: str, design: str) -> list[str]:
    """The caveats every card states."""
    items = [
        "Scores are calibrated on the calibration rows; calibration drifts when the portfolio "
        "changes (watch the score PSI against the reference stored in model.json).",
        "Associations, not causes: the reasons list what moved the score, not what will move "
        "the outcome.",
        "Accounts unlike the training data (new segments, unseen plans) are scored with those "
        "categories treated as missing.",
    ]
    if design == "time split":
        items.append(
            "Evaluated on one later snapshot; a single period can be unusual (seasonality, "
            "one-off events)."
        )
    else:
        items.append(
            "Flat table without time stamps: evaluated on a random 20% hold-out, which can "
            "overstate performance on future customers."
        )
    if target == "churn":
        items.append("Churn is all-or-nothing: partial contractions count as retained.")
    items.append(
        "Loading the MLflow pyfunc needs the account-portfolio package (training.model); "
        "booster.txt + model.json can be read without it by LightGBM and any JSON reader."
    )
    return items
