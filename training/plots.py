"""Evaluation plots logged with each model: calibration curve, cumulative gain, importance.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch), so they work headless and leave no state behind.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.metrics import calibration_bins, cumulative_gain
from training.model import CalibratedBoostedClassifier


def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def calibration_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> Figure:
    """Reliability diagram: observed rate vs mean predicted probability, 10 equal-width bins."""
    figure = _figure()
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for name, p in scores.items():
        bins = [b for b in calibration_bins(y, p) if b["count"]]
        ax.plot(
            [b["mean_predicted"] for b in bins],
            [b["observed_rate"] for b in bins],
            marker="o",
            label=name,
        )
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return figure


def gain_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> Figure:
    """Cumulative gain: share of positives captured when working down each ranking."""
    figure = _figure()
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="random")
    for name, p in scores.items():
        x, gain = cumulative_gain(y, p)
        ax.plot(x, gain, label=name)
    ax.set(
        xlabel="share of accounts (highest score first)", ylabel="share of positives", title=title
    )
    ax.legend(loc="lower right")
    return figure


def importance_figure(model: CalibratedBoostedClassifier, title: str, top: int = 20) -> Figure:
    """Horizontal bars of the `top` features by total gain."""
    importance = model.feature_importance("gain").head(top)[::-1]
    figure = _figure(7.0, max(3.0, 0.3 * len(importance) + 1.0))
    ax = figure.add_subplot()
    ax.barh(importance.index.astype(str), importance.to_numpy())
    ax.set(xlabel="total gain", title=title)
    return figure
