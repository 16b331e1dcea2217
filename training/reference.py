"""Training reference distributions and the population stability index (PSI).

A fitted model keeps, in its JSON, how its features and scores were
distributed when it was trained: per numeric feature the decile cut points and
the share of rows in each bin, per categorical feature the share of each
level, and the same for the calibrated score. Monitoring compares a new
scoring run against it with `population_stability_index`.

Bins are right-closed on the cut points: bin 0 is (-inf, e1], bin i is
(e_i, e_{i+1}], the last bin is (e_k, +inf). Missing values are counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES: tuple[float, ...] = tuple(q / 10 for q in range(1, 10))


def quantile_edges(values: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> list[float]:
    """Distinct cut points at the given quantiles of the non-missing values."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return []
    return [float(e) for e in np.unique(np.quantile(finite, quantiles))]


def bin_proportions(values: np.ndarray, edges: Sequence[float]) -> tuple[list[float], float]:
    """Share of the non-missing values in each bin defined by `edges`, and the missing share.

    The bin shares are relative to the non-missing values, so they sum to 1
    whenever at least one value is present.
    """
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    n = values.size
    finite = values[~missing]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=float), finite, side="left"),
        minlength=len(edges) + 1,
    )
    shares = counts / finite.size if finite.size else np.zeros(len(edges) + 1)
    return [float(s) for s in shares], float(missing.sum() / n) if n else 0.0


def level_proportions(codes: np.ndarray, n_levels: int) -> tuple[list[float], float]:
    """Share of each level code (0..n_levels-1) among non-missing codes, and the missing share."""
    codes = np.asarray(codes, dtype=float)
    missing = np.isnan(codes)
    n = codes.size
    present = codes[~missing].astype(np.int64)
    counts = np.bincount(present, minlength=n_levels)[:n_levels]
    shares = counts / present.size if present.size else np.zeros(n_levels)
    return [float(s) for s in shares], float(missing.sum() / n) if n else 0.0


def build_reference(
    matrix: np.ndarray,
    feature_names: Sequence[str],
    categories: dict[str, list[str]],
    scores: np.ndarray,
) -> dict[str, Any]:
    """The reference distribution of a prepared feature matrix and of calibrated scores."""
    features: dict[str, Any] = {}
    for j, name in enumerate(feature_names):
        column = matrix[:, j]
        if name in categories:
            shares, missing = level_proportions(column, len(categories[name]))
            features[name] = {"kind": "categorical", "proportions": shares, "missing": missing}
        else:
            edges = quantile_edges(column)
            shares, missing = bin_proportions(column, edges)
            features[name] = {
                "kind": "numeric",
                "edges": edges,
                "proportions": shares,
                "missing": missing,
            }
    score_edges = quantile_edges(np.asarray(scores, dtype=float))
    score_shares, _ = bin_proportions(scores, score_edges)
    return {
        "n_rows": int(matrix.shape[0]),
        "n_score_rows": int(np.asarray(scores).size),
        "features": features,
        "score": {"edges": score_edges, "proportions": score_shares},
    }


def population_stability_index(
    expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins; shares below `floor` are raised to it.

    Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins: {e.size} expected vs {a.size} actual shares")
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference_feature: dict[str, Any], column: np.ndarray) -> float:
    """PSI of one prepared feature column against its reference entry (missing share included)."""
    if reference_feature["kind"] == "categorical":
        shares, missing = level_proportions(column, len(reference_feature["proportions"]))
    else:
        shares, missing = bin_proportions(column, reference_feature["edges"])
    ref_missing = reference_feature["missing"]
    expected = [p * (1 - ref_missing) for p in reference_feature["proportions"]] + [ref_missing]
    actual = [p * (1 - missing) for p in shares] + [missing]
    return population_stability_index(expected, actual)


def score_psi(reference: dict[str, Any], scores: np.ndarray) -> float:
    """PSI of calibrated scores against the reference score distribution."""
    shares, _ = bin_proportions(np.asarray(scores, dtype=float), reference["score"]["edges"])
    return population_stability_index(reference["score"]["proportions"], shares)
