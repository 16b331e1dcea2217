"""serving.tree_shap: the compiled TreeSHAP gives LightGBM's pred_contrib values."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.tree_shap import (
    BLOCK_ROWS,
    PARALLEL_MIN_ROWS,
    TreeShapTables,
    explain_all,
    leaf_table,
)


def _data(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 4] = rng.integers(0, 40, n)  # categorical codes, some above 32 (a second bitset word)
    x[:, 5] = np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n))  # many exact zeros
    x[rng.random((n, 6)) < 0.08] = np.nan
    logit = (
        np.nan_to_num(x[:, 0]) * 1.5
        - np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])
        + np.isin(x[:, 4], [3, 7, 35]) * 1.2
        + np.nan_to_num(x[:, 5])
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _booster(x, y, **params) -> lgb.Booster:
    settings = {
        "objective": "binary",
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "verbosity": -1,
        "num_threads": 1,
        "seed": 0,
    }
    settings.update(params)
    return lgb.train(settings, lgb.Dataset(x, y, categorical_feature=[4]), num_boost_round=30)


# (group_bits, leaf_bits): every leaf on the fly; one table per leaf; the default cut into
# subtrees; small subtrees with many leaves integrated on the fly (remembered per pattern)
TABLE_SETTINGS = [(0, 0), (0, 10), (14, 10), (4, 3)]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"zero_as_missing": True},
        {"use_missing": False},
        {"num_leaves": 63, "max_depth": -1},
        {"num_leaves": 120, "min_data_in_leaf": 2, "max_depth": -1},
    ],
    ids=["nan-missing", "zero-as-missing", "no-missing", "deep", "over-64-leaves"],
)
def test_contributions_equal_lightgbm(params):
    x, y = _data()
    booster = _booster(x, y, **params)
    expected = booster.predict(x, pred_contrib=True)
    for group_bits, leaf_bits in TABLE_SETTINGS:
        tables = TreeShapTables.from_booster(booster, group_bits=group_bits, leaf_bits=leaf_bits)
        raw, contributions = tables.explain(x)
        np.testing.assert_allclose(contributions, expected[:, :-1], rtol=0, atol=1e-12)
        assert tables.expected_value == pytest.approx(expected[0, -1], abs=1e-12)
        # the raw score is LightGBM's bit for bit (the same leaves summed in the same order)
        np.testing.assert_array_equal(raw, booster.predict(x, raw_score=True))


def test_subtree_tables_read_fewer_values_and_give_the_same_contributions():
    x, y = _data()
    booster = _booster(x, y, num_leaves=31)
    per_leaf = TreeShapTables.from_booster(booster, group_bits=0)
    grouped = TreeShapTables.from_booster(booster)
    assert grouped.n_groups < per_leaf.n_groups
    assert grouped.values_per_row() < per_leaf.values_per_row()
    np.testing.assert_allclose(grouped.contributions(x), per_leaf.contributions(x), atol=1e-12)


def test_a_table_budget_gives_smaller_tables_and_the_same_values():
    x, y = _data()
    booster = _booster(x, y, num_leaves=31)
    full = TreeShapTables.from_booster(booster)
    small = TreeShapTables.from_booster(booster, max_table_mb=full.table.nbytes / 4e6)
    assert small.table.nbytes <= full.table.nbytes / 4
    assert small.group_bits < full.group_bits
    np.testing.assert_allclose(small.contributions(x), full.contributions(x), rtol=0, atol=1e-12)
    none = TreeShapTables.from_booster(booster, max_table_mb=0.0)
    assert none.table.nbytes == 0
    np.testing.assert_allclose(none.contributions(x), full.contributions(x), rtol=0, atol=1e-12)


def test_unseen_categories_and_extreme_values():
    x, y = _data()
    booster = _booster(x, y)
    odd = x[:20].copy()
    # unseen, negative, huge, fractional, missing, just below 0 (cast to category 0), beyond int
    odd[:8, 4] = [100.0, -1.0, 1e9, 2.5, np.nan, -0.5, 3e9, 7.0]
    odd[8:13, 0] = [np.inf, -np.inf, 0.0, -0.0, 1e300]
    odd[13:16, 5] = [1e-36, -1e-36, 0.0]  # zero for zero-as-missing
    for model in (booster, _booster(x, y, zero_as_missing=True)):
        expected = model.predict(odd, pred_contrib=True)[:, :-1]
        raw, contributions = TreeShapTables.from_booster(model).explain(odd)
        np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(raw, model.predict(odd, raw_score=True))


def test_a_row_alone_gives_what_it_gives_in_a_batch():
    x, y = _data(n=BLOCK_ROWS + 300)  # two blocks, chunks on the thread pool
    tables = TreeShapTables.from_booster(_booster(x, y))
    raw, batch = tables.explain(x)
    for i in (0, 1, 77, BLOCK_ROWS, len(x) - 1):
        alone_raw, alone = tables.explain(x[i : i + 1])  # on the calling thread
        np.testing.assert_array_equal(alone[0], batch[i])
        assert alone_raw[0] == raw[i]


def test_several_models_side_by_side_give_what_each_gives_alone():
    x, y = _data(n=PARALLEL_MIN_ROWS * 3)
    models = [
        TreeShapTables.from_booster(_booster(x, y)),
        TreeShapTables.from_booster(_booster(x, 1 - y, num_leaves=7)),
        TreeShapTables.from_booster(_booster(x, y), group_bits=0),
    ]
    together = explain_all([(tables, x) for tables in models] + [(models[0], x[:0])])
    assert together[-1][0].shape == (0,) and together[-1][1].shape == (0, 6)
    for tables, (raw, contributions) in zip(models, together, strict=False):
        alone_raw, alone = tables.explain(x)
        np.testing.assert_array_equal(raw, alone_raw)
        np.testing.assert_array_equal(contributions, alone)
        for i in (0, len(x) - 1):  # one row on the calling thread
            np.testing.assert_array_equal(tables.explain(x[i : i + 1])[1][0], contributions[i])


def test_raw_score_of_a_booster_with_a_constant_tree():
    """A first tree without a split (min_data_in_leaf above the rows) adds its one value;
    trees with splits trained on top of it add theirs after it."""
    x, y = _data(n=200)
    constant = _booster(x, y, min_data_in_leaf=500)
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbosity": -1}
    booster = lgb.train(
        params, lgb.Dataset(x, y, categorical_feature=[4]), num_boost_round=5, init_model=constant
    )
    tables = TreeShapTables.from_booster(booster)
    assert tables.tree_constant[0] != 0.0 and len(tables.node_feature) > 0
    for model in (constant, booster):
        raw, contributions = TreeShapTables.from_booster(model).explain(x)
        np.testing.assert_array_equal(raw, model.predict(x, raw_score=True))
        expected = model.predict(x, pred_contrib=True)[:, :-1]
        np.testing.assert_allclose(contributions, expected, rtol=0, atol=1e-12)


def test_leaf_table_by_hand():
    """One leaf, value 2, two features with zero fractions 0.5 and 0.25.

    Shapley values of v(S) = 2 * prod_{j in S} o_j * prod_{j not in S} z_j:
    with both conditions met (o = 1, 1): phi_0 = 2 * ((1 - 0.5) * 0.25 + (1 - 0.5) * 1) / 2.
    """
    table = leaf_table(2.0, np.array([0.5, 0.25]))
    phi_both = table[0b11]
    assert phi_both[0] == pytest.approx(2 * ((0.5 * 0.25) + (0.5 * 1.0)) / 2)
    assert phi_both[1] == pytest.approx(2 * ((0.75 * 0.5) + (0.75 * 1.0)) / 2)
    # Efficiency: contributions add up to v(all) - v(none) for every pattern.
    for pattern in range(4):
        o = [(pattern >> j) & 1 for j in range(2)]
        assert table[pattern].sum() == pytest.approx(2 * o[0] * o[1] - 2 * 0.5 * 0.25)


def test_wrong_width_is_an_error():
    x, y = _data(n=100)
    tables = TreeShapTables.from_booster(_booster(x, y))
    with pytest.raises(ValueError, match="6 feature columns"):
        tables.contributions(x[:, :3])


def test_concurrent_calls_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    x, y = _data(n=PARALLEL_MIN_ROWS + 10)
    tables = TreeShapTables.from_booster(_booster(x, y))
    expected = tables.contributions(x)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda rows: tables.contributions(x[rows]), [slice(None)] * 3 + [slice(0, 5)] * 3
            )
        )
    for result in results[:3]:
        np.testing.assert_array_equal(result, expected)
    for result in results[3:]:
        np.testing.assert_array_equal(result, expected[:5])


def _explain_in_child(tables: TreeShapTables, x: np.ndarray, queue) -> None:
    queue.put(tables.explain(x)[0])


def test_a_forked_child_explains_on_its_own_threads():
    """The parent's pool threads do not exist after a fork: the child must not wait on them."""
    import multiprocessing

    x, y = _data(n=PARALLEL_MIN_ROWS * 4)
    tables = TreeShapTables.from_booster(_booster(x, y))
    raw = tables.explain(x)[0]  # the parent's pool is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_explain_in_child, args=(tables, x, queue))
    child.start()
    np.testing.assert_array_equal(queue.get(timeout=120), raw)
    child.join(timeout=60)
    assert child.exitcode == 0
