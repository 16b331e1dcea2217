"""Exact path-dependent TreeSHAP for LightGBM boosters, compiled with Numba.

The same values as LightGBM's `predict(pred_contrib=True)` (to rounding),
many times faster, because most of the work is done once per model.

The maths (Lundberg et al., "Consistent individualized feature attribution
for tree ensembles"): a tree's TreeSHAP value is a sum over its leaves. For a
leaf l with value v, let F be the distinct features split on along its path;
for each j in F let z_j be the share of training rows that follow the path at
j's splits (product of child count / parent count) and o_j = 1 if the row
satisfies all of the path's conditions on j, else 0. Then leaf l adds to
feature i in F

    v * (o_i - z_i) * integral_0^1 prod_{j in F, j != i} (o_j * y + z_j * (1 - y)) dy

(the Shapley weights |S|!(d-|S|-1)!/d! are the Beta integrals of y^|S| (1-y)^(d-1-|S|)).
The contribution depends on the row only through the bit pattern o over F,
so for every leaf with at most `TABLE_DEPTH` distinct path features the
contributions of all 2^d patterns are tabulated when the model is loaded
(the integral is a polynomial of degree d-1, integrated exactly by
Gauss-Legendre quadrature). Scoring a row then costs, per tree: one
decision per split node, one pattern per leaf (one check per path node)
and d table reads per leaf. Deeper leaves are integrated on the fly.

Rows are processed tree by tree within blocks of rows (a tree's tables stay
in cache) and blocks run in parallel (Numba threads, `NUMBA_NUM_THREADS`;
one parallel call at a time, small calls run on the calling thread). The
kernel is compiled on first use and cached on disk by Numba. Every row's contributions are added in
the same order (tree by tree, leaf by leaf) whatever the block, so a row
scored alone gives bit for bit what it gives in a batch.

Split decisions follow LightGBM's rules (`Tree::NumericalDecision` and
`Tree::CategoricalDecision`): missing types None/Zero/NaN with the default
direction, categorical bitsets, NaN or negative categories to the right.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from numba import njit, prange

# Leaves with at most this many distinct path features get a pattern table
# (2^d x d values); deeper ones are integrated on the fly.
TABLE_DEPTH = 8
# Rows per block: a block runs tree by tree, blocks run in parallel.
BLOCK_ROWS = 256
# Fewer rows than this are explained on the calling thread.
PARALLEL_MIN_ROWS = 512

_PARALLEL_LOCK = threading.Lock()
_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO_THRESHOLD = 1e-35


@dataclass(frozen=True)
class TreeShapTables:
    """A booster's trees as flat arrays, with per-leaf pattern tables (see the module doc)."""

    n_features: int
    expected_value: float
    # split nodes (global index = tree_node_start[t] + split_index)
    tree_node_start: np.ndarray
    tree_local_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_categorical: np.ndarray
    node_missing: np.ndarray
    node_default_left: np.ndarray
    node_cat_start: np.ndarray
    node_cat_words: np.ndarray
    cat_bits: np.ndarray
    # a split node's slot (its feature's position among the distinct features of the path
    # to it) and the positions of it and its children in the tree's mask array
    node_slot: np.ndarray
    node_local: np.ndarray
    node_left_local: np.ndarray
    node_right_local: np.ndarray
    # leaves (global index = tree_leaf_start[t] + leaf_index)
    tree_leaf_start: np.ndarray
    leaf_value: np.ndarray
    leaf_local: np.ndarray
    leaf_slot_start: np.ndarray
    slot_feature: np.ndarray
    slot_zero_fraction: np.ndarray
    leaf_table_start: np.ndarray
    table: np.ndarray
    # Gauss-Legendre points on [0, 1] for on-the-fly leaves: row d holds the points for d features.
    gauss_points: np.ndarray
    gauss_weights: np.ndarray

    @classmethod
    def from_booster(cls, booster: lgb.Booster, table_depth: int = TABLE_DEPTH) -> TreeShapTables:
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("TreeSHAP tables need a binary model (one tree per iteration)")
        return _build_tables(dump, table_depth)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions (n, n_features) in raw-score space (bias not included)."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] < self.n_features:
            raise ValueError(
                f"expected a matrix with {self.n_features} feature columns, got {matrix.shape}"
            )
        out = np.zeros((matrix.shape[0], self.n_features), dtype=np.float64)
        if matrix.shape[0] == 0:
            return out
        if matrix.shape[0] < PARALLEL_MIN_ROWS:
            _explain_serial(matrix, out, *self._arrays())
        else:
            # Numba's default threading layer runs one parallel region at a time.
            with _PARALLEL_LOCK:
                _explain_parallel(matrix, out, *self._arrays())
        return out

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.tree_node_start,
            self.tree_local_start,
            self.node_feature,
            self.node_threshold,
            self.node_categorical,
            self.node_missing,
            self.node_default_left,
            self.node_cat_start,
            self.node_cat_words,
            self.cat_bits,
            self.node_slot,
            self.node_local,
            self.node_left_local,
            self.node_right_local,
            self.tree_leaf_start,
            self.leaf_value,
            self.leaf_local,
            self.leaf_slot_start,
            self.slot_feature,
            self.slot_zero_fraction,
            self.leaf_table_start,
            self.table,
            self.gauss_points,
            self.gauss_weights,
        )


# ------------------------------------------------------------------ building the tables


def _gauss_legendre_unit(n_points: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n_points)
    return (x + 1.0) / 2.0, w / 2.0


def _points_for(d: int) -> int:
    """Quadrature points that integrate a degree d-1 polynomial exactly."""
    return d // 2 + 1


def pattern_table(values: np.ndarray, zero_fractions: np.ndarray) -> np.ndarray:
    """Contribution tables of leaves with the same number d of path features.

    values (m,), zero_fractions (m, d) -> (m, 2^d, d): entry [k, p, s] is what
    leaf k adds to its s-th feature for the pattern whose bit s' is o_{s'}.
    """
    m, d = zero_fractions.shape
    points, weights = _gauss_legendre_unit(_points_for(d))
    patterns = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)
    # factors[k, p, j, q] = o_j y_q + z_j (1 - y_q)
    factors = (
        patterns[None, :, :, None] * points[None, None, None, :]
        + zero_fractions[:, None, :, None] * (1.0 - points)[None, None, None, :]
    )
    ones = np.ones((m, 2**d, 1, len(points)))
    before = np.concatenate([ones, np.cumprod(factors, axis=2)[:, :, :-1, :]], axis=2)
    after = np.concatenate(
        [np.cumprod(factors[:, :, ::-1, :], axis=2)[:, :, ::-1, :][:, :, 1:, :], ones], axis=2
    )
    integral = np.einsum("kpjq,q->kpj", before * after, weights)
    return values[:, None, None] * (patterns[None, :, :] - zero_fractions[:, None, :]) * integral


def _build_tables(dump: dict[str, Any], table_depth: int) -> TreeShapTables:
    n_features = int(dump["max_feature_idx"]) + 1
    nodes = _FlatNodes()
    tree_node_start, tree_leaf_start, tree_local_start = [0], [0], [0]
    leaf_values: list[float] = []
    leaf_local: list[int] = []
    leaf_slots: list[list[tuple[int, float]]] = []
    expected_value = 0.0

    for tree in dump["tree_info"]:
        if tree.get("is_linear"):
            raise ValueError("TreeSHAP tables do not support linear trees")
        root = tree["tree_structure"]
        n_leaves = int(tree["num_leaves"])
        values = [0.0] * n_leaves
        local = [0] * n_leaves
        slots: list[list[tuple[int, float]]] = [[] for _ in range(n_leaves)]
        if "leaf_index" in root or "split_feature" not in root:
            values[int(root.get("leaf_index", 0))] = float(root.get("leaf_value", 0.0))
            expected_value += float(root.get("leaf_value", 0.0))
            n_local = 1
        else:
            expected_value += _expected_value(root)
            n_local = _flatten(root, nodes, values, local, slots, counter=[0], path_slots=[])
        tree_node_start.append(len(nodes.feature))
        tree_leaf_start.append(tree_leaf_start[-1] + n_leaves)
        tree_local_start.append(tree_local_start[-1] + n_local)
        leaf_values.extend(values)
        leaf_local.extend(local)
        leaf_slots.extend(slots)

    # categorical bitsets
    cat_words: list[int] = []
    node_cat_start, node_cat_words = [], []
    for categorical, categories in zip(nodes.categorical, nodes.categories, strict=True):
        node_cat_start.append(len(cat_words))
        n_words = max(categories) // 32 + 1 if categorical and categories else 0
        words = [0] * n_words
        for c in categories:
            words[c // 32] |= 1 << (c % 32)
        cat_words.extend(words)
        node_cat_words.append(n_words)

    # leaves: slots and pattern tables
    slot_start = np.zeros(len(leaf_slots) + 1, dtype=np.int64)
    slot_start[1:] = np.cumsum([len(s) for s in leaf_slots])
    depths = np.array([len(s) for s in leaf_slots], dtype=np.int64)
    values = np.asarray(leaf_values, dtype=np.float64)
    zero_fractions = np.array([z for s in leaf_slots for _, z in s], dtype=np.float64)
    table_start = np.full(len(leaf_slots), -1, dtype=np.int64)
    tabulated = (depths > 0) & (depths <= table_depth)
    sizes = np.where(tabulated, (2**depths) * depths, 0)
    table_start[tabulated] = (np.cumsum(sizes) - sizes)[tabulated]
    table = np.zeros(int(sizes.sum()), dtype=np.float64)
    for d in np.unique(depths[tabulated]):
        same_depth = np.flatnonzero(depths == d)
        for chunk in np.array_split(same_depth, max(1, len(same_depth) * (2**d) * d // 2_000_000)):
            z = np.stack([zero_fractions[slot_start[k] : slot_start[k] + d] for k in chunk])
            block = pattern_table(values[chunk], z).reshape(len(chunk), -1)
            for row, k in enumerate(chunk):
                table[table_start[k] : table_start[k] + block.shape[1]] = block[row]

    max_depth = int(depths.max()) if len(depths) else 0
    gauss_points = np.zeros((max_depth + 1, _points_for(max_depth)))
    gauss_weights = np.zeros_like(gauss_points)
    for d in range(1, max_depth + 1):
        y, w = _gauss_legendre_unit(_points_for(d))
        gauss_points[d, : len(y)], gauss_weights[d, : len(w)] = y, w

    return TreeShapTables(
        n_features=n_features,
        expected_value=expected_value,
        tree_node_start=np.asarray(tree_node_start, dtype=np.int64),
        tree_local_start=np.asarray(tree_local_start, dtype=np.int64),
        node_feature=np.asarray(nodes.feature, dtype=np.int64),
        node_threshold=np.asarray(nodes.threshold, dtype=np.float64),
        node_categorical=np.asarray(nodes.categorical, dtype=np.bool_),
        node_missing=np.asarray(nodes.missing, dtype=np.int64),
        node_default_left=np.asarray(nodes.default_left, dtype=np.bool_),
        node_cat_start=np.asarray(node_cat_start, dtype=np.int64),
        node_cat_words=np.asarray(node_cat_words, dtype=np.int64),
        cat_bits=np.asarray(cat_words, dtype=np.uint32),
        node_slot=np.asarray(nodes.slot, dtype=np.int64),
        node_local=np.asarray(nodes.local, dtype=np.int64),
        node_left_local=np.asarray(nodes.left_local, dtype=np.int64),
        node_right_local=np.asarray(nodes.right_local, dtype=np.int64),
        tree_leaf_start=np.asarray(tree_leaf_start, dtype=np.int64),
        leaf_value=values,
        leaf_local=np.asarray(leaf_local, dtype=np.int64),
        leaf_slot_start=slot_start,
        slot_feature=np.array([f for s in leaf_slots for f, _ in s], dtype=np.int64),
        slot_zero_fraction=zero_fractions,
        leaf_table_start=table_start,
        table=table,
        gauss_points=gauss_points,
        gauss_weights=gauss_weights,
    )


@dataclass
class _FlatNodes:
    """Split nodes of all trees in preorder, with their place in each tree's mask array."""

    feature: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    categorical: list[bool] = field(default_factory=list)
    categories: list[list[int]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)
    slot: list[int] = field(default_factory=list)
    local: list[int] = field(default_factory=list)
    left_local: list[int] = field(default_factory=list)
    right_local: list[int] = field(default_factory=list)


def _flatten(
    node: dict[str, Any],
    nodes: _FlatNodes,
    values: list[float],
    local: list[int],
    slots: list[list[tuple[int, float]]],
    counter: list[int],
    path_slots: list[tuple[int, float]],
) -> int:
    """Append `node`'s subtree in preorder; returns the number of local positions used so far.

    `path_slots` holds the distinct features of the path above `node` in order of first
    appearance, each with the product of the shares of rows that followed the path at its
    splits (its zero fraction). A node's slot is its feature's position in that list.
    """
    me = counter[0]
    counter[0] += 1
    if "leaf_index" in node:
        leaf = int(node["leaf_index"])
        values[leaf] = float(node["leaf_value"])
        local[leaf] = me
        slots[leaf] = list(path_slots)
        return counter[0]
    feature = int(node["split_feature"])
    known = [f for f, _ in path_slots]
    slot = known.index(feature) if feature in known else len(path_slots)
    index = len(nodes.feature)
    row = _node_row(node)
    nodes.feature.append(feature)
    nodes.threshold.append(row[1])
    nodes.categorical.append(row[2])
    nodes.missing.append(row[3])
    nodes.default_left.append(row[4])
    nodes.categories.append(row[5])
    nodes.slot.append(slot)
    nodes.local.append(me)
    nodes.left_local.append(-1)
    nodes.right_local.append(-1)
    count = float(node.get("internal_count", 0))
    for side in ("left_child", "right_child"):
        child = node[side]
        child_count = float(
            child["leaf_count"] if "leaf_index" in child else child["internal_count"]
        )
        fraction = child_count / count if count > 0 else 0.0
        child_slots = list(path_slots)
        if slot == len(path_slots):
            child_slots.append((feature, fraction))
        else:
            child_slots[slot] = (feature, child_slots[slot][1] * fraction)
        if side == "left_child":
            nodes.left_local[index] = counter[0]
        else:
            nodes.right_local[index] = counter[0]
        _flatten(child, nodes, values, local, slots, counter, child_slots)
    return counter[0]


def _node_row(node: dict[str, Any]) -> tuple[int, float, bool, int, bool, list[int]]:
    categorical = node["decision_type"] == "=="
    if categorical:
        categories = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
        threshold = 0.0
    else:
        categories = []
        threshold = float(node["threshold"])
    return (
        int(node["split_feature"]),
        threshold,
        categorical,
        _MISSING_TYPES[str(node.get("missing_type", "None"))],
        bool(node.get("default_left", True)),
        categories,
    )


def _expected_value(root: dict[str, Any]) -> float:
    """Count-weighted mean of the tree's leaf values (LightGBM's `Tree::ExpectedValue`)."""
    total, weighted = 0.0, 0.0
    stack = [root]
    while stack:
        node = stack.pop()
        if "leaf_index" in node:
            total += float(node.get("leaf_count", 0))
            weighted += float(node.get("leaf_count", 0)) * float(node["leaf_value"])
        else:
            stack.extend((node["left_child"], node["right_child"]))
    return weighted / total if total > 0 else 0.0


# ------------------------------------------------------------------ the compiled kernel


@njit(cache=True, inline="always")
def _goes_left(
    value, node, node_threshold, node_categorical, node_missing, node_default_left,
    node_cat_start, node_cat_words, cat_bits,
):  # fmt: skip
    if node_categorical[node]:
        if math.isnan(value) or value < 0.0:
            return False
        category = int(value)
        word = category // 32
        if word >= node_cat_words[node]:
            return False
        return (cat_bits[node_cat_start[node] + word] >> np.uint32(category % 32)) & np.uint32(
            1
        ) == 1
    missing = node_missing[node]
    if math.isnan(value) and missing != 2:
        value = 0.0
    if (missing == 1 and abs(value) <= _ZERO_THRESHOLD) or (missing == 2 and math.isnan(value)):
        return node_default_left[node]
    return value <= node_threshold[node]


@njit(cache=True)
def _explain_block(
    X, out, start, stop, masks,
    tree_node_start, tree_local_start, node_feature, node_threshold, node_categorical,
    node_missing, node_default_left, node_cat_start, node_cat_words, cat_bits,
    node_slot, node_local, node_left_local, node_right_local,
    tree_leaf_start, leaf_value, leaf_local,
    leaf_slot_start, slot_feature, slot_zero_fraction, leaf_table_start, table,
    gauss_points, gauss_weights,
):  # fmt: skip
    n_trees = tree_node_start.shape[0] - 1
    for t in range(n_trees):
        for r in range(start, stop):
            # masks[local] = slots whose path condition the row breaks on the way to `local`
            masks[0] = 0
            for node in range(tree_node_start[t], tree_node_start[t + 1]):
                left = _goes_left(
                    X[r, node_feature[node]], node, node_threshold, node_categorical,
                    node_missing, node_default_left, node_cat_start, node_cat_words, cat_bits,
                )  # fmt: skip
                above = masks[node_local[node]]
                bit = np.int64(1) << node_slot[node]
                masks[node_left_local[node]] = above | (bit * np.int64(not left))
                masks[node_right_local[node]] = above | (bit * np.int64(left))
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                first_slot = leaf_slot_start[leaf]
                d = leaf_slot_start[leaf + 1] - first_slot
                if d == 0:
                    continue
                pattern = ((np.int64(1) << d) - 1) & ~masks[leaf_local[leaf]]
                base = leaf_table_start[leaf]
                if base >= 0:
                    base += pattern * d
                    for s in range(d):
                        out[r, slot_feature[first_slot + s]] += table[base + s]
                else:
                    _deep_leaf(
                        out, r, leaf, d, pattern, first_slot, leaf_value, slot_feature,
                        slot_zero_fraction, gauss_points, gauss_weights,
                    )  # fmt: skip


@njit(cache=True)
def _deep_leaf(
    out, r, leaf, d, pattern, first_slot, leaf_value, slot_feature, slot_zero_fraction,
    gauss_points, gauss_weights,
):  # fmt: skip
    """A leaf without a table: the quadrature, each slot divided out of the full product."""
    n_points = d // 2 + 1
    value = leaf_value[leaf]
    for q in range(n_points):
        y = gauss_points[d, q]
        full = 1.0
        for j in range(d):
            full *= ((pattern >> j) & 1) * y + slot_zero_fraction[first_slot + j] * (1.0 - y)
        for s in range(d):
            o_s = (pattern >> s) & 1
            z_s = slot_zero_fraction[first_slot + s]
            own = o_s * y + z_s * (1.0 - y)
            if own > 0.0:
                others = full / own
            else:  # no training row followed this split: multiply the others out
                others = 1.0
                for j in range(d):
                    if j != s:
                        o_j = (pattern >> j) & 1
                        others *= o_j * y + slot_zero_fraction[first_slot + j] * (1.0 - y)
            out[r, slot_feature[first_slot + s]] += (
                value * (o_s - z_s) * gauss_weights[d, q] * others
            )


@njit(cache=True, parallel=True)
def _explain_parallel(X, out, *arrays):
    n_rows = X.shape[0]
    n_blocks = (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    tree_local_start = arrays[1]
    max_local = 1
    for t in range(tree_local_start.shape[0] - 1):
        max_local = max(max_local, tree_local_start[t + 1] - tree_local_start[t])
    for b in prange(n_blocks):
        masks = np.zeros(max_local, dtype=np.int64)
        start = b * BLOCK_ROWS
        stop = min(n_rows, start + BLOCK_ROWS)
        _explain_block(X, out, start, stop, masks, *arrays)


@njit(cache=True)
def _explain_serial(X, out, *arrays):
    tree_local_start = arrays[1]
    max_local = 1
    for t in range(tree_local_start.shape[0] - 1):
        max_local = max(max_local, tree_local_start[t + 1] - tree_local_start[t])
    masks = np.zeros(max_local, dtype=np.int64)
    _explain_block(X, out, 0, X.shape[0], masks, *arrays)
