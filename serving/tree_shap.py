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
The integral is a polynomial of degree d-1 in y, integrated exactly by
Gauss-Legendre quadrature.

What is precomputed: a leaf's contribution depends on the row only through
its pattern o over F, and the leaves of a subtree rooted at node n depend on
the row only through (a) which of the path conditions above n it breaks, per
distinct feature (d_n bits), and (b) its decisions at the s_n split nodes
inside the subtree. So each tree is cut into *groups* (subtrees, down to
single leaves) with d_n + s_n <= `GROUP_BITS`, and for every group the summed
contributions of all its leaves are tabulated for all 2^(d_n + s_n) indexes
when the model is loaded. The cut is chosen per tree to minimise the cost
per row: the values read (a group's table row holds one value per feature
the group touches), a lookup's bookkeeping, and a charge for the table's
size. Leaves with more than `LEAF_BITS` distinct path features get no table:
they are integrated on the fly, once per distinct pattern in a block of rows.

Explaining a row then costs, per tree: one decision per split node (computed
for a block of rows at a time, feature-major, so the comparisons vectorise),
each decision OR-ed into the index of the groups it matters to, and one
table row per group added into the row's contributions. On 400-tree,
31-leaf models this reads about a third of the values per-leaf tables read
and looks up a third as many tables; a model of small trees
(e.g. 4 leaves) has one table per tree (see docs/benchmarks.md, "Scoring and
reasons"). The price is memory: about 140-200 MB of tables for a 400-tree,
31-leaf model (a few MB for small trees), built in a few seconds; above
`MAX_TABLE_MB` per model, fewer bits are used (smaller tables, slower rows).

Rows are processed tree by tree within blocks of up to 4,096 rows (a tree's
tables are then reused by many rows while they are in cache; contributions
accumulate feature-major). `explain_all` runs several models (the nightly job
and the service explain churn and upsell together) and chunks of rows side by
side on a shared thread pool (`NUMBA_NUM_THREADS` threads; the kernel releases
the GIL); small calls run on the calling thread. The kernels are compiled on
first use and cached on disk by Numba. Every row's contributions are added in
the same order (tree by tree, group by group) whatever the block, so a row
scored alone gives bit for bit what it gives in a batch.

The same pass gives the raw score: each group also notes which of its leaves
each of its inside decisions reaches, so a row adds, tree by tree, the value
of the one leaf it reaches (0.0 from every other group). That is LightGBM's
`predict(raw_score=True)` bit for bit (the same leaf values summed in the same
order from 0.0), so scoring with exact reasons does not call `predict` too.

Split decisions follow LightGBM's rules (`Tree::NumericalDecision` and
`Tree::CategoricalDecision`): missing types None/Zero/NaN with the default
direction, categorical bitsets, NaN or negative categories to the right.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
from numba import njit

# A group's table has 2^(index bits) rows; subtrees needing more bits are cut further.
GROUP_BITS = 14
# Leaves with more distinct path features than this are integrated on the fly.
LEAF_BITS = 10
# Tables above this size (per model) are built with fewer bits instead.
MAX_TABLE_MB = 256.0
# Leaves with more distinct path features than this cannot be explained (index bits are int64).
MAX_PATH_FEATURES = 62
# Rows per block: a block runs tree by tree (a tree's tables are reused by all its rows).
BLOCK_ROWS = 4096
# Deep leaves' contributions are remembered for this many patterns per block (a power of 2).
MEMO_SLOTS = 64
# Fewer rows than this (all models together) are explained on the calling thread.
PARALLEL_MIN_ROWS = 64
# Choosing the cut: the cost of a group is its values read per row, plus the index
# bookkeeping of a lookup, plus a charge for its table's size (tables that stay in cache).
_LOOKUP_COST = 2.0
_COST_PER_TABLE_KB = 0.1

_MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
# node kinds in the kernel
_NUMERIC, _NUMERIC_ZERO_MISSING, _CATEGORICAL = 0, 1, 2
_ZERO_THRESHOLD = 1e-35
# LightGBM casts a categorical value to a C int; on x86 values beyond int range become negative.
_INT_LIMIT = 2.0**31


@dataclass(frozen=True)
class TreeShapTables:
    """A booster's trees as flat arrays, with per-group contribution tables (see the module doc)."""

    n_features: int
    expected_value: float
    group_bits: int
    # split nodes of all trees in preorder (tree t's are tree_node_start[t] .. [t + 1])
    tree_node_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_kind: np.ndarray
    node_nan_left: np.ndarray
    node_default_left: np.ndarray
    node_cat_start: np.ndarray
    node_cat_words: np.ndarray
    cat_bits: np.ndarray
    # what a node's decision does: for each incidence, index[group] |= (left ^ flip) << shift
    node_incidence_start: np.ndarray
    incidence_group: np.ndarray
    incidence_shift: np.ndarray
    incidence_flip: np.ndarray
    # groups (tree t's are tree_group_start[t] .. [t + 1]; incidence_group is tree-local)
    tree_group_start: np.ndarray
    group_table_start: np.ndarray
    group_feature_start: np.ndarray
    group_feature: np.ndarray
    table: np.ndarray
    # groups without a table (one deep leaf each): its value, and its slots' zero fractions
    # aligned with group_feature
    group_leaf_value: np.ndarray
    group_zero_fraction: np.ndarray
    # the raw score: a tabulated group's leaf reached for each of its inside decisions
    # (group_leaf_start[g] + index >> group_anc_bits[g], when no bit above is broken), a
    # deep leaf's value when its index is 0, and the value of each tree without splits
    group_anc_bits: np.ndarray
    group_leaf_start: np.ndarray
    leaf_values: np.ndarray
    tree_constant: np.ndarray
    # Gauss-Legendre points on [0, 1]: row d holds the points for d features.
    gauss_points: np.ndarray
    gauss_weights: np.ndarray

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        group_bits: int = GROUP_BITS,
        leaf_bits: int = LEAF_BITS,
        max_table_mb: float = MAX_TABLE_MB,
    ) -> TreeShapTables:
        """Tables for a binary booster.

        `group_bits` = 0 gives every leaf its own group (no subtree tables);
        `leaf_bits` = 0 integrates every leaf on the fly (no tables at all).
        When the tables would take more than `max_table_mb`, fewer bits are
        used (smaller tables, slower rows; the values are the same).
        """
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("TreeSHAP tables need a binary model (one tree per iteration)")
        return _build_tables(dump, group_bits, leaf_bits, max_table_mb)

    @property
    def n_groups(self) -> int:
        return len(self.group_table_start)

    def values_per_row(self) -> int:
        """Table values read per explained row (one per feature of each group)."""
        return int(self.group_feature_start[-1])

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions (n, n_features) in raw-score space (bias not included)."""
        return self.explain(matrix)[1]

    def explain(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (n,), bit for bit LightGBM's `predict(raw_score=True)`, and TreeSHAP
        contributions (n, n_features)."""
        return explain_all([(self, matrix)])[0]

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.tree_node_start,
            self.node_feature,
            self.node_threshold,
            self.node_kind,
            self.node_nan_left,
            self.node_default_left,
            self.node_cat_start,
            self.node_cat_words,
            self.cat_bits,
            self.node_incidence_start,
            self.incidence_group,
            self.incidence_shift,
            self.incidence_flip,
            self.tree_group_start,
            self.group_table_start,
            self.group_feature_start,
            self.group_feature,
            self.table,
            self.group_leaf_value,
            self.group_zero_fraction,
            self.group_anc_bits,
            self.group_leaf_start,
            self.leaf_values,
            self.tree_constant,
            self.gauss_points,
            self.gauss_weights,
        )


def explain_all(
    jobs: Sequence[tuple[TreeShapTables, np.ndarray]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(raw scores, contributions) for each (tables, matrix), computed side by side.

    Every model's rows are cut into chunks of up to `BLOCK_ROWS` (and into at least as
    many chunks in all as there are threads); the chunks run on a shared pool of
    `explain_threads()` threads (the kernel releases the GIL), or on the calling thread
    when there are fewer than `PARALLEL_MIN_ROWS` rows in all. A row's values do not
    depend on its chunk.
    """
    results: list[tuple[np.ndarray, np.ndarray]] = []
    tasks: list[tuple[TreeShapTables, np.ndarray, np.ndarray, np.ndarray]] = []
    for tables, matrix in jobs:
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] < tables.n_features:
            raise ValueError(
                f"expected a matrix with {tables.n_features} feature columns, got {matrix.shape}"
            )
        raw = np.zeros(matrix.shape[0], dtype=np.float64)
        out = np.zeros((matrix.shape[0], tables.n_features), dtype=np.float64)
        results.append((raw, out))
        tasks.append((tables, matrix, raw, out))
    total = sum(matrix.shape[0] for _, matrix, _, _ in tasks)
    threads = explain_threads()
    if total < PARALLEL_MIN_ROWS or threads == 1:
        for tables, matrix, raw, out in tasks:
            if matrix.shape[0]:
                _explain_rows(matrix, out, raw, *tables._arrays())
        return results
    chunks = []
    at_least = -(-threads // len(tasks))  # chunks per model so that every thread has one
    for tables, matrix, raw, out in tasks:
        n = matrix.shape[0]
        if n == 0:
            continue
        n_chunks = min(n, max(-(-n // BLOCK_ROWS), at_least))
        size = -(-n // n_chunks)
        for start in range(0, n, size):
            rows = slice(start, min(n, start + size))
            chunks.append((matrix[rows], out[rows], raw[rows], tables._arrays()))
    for future in [_pool().submit(_explain_chunk, *chunk) for chunk in chunks]:
        future.result()
    return results


def explain_threads() -> int:
    """Threads that explain rows side by side (`NUMBA_NUM_THREADS`, by default the CPUs)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _explain_chunk(
    matrix: np.ndarray, out: np.ndarray, raw: np.ndarray, arrays: tuple[np.ndarray, ...]
) -> None:
    _explain_rows(matrix, out, raw, *arrays)


def _pool() -> ThreadPoolExecutor:
    """The shared pool (created on first use, one per process: a forked child gets its own,
    since its parent's threads do not exist in it)."""
    return _pool_of(os.getpid())


@functools.cache
def _pool_of(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(explain_threads(), thread_name_prefix=f"tree-shap-{pid}")


# ------------------------------------------------------------------ one leaf's table


def _gauss_legendre_unit(n_points: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n_points)
    return (x + 1.0) / 2.0, w / 2.0


def _points_for(d: int) -> int:
    """Quadrature points that integrate a degree d-1 polynomial exactly."""
    return d // 2 + 1


def _gauss_tables(max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    points = np.zeros((max_depth + 1, _points_for(max_depth)))
    weights = np.zeros_like(points)
    for d in range(1, max_depth + 1):
        y, w = _gauss_legendre_unit(_points_for(d))
        points[d, : len(y)], weights[d, : len(w)] = y, w
    return points, weights


def leaf_table(value: float, zero_fractions: np.ndarray) -> np.ndarray:
    """A leaf's contributions for every pattern: (2^d, d), entry [p, s] is what the leaf adds
    to its s-th path feature when bit s' of p is o_{s'} (the row meets the path's conditions
    on feature s')."""
    zero_fractions = np.asarray(zero_fractions, dtype=np.float64)
    d = len(zero_fractions)
    points, weights = _gauss_tables(max(d, 1))
    out = np.zeros((2**d, d))
    _leaf_table(value, zero_fractions, points[d], weights[d], _points_for(d), out)
    return out


@njit(cache=True)
def _leaf_table(value, zero_fractions, points, weights, n_points, out):
    """Fill out (2^d, d) with the leaf's contributions per pattern (see `leaf_table`)."""
    d = zero_fractions.shape[0]
    before = np.empty(d + 1)
    after = np.empty(d + 1)
    for pattern in range(1 << d):
        for s in range(d):
            out[pattern, s] = 0.0
        for q in range(n_points):
            y = points[q]
            before[0] = 1.0
            for j in range(d):
                o_j = (pattern >> j) & 1
                before[j + 1] = before[j] * (o_j * y + zero_fractions[j] * (1.0 - y))
            after[d] = 1.0
            for j in range(d - 1, -1, -1):
                o_j = (pattern >> j) & 1
                after[j] = after[j + 1] * (o_j * y + zero_fractions[j] * (1.0 - y))
            for s in range(d):
                out[pattern, s] += weights[q] * before[s] * after[s + 1]
        for s in range(d):
            o_s = (pattern >> s) & 1
            out[pattern, s] *= value * (o_s - zero_fractions[s])


# ------------------------------------------------------------------ building the tables


@dataclass
class _Node:
    """A tree node while building: split nodes carry the split, leaves their value."""

    split: tuple[int, float, bool, int, bool, list[int]] | None
    value: float = 0.0
    # distinct features of the path above (order of first appearance) with zero fractions
    path_slots: list[tuple[int, float]] = field(default_factory=list)
    # split nodes above, each with the direction towards this node (True = left)
    path: list[tuple[_Node, bool]] = field(default_factory=list)
    slot: int = -1  # a split node's feature's position in path_slots (or len: new)
    children: tuple[_Node, _Node] | None = None
    index: int = -1  # preorder position among the tree's split nodes
    n_splits: int = 0  # split nodes in the subtree, itself included
    features: list[int] = field(default_factory=list)  # features of the subtree's leaves' slots


@dataclass
class _Group:
    root: _Node
    n_anc_bits: int  # d_n: the distinct features above the root
    features: list[int]
    leaves: list[_Node]
    split_nodes: list[_Node]  # preorder, inside the subtree


@dataclass
class _Flat:
    """Everything the arrays are made of, appended tree by tree."""

    tree_node_start: list[int] = field(default_factory=lambda: [0])
    tree_group_start: list[int] = field(default_factory=lambda: [0])
    node_feature: list[int] = field(default_factory=list)
    node_threshold: list[float] = field(default_factory=list)
    node_kind: list[int] = field(default_factory=list)
    node_nan_left: list[bool] = field(default_factory=list)
    node_default_left: list[bool] = field(default_factory=list)
    node_categories: list[list[int]] = field(default_factory=list)
    node_incidences: list[list[tuple[int, int, int]]] = field(default_factory=list)
    group_bits: list[int] = field(default_factory=list)  # index bits, -1 for a deep leaf
    group_anc_bits: list[int] = field(default_factory=list)  # of which path conditions above
    group_features: list[list[int]] = field(default_factory=list)
    group_leaf_value: list[float] = field(default_factory=list)
    group_zero_fractions: list[list[float]] = field(default_factory=list)
    group_leaf_slots: list[int] = field(default_factory=list)  # 2^(inside splits), 0 if deep
    tree_constant: list[float] = field(default_factory=list)
    # leaves of tabulated groups, for filling the tables
    fill_group: list[int] = field(default_factory=list)
    fill_value: list[float] = field(default_factory=list)
    fill_positions: list[list[int]] = field(default_factory=list)
    fill_zero_fractions: list[list[float]] = field(default_factory=list)
    fill_path: list[list[tuple[int, int, int]]] = field(default_factory=list)
    max_depth: int = 0
    table_values: int = 0


def _build_tables(
    dump: dict[str, Any], group_bits: int, leaf_bits: int, max_table_mb: float
) -> TreeShapTables:
    n_features = int(dump["max_feature_idx"]) + 1
    roots: list[_Node | None] = []
    constants: list[float] = []  # the value of a tree without splits (0.0 for the others)
    expected_value = 0.0
    for tree in dump["tree_info"]:
        if tree.get("is_linear"):
            raise ValueError("TreeSHAP tables do not support linear trees")
        root_dict = tree["tree_structure"]
        if "split_feature" not in root_dict:
            expected_value += float(root_dict.get("leaf_value", 0.0))
            roots.append(None)
            constants.append(float(root_dict.get("leaf_value", 0.0)))
        else:
            expected_value += _expected_value(root_dict)
            roots.append(_read_tree(root_dict))
            constants.append(0.0)
    for bits, leaves in _fallback_bits(group_bits, leaf_bits):
        flat = _Flat()
        for root, constant in zip(roots, constants, strict=True):
            if root is not None:
                _add_tree(root, flat, bits, leaves)
            flat.tree_constant.append(constant)
            flat.tree_node_start.append(len(flat.node_feature))
            flat.tree_group_start.append(len(flat.group_bits))
        if flat.table_values * 8 <= max_table_mb * 1e6:
            break
    return _arrays_from(flat, n_features, expected_value, bits)


def _fallback_bits(group_bits: int, leaf_bits: int) -> list[tuple[int, int]]:
    """(group bits, leaf bits) to try in turn, down to no tables at all."""
    tries = [
        (group_bits, leaf_bits),
        (min(group_bits, 12), min(leaf_bits, 9)),
        (min(group_bits, 10), min(leaf_bits, 8)),
        (0, min(leaf_bits, 8)),
        (0, min(leaf_bits, 6)),
        (0, 0),
    ]
    return list(dict.fromkeys(tries))


def _read_tree(root: dict[str, Any]) -> _Node:
    """The tree as _Node objects with path slots, paths and preorder split indexes."""
    counter = [0]

    def visit(node: dict[str, Any], path_slots, path) -> _Node:
        if "leaf_index" in node:
            return _Node(None, float(node["leaf_value"]), list(path_slots), list(path))
        split = _node_row(node)
        feature = split[0]
        known = [f for f, _ in path_slots]
        me = _Node(split, path_slots=list(path_slots), path=list(path))
        me.slot = known.index(feature) if feature in known else len(path_slots)
        me.index = counter[0]
        counter[0] += 1
        count = float(node.get("internal_count", 0))
        children = []
        for side, is_left in (("left_child", True), ("right_child", False)):
            child = node[side]
            child_count = float(
                child["leaf_count"] if "leaf_index" in child else child["internal_count"]
            )
            fraction = child_count / count if count > 0 else 0.0
            child_slots = list(path_slots)
            if me.slot == len(path_slots):
                child_slots.append((feature, fraction))
            else:
                child_slots[me.slot] = (feature, child_slots[me.slot][1] * fraction)
            children.append(visit(child, child_slots, [*path, (me, is_left)]))
        me.children = (children[0], children[1])
        return me

    return visit(root, [], [])


def _add_tree(root: _Node, flat: _Flat, group_bits: int, leaf_bits: int) -> None:
    """Append one tree's split nodes and groups to `flat`."""
    splits: list[_Node] = []
    _annotate(root, splits)
    groups: list[_Group] = []
    _choose_groups(root, group_bits, groups)
    first_node = len(flat.node_feature)
    for node in splits:
        assert node.split is not None
        feature, threshold, categorical, missing, default_left, categories = node.split
        flat.node_feature.append(feature)
        flat.node_threshold.append(threshold)
        if categorical:
            kind = _CATEGORICAL
        elif missing == _MISSING_TYPES["Zero"]:
            kind = _NUMERIC_ZERO_MISSING
        else:
            kind = _NUMERIC
        flat.node_kind.append(kind)
        # a NaN goes the default way (missing type NaN) or is read as 0.0 (None)
        flat.node_nan_left.append(
            default_left if missing == _MISSING_TYPES["NaN"] else threshold >= 0.0
        )
        flat.node_default_left.append(default_left)
        flat.node_categories.append(categories)
        flat.node_incidences.append([])
    for local, group in enumerate(groups):
        g = len(flat.group_bits)
        # bits 0 .. d_n - 1: the path condition above the root broken on that slot's feature
        for above, towards_left in group.root.path:
            flat.node_incidences[first_node + above.index].append(
                (local, above.slot, 1 if towards_left else 0)
            )
        inside = {node.index: i for i, node in enumerate(group.split_nodes)}
        # bits d_n ..: the decisions (1 = left) at the subtree's split nodes
        for node in group.split_nodes:
            flat.node_incidences[first_node + node.index].append(
                (local, group.n_anc_bits + inside[node.index], 0)
            )
        depth = max(len(leaf.path_slots) for leaf in group.leaves)
        flat.max_depth = max(flat.max_depth, depth)
        flat.group_features.append(group.features)
        flat.group_anc_bits.append(group.n_anc_bits)
        if group.root.split is None and group.n_anc_bits > leaf_bits:
            leaf = group.root
            if len(leaf.path_slots) > MAX_PATH_FEATURES:
                raise ValueError(
                    f"a leaf has {len(leaf.path_slots)} distinct features on its path; "
                    f"TreeSHAP tables handle at most {MAX_PATH_FEATURES}"
                )
            flat.group_bits.append(-1)
            flat.group_leaf_slots.append(0)
            flat.group_leaf_value.append(leaf.value)
            flat.group_zero_fractions.append([z for _, z in leaf.path_slots])
            continue
        flat.group_bits.append(group.n_anc_bits + len(group.split_nodes))
        flat.group_leaf_slots.append(2 ** len(group.split_nodes))
        flat.table_values += 2 ** flat.group_bits[-1] * len(group.features)
        flat.group_leaf_value.append(0.0)
        flat.group_zero_fractions.append([0.0] * len(group.features))
        position = {f: i for i, f in enumerate(group.features)}
        for leaf in group.leaves:
            flat.fill_group.append(g)
            flat.fill_value.append(leaf.value)
            flat.fill_positions.append([position[f] for f, _ in leaf.path_slots])
            flat.fill_zero_fractions.append([z for _, z in leaf.path_slots])
            flat.fill_path.append(
                [
                    (inside[above.index], 1 if towards_left else 0, above.slot)
                    for above, towards_left in leaf.path
                    if above.index in inside
                ]
            )


def _annotate(node: _Node, splits: list[_Node]) -> None:
    """Split counts and features of every subtree; split nodes in preorder into `splits`."""
    if node.split is None:
        node.features = [f for f, _ in node.path_slots]
        return
    splits.append(node)
    assert node.children is not None
    left, right = node.children
    _annotate(left, splits)
    _annotate(right, splits)
    node.n_splits = 1 + left.n_splits + right.n_splits
    node.features = left.features + [f for f in right.features if f not in left.features]


def _choose_groups(node: _Node, group_bits: int, groups: list[_Group]) -> float:
    """Cut the subtree into groups with the fewest values read per row; returns that cost."""
    n_anc_bits = len(node.path_slots)
    bits = n_anc_bits + node.n_splits
    whole = _group_cost(bits, len(node.features)) if bits <= group_bits else math.inf
    if node.split is None:  # a leaf is always a group (deep ones are integrated on the fly)
        groups.append(_Group(node, n_anc_bits, node.features, [node], []))
        return _group_cost(bits, len(node.features))
    assert node.children is not None
    mark = len(groups)
    cut = sum(_choose_groups(child, group_bits, groups) for child in node.children)
    if whole <= cut:
        del groups[mark:]
        leaves: list[_Node] = []
        split_nodes: list[_Node] = []
        _collect(node, leaves, split_nodes)
        groups.append(_Group(node, n_anc_bits, node.features, leaves, split_nodes))
        return whole
    return cut


def _group_cost(bits: int, n_features: int) -> float:
    return n_features + _LOOKUP_COST + _COST_PER_TABLE_KB * (2**bits) * n_features * 8 / 1024


def _collect(node: _Node, leaves: list[_Node], split_nodes: list[_Node]) -> None:
    if node.split is None:
        leaves.append(node)
        return
    split_nodes.append(node)
    assert node.children is not None
    for child in node.children:
        _collect(child, leaves, split_nodes)


def _arrays_from(
    flat: _Flat, n_features: int, expected_value: float, group_bits: int
) -> TreeShapTables:
    # categorical bitsets
    cat_words: list[int] = []
    node_cat_start, node_cat_words = [], []
    for kind, categories in zip(flat.node_kind, flat.node_categories, strict=True):
        node_cat_start.append(len(cat_words))
        n_words = max(categories) // 32 + 1 if kind == _CATEGORICAL and categories else 0
        words = [0] * n_words
        for c in categories:
            words[c // 32] |= 1 << (c % 32)
        cat_words.extend(words)
        node_cat_words.append(n_words)

    incidences = [inc for node in flat.node_incidences for inc in node]
    incidence_start = np.zeros(len(flat.node_incidences) + 1, dtype=np.int64)
    incidence_start[1:] = np.cumsum([len(node) for node in flat.node_incidences])

    bits = np.asarray(flat.group_bits, dtype=np.int64)
    n_group_features = np.array([len(f) for f in flat.group_features], dtype=np.int64)
    sizes = np.where(bits >= 0, (np.int64(1) << np.maximum(bits, 0)) * n_group_features, 0)
    table_start = np.where(bits >= 0, np.cumsum(sizes) - sizes, -1).astype(np.int64)
    feature_start = np.zeros(len(bits) + 1, dtype=np.int64)
    feature_start[1:] = np.cumsum(n_group_features)
    table = np.zeros(int(sizes.sum()), dtype=np.float64)

    leaf_slots = np.asarray(flat.group_leaf_slots, dtype=np.int64)
    leaf_start = np.where(bits >= 0, np.cumsum(leaf_slots) - leaf_slots, -1).astype(np.int64)
    leaf_values = np.zeros(int(leaf_slots.sum()), dtype=np.float64)
    gauss_points, gauss_weights = _gauss_tables(max(flat.max_depth, 1))
    fill_slot_start = np.zeros(len(flat.fill_group) + 1, dtype=np.int64)
    fill_slot_start[1:] = np.cumsum([len(p) for p in flat.fill_positions])
    fill_path_start = np.zeros(len(flat.fill_group) + 1, dtype=np.int64)
    fill_path_start[1:] = np.cumsum([len(p) for p in flat.fill_path])
    fill_path = np.array(
        [step for path in flat.fill_path for step in path], dtype=np.int64
    ).reshape(-1, 3)
    _fill_tables(
        table,
        table_start,
        bits,
        n_group_features,
        np.asarray(flat.fill_group, dtype=np.int64),
        np.asarray(flat.fill_value, dtype=np.float64),
        fill_slot_start,
        np.asarray([p for ps in flat.fill_positions for p in ps], dtype=np.int64),
        np.asarray([z for zs in flat.fill_zero_fractions for z in zs], dtype=np.float64),
        fill_path_start,
        fill_path,
        np.asarray(flat.group_anc_bits, dtype=np.int64),
        gauss_points,
        gauss_weights,
        leaf_values,
        leaf_start,
    )
    return TreeShapTables(
        n_features=n_features,
        expected_value=expected_value,
        group_bits=group_bits,
        tree_node_start=np.asarray(flat.tree_node_start, dtype=np.int64),
        node_feature=np.asarray(flat.node_feature, dtype=np.int64),
        node_threshold=np.asarray(flat.node_threshold, dtype=np.float64),
        node_kind=np.asarray(flat.node_kind, dtype=np.int64),
        node_nan_left=np.asarray(flat.node_nan_left, dtype=np.int64),
        node_default_left=np.asarray(flat.node_default_left, dtype=np.int64),
        node_cat_start=np.asarray(node_cat_start, dtype=np.int64),
        node_cat_words=np.asarray(node_cat_words, dtype=np.int64),
        cat_bits=np.asarray(cat_words, dtype=np.uint32),
        node_incidence_start=incidence_start,
        incidence_group=np.array([g for g, _, _ in incidences], dtype=np.int64),
        incidence_shift=np.array([s for _, s, _ in incidences], dtype=np.int64),
        incidence_flip=np.array([f for _, _, f in incidences], dtype=np.int64),
        tree_group_start=np.asarray(flat.tree_group_start, dtype=np.int64),
        group_table_start=table_start,
        group_feature_start=feature_start,
        group_feature=np.asarray([f for fs in flat.group_features for f in fs], dtype=np.int64),
        table=table,
        group_leaf_value=np.asarray(flat.group_leaf_value, dtype=np.float64),
        group_zero_fraction=np.asarray(
            [z for zs in flat.group_zero_fractions for z in zs], dtype=np.float64
        ),
        group_anc_bits=np.asarray(flat.group_anc_bits, dtype=np.int64),
        group_leaf_start=leaf_start,
        leaf_values=leaf_values,
        tree_constant=np.asarray(flat.tree_constant, dtype=np.float64),
        gauss_points=gauss_points,
        gauss_weights=gauss_weights,
    )


@njit(cache=True)
def _fill_tables(
    table, table_start, bits, n_group_features, fill_group, fill_value,
    fill_slot_start, fill_position, fill_zero_fraction, fill_path_start, fill_path,
    n_anc_bits, gauss_points, gauss_weights, leaf_values, leaf_start,
):  # fmt: skip
    """Sum every tabulated group's leaves' contributions for each of its indexes, and note
    which leaf each of its inside decisions reaches."""
    for k in range(fill_group.shape[0]):
        g = fill_group[k]
        first = fill_slot_start[k]
        d = fill_slot_start[k + 1] - first
        if d == 0:
            continue
        zero_fractions = fill_zero_fraction[first : first + d]
        leaf = np.empty((1 << d, d))
        _leaf_table(
            fill_value[k], zero_fractions, gauss_points[d], gauss_weights[d], d // 2 + 1, leaf
        )
        n_anc = n_anc_bits[g]
        anc_mask = (np.int64(1) << n_anc) - 1
        full = (np.int64(1) << d) - 1
        nf = n_group_features[g]
        for index in range(np.int64(1) << bits[g]):
            broken = index & anc_mask
            for step in range(fill_path_start[k], fill_path_start[k + 1]):
                left = (index >> (n_anc + fill_path[step, 0])) & 1
                if left != fill_path[step, 1]:
                    broken |= np.int64(1) << fill_path[step, 2]
            if broken == 0:  # the row reaches this leaf
                leaf_values[leaf_start[g] + (index >> n_anc)] = fill_value[k]
            pattern = full & ~broken
            base = table_start[g] + index * nf
            for s in range(d):
                table[base + fill_position[first + s]] += leaf[pattern, s]


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


@njit(cache=True, nogil=True)
def _decide(
    Xt, n_rows, node, left, node_feature, node_threshold, node_kind, node_nan_left,
    node_default_left, node_cat_start, node_cat_words, cat_bits,
):  # fmt: skip
    """left[i] = 1 if row i of the block goes left at `node` (LightGBM's rules), else 0."""
    values = Xt[node_feature[node]]
    kind = node_kind[node]
    if kind == _NUMERIC:
        threshold = node_threshold[node]
        nan_left = node_nan_left[node]
        for i in range(n_rows):
            v = values[i]
            left[i] = np.int64(v <= threshold) | (np.int64(v != v) & nan_left)
    elif kind == _NUMERIC_ZERO_MISSING:
        threshold = node_threshold[node]
        default_left = node_default_left[node]
        for i in range(n_rows):
            v = values[i]
            if v != v or abs(v) <= _ZERO_THRESHOLD:
                left[i] = default_left
            else:
                left[i] = np.int64(v <= threshold)
    else:
        start = node_cat_start[node]
        n_words = node_cat_words[node]
        for i in range(n_rows):
            v = values[i]
            left[i] = 0
            if v != v or v <= -1.0 or v >= _INT_LIMIT:
                continue
            category = np.int64(v)  # truncates towards zero, like LightGBM's cast to int
            word = category >> 5
            if word < n_words and (cat_bits[start + word] >> np.uint32(category & 31)) & 1:
                left[i] = 1


@njit(cache=True, nogil=True)
def _explain_block(
    X, out, raw, start, stop, Xt, left, index, bases, acc, raw_acc, memo_tags, memo_values,
    tree_node_start, node_feature, node_threshold, node_kind, node_nan_left,
    node_default_left, node_cat_start, node_cat_words, cat_bits,
    node_incidence_start, incidence_group, incidence_shift, incidence_flip,
    tree_group_start, group_table_start, group_feature_start, group_feature, table,
    group_leaf_value, group_zero_fraction, group_anc_bits, group_leaf_start, leaf_values,
    tree_constant, gauss_points, gauss_weights,
):  # fmt: skip
    n_rows = stop - start
    for i in range(n_rows):  # feature-major copy of the block: the decisions vectorise
        for f in range(Xt.shape[0]):
            Xt[f, i] = X[start + i, f]
    n_trees = tree_node_start.shape[0] - 1
    for t in range(n_trees):
        if tree_node_start[t + 1] == tree_node_start[t]:  # a tree without splits
            for i in range(n_rows):
                raw_acc[i] += tree_constant[t]
            continue
        g0 = tree_group_start[t]
        n_groups = tree_group_start[t + 1] - g0
        for g in range(n_groups):
            for i in range(n_rows):
                index[g, i] = 0
        for node in range(tree_node_start[t], tree_node_start[t + 1]):
            _decide(
                Xt, n_rows, node, left, node_feature, node_threshold, node_kind,
                node_nan_left, node_default_left, node_cat_start, node_cat_words, cat_bits,
            )  # fmt: skip
            for k in range(node_incidence_start[node], node_incidence_start[node + 1]):
                g = incidence_group[k]
                shift = incidence_shift[k]
                flip = incidence_flip[k]
                for i in range(n_rows):
                    index[g, i] |= (left[i] ^ flip) << shift
        for g in range(n_groups):
            group = g0 + g
            first = group_feature_start[group]
            nf = group_feature_start[group + 1] - first
            base0 = group_table_start[group]
            if base0 >= 0:
                # the raw score: the leaf reached, when the row reaches the subtree (exactly
                # one group per tree; adding 0.0 elsewhere keeps LightGBM's sum bit for bit)
                n_anc = group_anc_bits[group]
                above = (np.int64(1) << n_anc) - 1
                leaf0 = group_leaf_start[group]
                for i in range(n_rows):
                    reached = leaf_values[leaf0 + (index[g, i] >> n_anc)]
                    raw_acc[i] += reached if (index[g, i] & above) == 0 else 0.0
                for i in range(n_rows):
                    bases[i] = base0 + index[g, i] * nf
                for j in range(nf):
                    column = acc[group_feature[first + j]]
                    for i in range(n_rows):
                        column[i] += table[bases[i] + j]
            else:  # a deep leaf: integrated once per distinct pattern in the block
                memo_tags[:] = -1
                for i in range(n_rows):
                    if index[g, i] == 0:
                        raw_acc[i] += group_leaf_value[group]
                    pattern = ((np.int64(1) << nf) - 1) & ~index[g, i]
                    slot = (pattern ^ (pattern >> 6) ^ (pattern >> 12)) & (MEMO_SLOTS - 1)
                    if memo_tags[slot] != pattern:
                        memo_tags[slot] = pattern
                        _deep_leaf(
                            memo_values[slot], pattern, nf, group_leaf_value[group],
                            group_zero_fraction[first : first + nf], gauss_points[nf],
                            gauss_weights[nf],
                        )  # fmt: skip
                    for j in range(nf):
                        acc[group_feature[first + j], i] += memo_values[slot, j]
    for i in range(n_rows):
        raw[start + i] = raw_acc[i]
        for f in range(out.shape[1]):
            out[start + i, f] = acc[f, i]


@njit(cache=True, nogil=True)
def _deep_leaf(result, pattern, d, value, zero_fractions, points, weights):
    """A leaf without a table: its d contributions for `pattern`, by quadrature."""
    for s in range(d):
        result[s] = 0.0
    for q in range(d // 2 + 1):
        y = points[q]
        # prefix products, then suffix products times prefix: every product but the s-th
        product = 1.0
        for j in range(d):
            result[MAX_PATH_FEATURES + j] = product
            product *= ((pattern >> j) & 1) * y + zero_fractions[j] * (1.0 - y)
        product = weights[q]
        for s in range(d - 1, -1, -1):
            result[s] += result[MAX_PATH_FEATURES + s] * product
            product *= ((pattern >> s) & 1) * y + zero_fractions[s] * (1.0 - y)
    for s in range(d):
        result[s] *= value * (((pattern >> s) & 1) - zero_fractions[s])


@njit(cache=True, nogil=True)
def _max_groups(tree_group_start):
    most = 1
    for t in range(tree_group_start.shape[0] - 1):
        most = max(most, tree_group_start[t + 1] - tree_group_start[t])
    return most


@njit(cache=True, nogil=True)
def _explain_rows(X, out, raw, *arrays):
    """Contributions (out) and raw scores (raw) of the rows of X, block by block.

    Releases the GIL: chunks of rows (or different models) run on threads side by side."""
    n_rows = X.shape[0]
    most = _max_groups(arrays[13])
    block = max(1, min(n_rows, BLOCK_ROWS))  # one row (the service): no block-sized scratch
    Xt = np.empty((X.shape[1], block))
    left = np.empty(block, dtype=np.int64)
    index = np.empty((most, block), dtype=np.int64)
    bases = np.empty(block, dtype=np.int64)
    acc = np.empty((out.shape[1], block))
    raw_acc = np.empty(block)
    memo_tags = np.empty(MEMO_SLOTS, dtype=np.int64)
    memo_values = np.empty((MEMO_SLOTS, 2 * MAX_PATH_FEATURES))
    for start in range(0, n_rows, block):
        acc[:] = 0.0
        raw_acc[:] = 0.0
        stop = min(n_rows, start + block)
        _explain_block(
            X, out, raw, start, stop, Xt, left, index, bases, acc, raw_acc, memo_tags,
            memo_values, *arrays,
        )  # fmt: skip
