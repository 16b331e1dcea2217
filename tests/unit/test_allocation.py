"""Account-manager allocation: optimal on instances small enough to enumerate, always within
every capacity, never worse than a feasible current allocation, seniority and continuity."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from serving.allocation import (
    UNASSIGNED_NO_CAPACITY,
    UNASSIGNED_NO_SENIORITY,
    allocate_accounts,
)
from serving.portfolio_inputs import PortfolioInputError, check_account_managers
from serving.settings import SENIORITIES, TIERS, AllocationSettings

EXACT = AllocationSettings(mip_rel_gap=0.0)
# the whole book in one MILP, however large (the reference for the priced path)
EXACT_WHOLE = AllocationSettings(exact_max_accounts=1_000_000, mip_rel_gap=0.0)
# the path of large books (priced LP, rounding, neighbourhood MILP) on any book
PRICED = AllocationSettings(exact_max_accounts=0)


def managers_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (owner_id, seniority, capacity_accounts, capacity_hours)."""
    return check_account_managers(
        pd.DataFrame(rows, columns=["owner_id", "seniority", "capacity_accounts", "capacity_hours"])
    )


def scores_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (account_id, tier, priority, owner_id)."""
    frame = pd.DataFrame(rows, columns=["account_id", "tier", "priority", "owner_id"])
    frame["owner_id"] = frame["owner_id"].astype("string")
    return frame


def random_instance(seed: int, accounts: int, managers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    owner_ids = [f"M{j}" for j in range(managers)]
    book = managers_frame(
        [
            (
                owner_ids[j],
                SENIORITIES[rng.integers(0, 3)],
                float(rng.integers(0, 4)) if rng.random() < 0.8 else np.nan,
                float(rng.integers(1, 14)) if rng.random() < 0.7 else np.nan,
            )
            for j in range(managers)
        ]
    )
    scores = scores_frame(
        [
            (
                f"A{i}",
                TIERS[rng.integers(0, 3)],
                float(rng.integers(1, 100)),
                owner_ids[rng.integers(0, managers)] if rng.random() < 0.85 else None,
            )
            for i in range(accounts)
        ]
    )
    return scores, book


def objective(scores, book, owners: tuple, settings: AllocationSettings) -> float | None:
    """Value + continuity bonus of an assignment (owner id or None per account), None if
    it breaks a capacity or the seniority rule."""
    seniority = dict(zip(book["owner_id"], book["seniority"], strict=True))
    count = dict.fromkeys(seniority, 0.0)
    hours = dict.fromkeys(seniority, 0.0)
    total = 0.0
    accounts = zip(scores["tier"], scores["priority"], scores["owner_id"], owners, strict=True)
    for tier, priority, current, owner in accounts:
        if owner is None:
            continue
        factor = settings.match_factors[tier][seniority[owner]]
        if factor <= 0:
            return None
        count[owner] += 1
        hours[owner] += settings.hours_per_account[tier]
        total += priority * factor
        if not pd.isna(current) and owner == current:
            total += max(settings.continuity_share * priority, settings.continuity_min_gain)
    for owner, accounts_cap, hours_cap in zip(
        book["owner_id"], book["capacity_accounts"], book["capacity_hours"], strict=True
    ):
        if count[owner] > accounts_cap or hours[owner] > hours_cap + 1e-9:
            return None
    return total


def brute_force(scores, book, settings) -> float:
    choices = [None, *book["owner_id"]]
    best = 0.0
    for owners in itertools.product(choices, repeat=len(scores)):
        value = objective(scores, book, owners, settings)
        if value is not None and value > best:
            best = value
    return best


def assert_within_capacity(result, book, settings: AllocationSettings) -> None:
    assigned = result.assignments.dropna(subset=["assigned_owner_id"])
    hours = assigned["tier"].map(settings.hours_per_account)
    for _, manager in book.iterrows():
        mine = assigned["assigned_owner_id"] == manager["owner_id"]
        if not np.isnan(manager["capacity_accounts"]):
            assert mine.sum() <= manager["capacity_accounts"]
        if not np.isnan(manager["capacity_hours"]):
            assert hours[mine].sum() <= manager["capacity_hours"] + 1e-9


def assert_seniority_rule(result, settings: AllocationSettings) -> None:
    assigned = result.assignments.dropna(subset=["assigned_owner_id"])
    for row in assigned.itertuples():
        assert settings.match_factors[row.tier][row.assigned_seniority] > 0


@pytest.mark.parametrize("seed", range(12))
def test_optimal_on_instances_small_enough_to_enumerate(seed):
    scores, book = random_instance(seed, accounts=5, managers=3)
    result = allocate_accounts(scores, book, EXACT)
    best = brute_force(scores, book, EXACT)
    assert result.summary["objective_with_continuity"] == pytest.approx(best, rel=1e-9, abs=1e-6)
    assert result.summary["upper_bound"] >= best - 1e-6
    assert_within_capacity(result, book, EXACT)
    assert_seniority_rule(result, EXACT)
    # the reported value is the value of the assignment it returns
    owners = tuple(
        None if pd.isna(o) else o
        for o in result.assignments.set_index("account_id").loc[
            scores["account_id"], "assigned_owner_id"
        ]
    )
    assert objective(scores, book, owners, EXACT) == pytest.approx(best, rel=1e-9, abs=1e-6)


def medium_book(seed: int, slack: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """400 accounts, 8 managers. Current owners follow the seniority rule; with `slack`,
    capacities are the current load plus up to `slack` of it (the current allocation is
    feasible), otherwise random and tight."""
    rng = np.random.default_rng(100 + seed)
    accounts = 400
    seniority = ["executive", "senior", "senior", "junior", "junior", "junior", "junior", "junior"]
    priority = rng.lognormal(6, 1.2, accounts)
    rank = np.argsort(np.argsort(-priority))
    tier = np.where(rank < 20, "strategic", np.where(rank < 100, "high-touch", "tech-touch"))
    owner = np.where(
        tier == "strategic",
        np.array([f"M{i % 3}" for i in range(accounts)]),
        np.array([f"M{rng.integers(0, 8)}" for _ in range(accounts)]),
    )
    scores = scores_frame(
        [(f"A{i:04d}", tier[i], float(priority[i]), owner[i]) for i in range(accounts)]
    )
    hours = pd.Series(tier).map(AllocationSettings().hours_per_account)
    rows = []
    for j in range(8):
        mine = owner == f"M{j}"
        if slack is None:
            capacity = (float(rng.integers(30, 60)), float(rng.integers(40, 120)))
        else:
            capacity = (
                float(np.ceil(mine.sum() * (1 + slack * rng.random()))),
                float(hours[mine].sum() * (1 + slack * rng.random())),
            )
        rows.append((f"M{j}", seniority[j], *capacity))
    return scores, managers_frame(rows)


@pytest.mark.parametrize("exact_max_accounts", [0, 10_000])
@pytest.mark.parametrize("seed", range(3))
def test_capacities_hold_on_both_solver_paths(seed, exact_max_accounts):
    scores, book = medium_book(seed, slack=None)
    settings = AllocationSettings(exact_max_accounts=exact_max_accounts)
    result = allocate_accounts(scores, book, settings)
    assert_within_capacity(result, book, settings)
    assert_seniority_rule(result, settings)
    assert sorted(result.assignments["account_id"]) == sorted(scores["account_id"])
    assert result.summary["optimality_gap"] <= 0.01
    if exact_max_accounts == 0:
        assert result.summary["method"] in ("lp (integral)", "lp rounding + neighbourhood milp")
    else:
        assert result.summary["method"] in ("lp (integral)", "milp")


@pytest.mark.parametrize("exact_max_accounts", [0, 10_000])
@pytest.mark.parametrize("seed", range(3))
def test_beats_or_equals_a_feasible_current_allocation_on_both_solver_paths(
    seed, exact_max_accounts
):
    scores, book = medium_book(seed, slack=0.1)
    settings = AllocationSettings(exact_max_accounts=exact_max_accounts)
    result = allocate_accounts(scores, book, settings)
    summary = result.summary
    assert summary["current_feasible"] is True
    assert_within_capacity(result, book, settings)
    assert summary["expected_value_assigned"] >= summary["expected_value_current"] - 1e-6
    assert summary["gain"] >= -1e-6
    current = tuple(scores["owner_id"])
    assert summary["objective_with_continuity"] >= objective(scores, book, current, settings) - 1e-6


def test_never_worse_than_a_feasible_current_allocation():
    for seed in range(8):
        scores, book = random_instance(seed, accounts=6, managers=3)
        current = tuple(None if pd.isna(o) else o for o in scores["owner_id"])
        current_value = objective(scores, book, current, EXACT)
        result = allocate_accounts(scores, book, EXACT)
        if current_value is not None:
            assert result.summary["current_feasible"]
            assert result.summary["objective_with_continuity"] >= current_value - 1e-9
            assert result.summary["gain"] >= -1e-9


def test_junior_people_never_own_strategic_accounts():
    book = managers_frame([("J", "junior", 10, np.nan), ("S", "senior", 1, np.nan)])
    scores = scores_frame(
        [
            ("A", "strategic", 100.0, "J"),
            ("B", "strategic", 50.0, "J"),
            ("C", "tech-touch", 1.0, "J"),
        ]
    )
    result = allocate_accounts(scores, book, EXACT)
    owners = result.assignments.set_index("account_id")["assigned_owner_id"]
    # the senior has room for one: the more valuable strategic account; B cannot go to J
    assert owners["A"] == "S" and pd.isna(owners["B"]) and owners["C"] == "J"
    assert result.summary["current_forbidden_pairs"] == 2
    assert result.summary["current_feasible"] is False


def test_continuity_keeps_the_owner_unless_the_gain_exceeds_the_threshold():
    book = managers_frame([("S", "senior", 5, np.nan), ("E", "executive", 5, np.nan)])
    scores = scores_frame([("A", "strategic", 100.0, "S")])
    # moving to the executive gains 0.2 x 100 = 20
    moved = allocate_accounts(scores, book, AllocationSettings(continuity_share=0.1))
    assert moved.assignments["assigned_owner_id"].tolist() == ["E"]
    assert moved.summary["accounts_moved"] == 1
    assert moved.summary["gain"] == pytest.approx(20.0)
    kept = allocate_accounts(scores, book, AllocationSettings(continuity_share=0.3))
    assert kept.assignments["assigned_owner_id"].tolist() == ["S"]
    assert kept.summary["accounts_moved"] == 0
    absolute = allocate_accounts(
        scores, book, AllocationSettings(continuity_share=0.0, continuity_min_gain=25.0)
    )
    assert absolute.assignments["assigned_owner_id"].tolist() == ["S"]


def test_hours_capacity_by_tier():
    settings = AllocationSettings(
        hours_per_account={"strategic": 8.0, "high-touch": 3.0, "tech-touch": 0.5}
    )
    book = managers_frame([("S", "senior", np.nan, 10.0)])
    scores = scores_frame(
        [
            ("A", "strategic", 100.0, "S"),
            ("B", "high-touch", 40.0, "S"),
            ("C", "tech-touch", 30.0, "S"),
            ("D", "tech-touch", 20.0, "S"),
            ("E", "tech-touch", 10.0, "S"),
        ]
    )
    result = allocate_accounts(scores, book, settings)
    owners = result.assignments.set_index("account_id")["assigned_owner_id"]
    # 10 hours: A (8) + C + D + E (1.5) = 9.5 beats B (3) + all tech-touch (1.5) = 4.5 hours
    assert owners.notna().tolist() == [True, False, True, True, True]
    load = result.managers.set_index("owner_id")
    assert load.loc["S", "hours_assigned"] == pytest.approx(9.5)
    assert load.loc["S", "accounts_current"] == 5


def test_managers_without_capacity_take_everything_they_may_own():
    book = managers_frame([("J", "junior", np.nan, np.nan)])
    scores = scores_frame([(f"A{i}", "tech-touch", 1.0, None) for i in range(20)])
    result = allocate_accounts(scores, book, EXACT)
    assert result.summary["accounts_unassigned"] == 0
    assert result.summary["accounts_without_known_owner"] == 20


def test_deterministic_and_independent_of_row_order():
    scores, book = random_instance(7, accounts=60, managers=5)
    first = allocate_accounts(scores, book, AllocationSettings())
    again = allocate_accounts(
        scores.sample(frac=1, random_state=3), book.iloc[::-1], AllocationSettings()
    )
    pd.testing.assert_frame_equal(first.assignments, again.assignments)
    assert first.summary == again.summary


def test_bad_managers_are_named():
    with pytest.raises(PortfolioInputError, match=r"seniority.*owner_id \['M2'\]"):
        check_account_managers(
            pd.DataFrame({"owner_id": ["M1", "M2"], "seniority": ["Senior", "intern"]})
        )
    with pytest.raises(PortfolioInputError, match=r"capacity_hours.*owner_id \['M1'\]"):
        check_account_managers(
            pd.DataFrame({"owner_id": ["M1"], "seniority": ["junior"], "capacity_hours": [-1.0]})
        )
    with pytest.raises(PortfolioInputError, match="owner_id is not unique"):
        check_account_managers(
            pd.DataFrame({"owner_id": ["M1", "M1"], "seniority": ["junior"] * 2})
        )


def test_unknown_tier_is_named():
    book = managers_frame([("J", "junior", 1, 1)])
    with pytest.raises(PortfolioInputError, match=r"'tier' must be one of .* \['A'\]"):
        allocate_accounts(scores_frame([("A", "gold", 1.0, "J")]), book, EXACT)


def test_incomplete_match_factors_are_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no factor"):
        AllocationSettings(match_factors={t: {"junior": 1.0} for t in TIERS})


def test_an_account_worth_nothing_stays_with_its_owner():
    book = managers_frame([("S", "senior", np.nan, np.nan), ("E", "executive", np.nan, np.nan)])
    result = allocate_accounts(scores_frame([("A", "strategic", 0.0, "S")]), book, EXACT)
    assert result.assignments["assigned_owner_id"].tolist() == ["S"]
    assert result.summary["accounts_moved"] == 0


def test_no_accounts_and_no_managers():
    book = managers_frame([("S", "senior", 1, 1)])
    empty = allocate_accounts(scores_frame([]), book, EXACT)
    assert empty.summary["accounts"] == 0 and empty.assignments.empty
    with pytest.raises(PortfolioInputError, match="no manager"):
        allocate_accounts(scores_frame([("A", "tech-touch", 1.0, None)]), book.iloc[0:0], EXACT)


# --------------------------------------------------------------------------- the priced path


def assert_every_account_reported(result, scores) -> None:
    """Every account is in the plan once: with a manager, or unassigned with a reason."""
    plan = result.assignments
    assert sorted(plan["account_id"]) == sorted(scores["account_id"])
    unassigned = plan["assigned_owner_id"].isna()
    assert plan.loc[unassigned, "unassigned_reason"].notna().all()
    assert plan.loc[~unassigned, "unassigned_reason"].isna().all()
    assert result.summary["accounts_unassigned"] == int(unassigned.sum())
    assert sum(result.summary["unassigned_by_reason"].values()) == int(unassigned.sum())


@pytest.mark.parametrize("slack", [None, 0.1])
@pytest.mark.parametrize("seed", range(4))
def test_priced_path_is_feasible_and_within_0_2_percent_of_the_exact_milp(seed, slack):
    # 400 accounts x 8 managers; tight random capacities (slack None) or a feasible current
    # plan. Measured over 20 such books: at most 0.08% below the exact optimum.
    scores, book = medium_book(seed, slack)
    priced = allocate_accounts(scores, book, PRICED)
    exact = allocate_accounts(scores, book, EXACT_WHOLE)
    assert exact.summary["method"] in ("lp (integral)", "milp")
    assert_within_capacity(priced, book, PRICED)
    assert_seniority_rule(priced, PRICED)
    assert_every_account_reported(priced, scores)
    optimum = exact.summary["objective_with_continuity"]
    found = priced.summary["objective_with_continuity"]
    assert found <= optimum + 1e-6
    assert found >= (1 - 0.002) * optimum
    # its bound is a bound on the optimum, and the gap it reports covers the true one
    assert priced.summary["upper_bound"] >= optimum - 1e-6
    assert priced.summary["optimality_gap"] >= (optimum - found) / optimum - 1e-9
    # the value reported is the value of the plan returned
    owners = tuple(
        None if pd.isna(o) else o
        for o in priced.assignments.set_index("account_id").loc[
            scores["account_id"], "assigned_owner_id"
        ]
    )
    assert objective(scores, book, owners, PRICED) == pytest.approx(found, rel=1e-9)


def displacement_book() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The executive E has room for one account and owns T (tech-touch, 10), which is best
    left with E on its own (10 + 1 bonus > 10 elsewhere). S (strategic, 100) is owned by the
    junior J, who may not own it; only E may: 1.2 x 100 = 120. The optimum moves S to E
    and T to J: 130."""
    book = managers_frame([("E", "executive", 1, np.nan), ("J", "junior", 5, np.nan)])
    scores = scores_frame([("S", "strategic", 100.0, "J"), ("T", "tech-touch", 10.0, "E")])
    return scores, book


def test_priced_path_brings_in_an_account_whose_staying_the_prices_overturn():
    scores, book = displacement_book()
    result = allocate_accounts(scores, book, PRICED)
    owners = result.assignments.set_index("account_id")["assigned_owner_id"]
    assert owners["S"] == "E" and owners["T"] == "J"
    assert result.summary["objective_with_continuity"] == pytest.approx(130.0)
    assert result.summary["upper_bound"] == pytest.approx(130.0, rel=1e-5)
    assert result.summary["accounts_in_solver"] == 2


def test_priced_path_bound_holds_when_the_pricing_rounds_run_out():
    # no pricing round: T stays with E, S finds no room; the bound from the prices still
    # covers the optimum (130) and the reported gap says how far the plan is
    scores, book = displacement_book()
    result = allocate_accounts(
        scores, book, AllocationSettings(exact_max_accounts=0, pricing_rounds=0)
    )
    plan = result.assignments.set_index("account_id")
    assert plan.loc["T", "assigned_owner_id"] == "E" and pd.isna(plan.loc["S", "assigned_owner_id"])
    assert plan.loc["S", "unassigned_reason"] == UNASSIGNED_NO_CAPACITY
    assert result.summary["accounts_in_solver"] == 1
    assert result.summary["objective_with_continuity"] == pytest.approx(11.0)
    assert result.summary["upper_bound"] >= 130.0 - 1e-6
    assert result.summary["optimality_gap"] >= (130.0 - 11.0) / 130.0 - 1e-6


@pytest.mark.parametrize("settings", [EXACT, PRICED], ids=["exact", "priced"])
def test_an_account_no_seniority_may_own_is_unassigned_with_that_reason(settings):
    book = managers_frame([("J1", "junior", 10, np.nan), ("J2", "junior", 10, np.nan)])
    scores = scores_frame([("S", "strategic", 100.0, "J1"), ("T", "tech-touch", 1.0, "J1")])
    result = allocate_accounts(scores, book, settings)
    plan = result.assignments.set_index("account_id")
    assert pd.isna(plan.loc["S", "assigned_owner_id"])
    assert plan.loc["S", "unassigned_reason"] == UNASSIGNED_NO_SENIORITY
    assert plan.loc["T", "assigned_owner_id"] == "J1" and pd.isna(
        plan.loc["T", "unassigned_reason"]
    )
    assert result.summary["unassigned_by_reason"] == {UNASSIGNED_NO_SENIORITY: 1}
    assert_every_account_reported(result, scores)


def test_priced_path_is_deterministic_and_independent_of_row_order():
    scores, book = random_instance(7, accounts=300, managers=6)
    first = allocate_accounts(scores, book, PRICED)
    again = allocate_accounts(scores.sample(frac=1, random_state=3), book.iloc[::-1], PRICED)
    pd.testing.assert_frame_equal(first.assignments, again.assignments)
    assert first.summary == again.summary
    assert_within_capacity(first, book, PRICED)
    assert_every_account_reported(first, scores)


def test_priced_path_leaves_a_book_where_everyone_is_best_kept_out_of_the_solver():
    # every account already sits with a manager whose seniority suits it, with room to
    # spare: nothing can gain, so the solver gets no account and the plan is optimal
    book = managers_frame([("E", "executive", 10, np.nan), ("J", "junior", 10, 100.0)])
    scores = scores_frame(
        [("S", "strategic", 100.0, "E"), ("H", "high-touch", 40.0, "E")]
        + [(f"T{i}", "tech-touch", float(i + 1), "J") for i in range(5)]
    )
    result = allocate_accounts(scores, book, PRICED)
    assert result.summary["accounts_in_solver"] == 0
    assert result.summary["accounts_moved"] == 0
    # the bound carries the solver's tie-break (1e-6 of the mean priority per account)
    assert result.summary["optimality_gap"] == pytest.approx(0.0, abs=1e-5)
    assert result.summary["objective_with_continuity"] == pytest.approx(1.3 * 100 + 1.1 * (40 + 15))
    assert_every_account_reported(result, scores)


def hours_bound_model(seed: int):
    """The model of a 400-account book whose hours make the LP's slot counts fractional."""
    from serving import allocation

    scores, book = medium_book(seed, None)
    tiers = {t: c for c, t in enumerate(TIERS)}
    ids = list(book["owner_id"])
    return allocation._build_model(
        scores["priority"].to_numpy(dtype=float),
        scores["tier"].map(tiers).to_numpy(dtype=int),
        np.array([ids.index(o) for o in scores["owner_id"]]),
        book["seniority"].map({s: c for c, s in enumerate(SENIORITIES)}).to_numpy(dtype=int),
        book["capacity_accounts"].to_numpy(dtype=float),
        book["capacity_hours"].to_numpy(dtype=float),
        AllocationSettings(),
    )


@pytest.mark.parametrize("seed", range(3))
def test_a_warm_started_re_solve_equals_a_solve_from_scratch(seed):
    # the rounding changes bounds on one HiGHS model and re-solves from the last basis;
    # that must give the optimum of the LP with those bounds, as a fresh model does
    from serving import allocation

    model = hours_bound_model(seed)
    program = allocation._program(model)
    lp = allocation._LinearProgram(program, with_capacities=True)
    first = lp.optimum()
    counts = first.x[program.slots]
    assert np.any(np.abs(counts - np.round(counts)) > 1e-6)  # the rounding has work to do
    lower, upper = np.zeros(len(program.upper)), program.upper.copy()
    lower[program.slots] = upper[program.slots] = np.floor(counts + 1e-6)
    warm = lp.solve(lower, upper)
    cold = allocation._LinearProgram(program, with_capacities=True).solve(lower, upper)
    assert warm is not None and cold is not None
    assert warm.value == pytest.approx(cold.value, rel=1e-9)
    assert warm.value <= first.value + 1e-6
    # with every count fixed, the basic solution is integral (the rest is a network) and is
    # the plan the network LP gives for those counts
    read = allocation._assignment(model, warm.x)
    assert read is not None
    solved = allocation._assign(model, program, np.floor(counts + 1e-6))
    assert allocation._objective(model, read) == pytest.approx(
        allocation._objective(model, solved), rel=1e-9
    )


@pytest.mark.parametrize("seed", range(3))
def test_interior_point_start_gives_the_simplex_lp_value_and_prices(seed, monkeypatch):
    # large programs start with the interior point method (+ crossover): the same LP value,
    # and prices that bound the optimum just as well, as the dual simplex's
    from serving import allocation

    model = hours_bound_model(seed)
    program = allocation._program(model)
    simplex = allocation._LinearProgram(program, with_capacities=True).optimum()
    monkeypatch.setattr(allocation, "_IPM_MIN_COLUMNS", 0)
    interior = allocation._LinearProgram(program, with_capacities=True).optimum()
    assert interior.value == pytest.approx(simplex.value, rel=1e-7)
    prices = allocation._capacity_prices(program, interior, model.m)
    assert allocation._lagrangian_bound(model, prices) == pytest.approx(simplex.value, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_priced_path_with_an_interior_point_start_stays_within_0_2_percent(seed, monkeypatch):
    from serving import allocation

    scores, book = medium_book(seed, None)
    exact = allocate_accounts(scores, book, EXACT_WHOLE)
    monkeypatch.setattr(allocation, "_IPM_MIN_COLUMNS", 0)
    priced = allocate_accounts(scores, book, PRICED)
    assert_within_capacity(priced, book, PRICED)
    assert_seniority_rule(priced, PRICED)
    optimum = exact.summary["objective_with_continuity"]
    found = priced.summary["objective_with_continuity"]
    assert (1 - 0.002) * optimum <= found <= optimum + 1e-6
    assert priced.summary["upper_bound"] >= optimum - 1e-6


def test_the_neighbourhood_reopens_accounts_only_at_the_managers_around():
    from serving import allocation

    model = hours_bound_model(0)
    assigned = model.owner.copy()
    around = np.zeros(model.m, dtype=bool)
    around[[1, 4]] = True
    released = allocation._released(model, assigned, around)
    assert len(released) > 0
    assert set(assigned[released]) <= {1, 4}
    everyone = allocation._released(model, assigned, np.ones(model.m, dtype=bool))
    assert set(released) == {i for i in everyone if assigned[i] in (1, 4)}
