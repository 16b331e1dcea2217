"""Why a score is what it is: per-feature contributions and the top reasons.

Two ways to split a LightGBM raw score (log-odds) into per-feature
contributions that add up to it (plus the model's expected value):

- `"tree_shap"` (the default): exact path-dependent TreeSHAP, the values
  LightGBM's `predict(pred_contrib=True)` gives, computed by the compiled
  kernel of `serving.tree_shap` (subtree tables built once per model).
- `"path"`: path attributions (Saabas). In each tree, the change of the
  expected output at every split on the way from the root to the row's leaf
  is credited to the split's feature. They depend only on the leaf a row
  reaches, so `PathAttributions` turns each leaf of each tree into a
  precomputed contribution vector; a row's contributions are the sum of its
  leaves' vectors (one sparse product over LightGBM's `pred_leaf` output),
  which also gives the raw score bit for bit. Much faster, but their top
  features often differ from TreeSHAP's (see docs/benchmarks.md), so they
  are an opt-in approximation.

`top_contributions` picks the k largest contributions by absolute value and
`reason_entries` turns them into JSON-ready reasons with the sentence from
the feature's metadata (`features.definitions.FEATURES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

from features.definitions import FEATURES, FeatureSpec

ReasonMethod = Literal["tree_shap", "path"]
REASON_METHODS: tuple[str, ...] = ("tree_shap", "path")
DEFAULT_REASON_METHOD: ReasonMethod = "tree_shap"

# Rows below this are predicted on one thread: OpenMP start-up costs more than it saves.
SINGLE_THREAD_ROWS = 2000


def booster_threads(n_rows: int) -> dict[str, int]:
    """LightGBM predict parameters for `n_rows` rows (one thread for small requests)."""
    return {"num_threads": 1} if n_rows < SINGLE_THREAD_ROWS else {}


@dataclass(frozen=True)
class PathAttributions:
    """Per-leaf path attributions of every tree of a binary LightGBM booster.

    `table` has one row per leaf of every tree (trees one after another,
    `tree_offsets[t]` is the first row of tree t) and `n_features + 1`
    columns: the leaf's contribution to each feature, then the leaf's value.
    """

    table: np.ndarray
    tree_offsets: np.ndarray
    expected_value: float
    n_features: int

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets)

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> PathAttributions:
        """Build the per-leaf table from the booster's trees (what `predict` uses)."""
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("path attributions need a binary model (one tree per iteration)")
        n_features = int(dump["max_feature_idx"]) + 1
        blocks: list[np.ndarray] = []
        offsets: list[int] = []
        expected = 0.0
        start = 0
        for tree in dump["tree_info"]:
            if tree.get("is_linear"):
                raise ValueError("path attributions do not support linear trees")
            block, root_value = _tree_leaf_attributions(
                tree["tree_structure"], int(tree["num_leaves"]), n_features
            )
            blocks.append(block)
            offsets.append(start)
            start += block.shape[0]
            expected += root_value
        if not blocks:
            raise ValueError("the booster has no trees")
        return cls(
            table=np.vstack(blocks),
            tree_offsets=np.asarray(offsets, dtype=np.int64),
            expected_value=expected,
            n_features=n_features,
        )

    def attribute(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (n,) and contributions (n, n_features) from leaf indices (n, n_trees)."""
        leaves = np.asarray(leaves)
        if leaves.ndim != 2 or leaves.shape[1] != self.n_trees:
            raise ValueError(
                f"expected leaf indices of shape (rows, {self.n_trees}), got {leaves.shape}"
            )
        n_rows = leaves.shape[0]
        columns = (leaves.astype(np.int64, copy=False) + self.tree_offsets).ravel()
        indicator = sp.csr_matrix(
            (np.ones(columns.size), columns, np.arange(0, columns.size + 1, self.n_trees)),
            shape=(n_rows, self.table.shape[0]),
        )
        summed = np.asarray(indicator @ self.table)
        return summed[:, -1].copy(), summed[:, :-1]


def _tree_leaf_attributions(
    root: Mapping[str, Any], n_leaves: int, n_features: int
) -> tuple[np.ndarray, float]:
    """(leaf rows of contributions + leaf value, expected value of the tree) for one tree."""
    block = np.zeros((n_leaves, n_features + 1), dtype=np.float64)
    if "leaf_index" in root or "split_feature" not in root:
        value = float(root.get("leaf_value", 0.0))
        block[int(root.get("leaf_index", 0)), -1] = value
        return block, value
    expected = _expected_values(root)
    # Walk root -> leaves carrying the contributions accumulated along the path.
    stack: list[tuple[Mapping[str, Any], np.ndarray]] = [(root, np.zeros(n_features))]
    while stack:
        node, path = stack.pop()
        feature = int(node["split_feature"])
        for side in ("left_child", "right_child"):
            child = node[side]
            child_path = path.copy()
            child_path[feature] += expected[id(child)] - expected[id(node)]
            if "leaf_index" in child:
                row = int(child["leaf_index"])
                block[row, :-1] = child_path
                block[row, -1] = float(child["leaf_value"])
            else:
                stack.append((child, child_path))
    return block, expected[id(root)]


def _expected_values(root: Mapping[str, Any]) -> dict[int, float]:
    """Expected output of every node: leaves' values weighted by their training counts."""
    expected: dict[int, float] = {}
    counts: dict[int, float] = {}
    order: list[Mapping[str, Any]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if "leaf_index" not in node:
            stack.extend((node["left_child"], node["right_child"]))
    for node in reversed(order):  # children before parents
        if "leaf_index" in node:
            expected[id(node)] = float(node["leaf_value"])
            counts[id(node)] = float(node.get("leaf_count", 0))
            continue
        left, right = node["left_child"], node["right_child"]
        cl, cr = counts[id(left)], counts[id(right)]
        total = cl + cr
        if total > 0:
            value = (cl * expected[id(left)] + cr * expected[id(right)]) / total
        else:
            value = 0.5 * (expected[id(left)] + expected[id(right)])
        expected[id(node)] = value
        counts[id(node)] = total
    return expected


def lightgbm_contributions(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """LightGBM's own TreeSHAP contributions (n, n_features) in log-odds (the reference)."""
    contributions = booster.predict(matrix, pred_contrib=True, **booster_threads(matrix.shape[0]))
    return np.asarray(contributions)[:, :-1]


def top_contributions(contributions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest contributions by absolute value, per row, largest first.

    Returns feature indices (n, k) and their contributions (n, k). Ties keep
    the lower feature index first. A contribution of exactly zero is not a
    reason: its slot holds index -1 (and 0.0).
    """
    k = max(0, min(k, contributions.shape[1]))
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(contributions, order, axis=1)
    order = np.where(values != 0.0, order, -1)
    return order, np.where(order >= 0, values, 0.0)


def value_text(value: Any) -> str | None:
    """A feature value as short text (numbers to 6 significant digits); None when missing."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return format(value, ".6g")
    return str(value)


def reason_sentence(feature: str, value: Any, specs: Mapping[str, FeatureSpec] = FEATURES) -> str:
    """The feature's sentence for `value` from its metadata; `name = value` for unknown features."""
    spec = specs.get(feature)
    if spec is not None:
        return spec.describe(value)
    text = value_text(value)
    return f"{feature} = {text}" if text is not None else f"{feature}: unknown"


def reason_entries(
    model: str,
    feature_indices: np.ndarray,
    contributions: np.ndarray,
    matrix: np.ndarray,
    feature_names: Sequence[str],
    levels: Mapping[int, Sequence[str]],
    specs: Mapping[str, FeatureSpec] = FEATURES,
) -> list[list[dict[str, Any]]]:
    """JSON-ready reasons per row: `{model, rank, feature, value, contribution, text}`.

    `feature_indices` and `contributions` come from `top_contributions`;
    `matrix` is what the model read (n, n_features) and `levels` maps the
    index of each categorical feature to its levels (the matrix holds the
    level's position). `value` is the value as text, None when the model saw
    it as missing (absent, or a level unseen in training); `contribution` is
    the signed contribution in log-odds; `text` the sentence from the
    feature's metadata.
    """
    chosen = np.take_along_axis(matrix, np.maximum(feature_indices, 0), axis=1)
    # Values repeat across accounts (counts, levels, flags): each (feature, value) is said once.
    described: dict[tuple[int, float, float], tuple[str | None, str]] = {}
    rows: list[list[dict[str, Any]]] = []
    for indices, amounts, numbers in zip(
        feature_indices.tolist(), contributions.tolist(), chosen.tolist(), strict=True
    ):
        entries = []
        for j, amount, number in zip(indices, amounts, numbers, strict=True):
            if j < 0:
                continue
            # NaN never equals itself (its key has sign 0); -0.0 equals 0.0 but reads "-0"
            key = (j, number, math.copysign(1.0, number)) if number == number else (j, 0.0, 0.0)
            said = described.get(key)
            if said is None:
                value = _model_value(number, levels.get(j))
                said = (value_text(value), reason_sentence(feature_names[j], value, specs))
                described[key] = said
            entries.append(
                {
                    "model": model,
                    "rank": len(entries) + 1,
                    "feature": feature_names[j],
                    "value": said[0],
                    "contribution": amount,
                    "text": said[1],
                }
            )
        rows.append(entries)
    return rows


def _model_value(number: float, feature_levels: Sequence[str] | None) -> float | str | None:
    """The value the model read: a number, a category level, or None when missing."""
    if math.isnan(number):
        return None
    if feature_levels is None:
        return number
    return feature_levels[int(number)]


def reasons_by_model(reasons: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group a flat reasons list by model: `{"churn": [...], "upsell": [...]}` in rank order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for reason in sorted(reasons, key=lambda r: (str(r["model"]), int(r["rank"]))):
        grouped.setdefault(str(reason["model"]), []).append(dict(reason))
    return grouped
