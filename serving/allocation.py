"""Account-manager allocation: who owns which account, within every person's capacity.

The value model. Owning account i realises `priority_i x match_factor[tier_i][seniority]`
(0 forbids the pair: by default junior people never own strategic accounts). Keeping the
current owner earns a continuity bonus of max(continuity_share x priority_i,
continuity_min_gain), so an account moves only when the move gains more than that.
Each manager has an optional capacity in accounts and in monthly hours (hours per
account depend on the tier). An account may stay unassigned when capacity runs out
(it then goes to the automated programmes). The plan maximises total value + bonus.

The model is exact yet small because value depends on the manager only through the
seniority (and the continuity bonus): an account either stays with its owner (s_i) or
goes to a "pool" of interchangeable managers - the seniorities with the same match factor
for its tier (y_ip) - and each manager takes k_jt accounts of tier t, of which q_jt come
from the pools. Capacities are linear in k. With k fixed, the remaining constraint matrix
is totally unimodular (a network), so every vertex is integral; only the m x 3 counts k
need integrality. Solving (LPs with HiGHS through highspy, MILPs with HiGHS through
`scipy.optimize.milp`):

1. the LP relaxation gives an upper bound and, when k comes out integral, the optimum;
2. otherwise, for up to `exact_max_accounts` accounts, `scipy.optimize.milp` with k
   integer; above that, LP rounding: k is fixed tier by tier (the tier of most hours
   first) at the nearest integer that fits, with the LP re-solved after each tier (from
   the last basis: the model stays loaded in HiGHS, `_LinearProgram`), then a small
   `milp` re-optimises the neighbourhood the rounding left open (the managers whose counts
   it changed);
3. with k integral, the LP's basic solution is integral (k fixed leaves a network): it is
   the assignment (the network LP with k fixed is solved apart only for the MILP's k).
Large LPs (from `_IPM_MIN_COLUMNS` columns) start with the interior point method and
crossover: at 684,318 accounts x 9,948 managers, 10 s CPU against 36 s for the dual
simplex.

Large books (above `exact_max_accounts`) do not put every account in the LP. Most
accounts are best left with their owner; that is provable with the LP's duals: at the
capacity prices lambda (per account and per hour of each manager), an account may stay
with its owner when value_stay - price(owner, tier) >= max(0, best pool value - the
cheapest slot of its tier in that pool). So the solver starts with the accounts that
cannot stay, those that gain by moving before any price, and each overloaded manager's
least valuable accounts beyond capacity; the others stay, using capacity. After each LP,
every staying account that breaks the condition at the new prices joins the solver, until
none does (then the LP of the part plus the staying accounts is the LP of the whole book)
or `pricing_rounds` is reached. The upper bound is the Lagrangian bound at the last prices
(capacity x price + each account's best option at those prices), valid for any prices and
equal to the whole book's LP bound when the pricing converged. At 67,652 generated accounts
x 991 managers, 6,354 accounts go to the solver; at 684,318 x 9,948, 64,590
(docs/benchmarks.md, "Allocation").

The solution is never worse than the current allocation when that one is feasible.
The relative gap to the upper bound is reported; every unassigned account says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from serving.portfolio_inputs import PortfolioInputError, require_columns
from serving.settings import SENIORITIES, TIERS, AllocationSettings

_INTEGRAL = 1e-6
_TIE_BREAK = 1e-6  # of the mean priority
_IPM_MIN_COLUMNS = 50_000


@dataclass(frozen=True)
class AllocationResult:
    """The assignment per account, the load per manager and a JSON-ready summary."""

    assignments: pd.DataFrame
    managers: pd.DataFrame
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Model:
    """The allocation problem as arrays (accounts i, managers j, tiers t, pools p)."""

    priority: np.ndarray  # (n,)
    bonus: np.ndarray  # (n,) continuity bonus of keeping the owner
    seniority: np.ndarray  # (m,) seniority code
    factors: np.ndarray  # (T, seniorities) match factors
    tier: np.ndarray  # (n,) tier code
    value_stay: np.ndarray  # (n,) value + bonus of keeping the owner; 0 when not allowed
    stay_allowed: np.ndarray  # (n,) bool
    owner: np.ndarray  # (n,) manager index or -1
    pool_of_y: np.ndarray  # (ny,) pool index of each y variable
    account_of_y: np.ndarray  # (ny,) account index of each y variable
    value_y: np.ndarray  # (ny,)
    pools: list[tuple[int, float, np.ndarray]]  # (tier, factor, manager mask)
    slot_allowed: np.ndarray  # (m, T) bool
    capacity_accounts: np.ndarray  # (m,) nan = no limit
    capacity_hours: np.ndarray  # (m,)
    hours: np.ndarray  # (T,)
    tie: float  # solver-only tie-break added to every option's value

    @property
    def n(self) -> int:
        return len(self.tier)

    @property
    def m(self) -> int:
        return len(self.capacity_accounts)


def _build_model(
    priority: np.ndarray,
    tier: np.ndarray,
    owner: np.ndarray,
    seniority: np.ndarray,
    capacity_accounts: np.ndarray,
    capacity_hours: np.ndarray,
    settings: AllocationSettings,
    tie: float | None = None,
) -> _Model:
    factors = np.array([[settings.match_factors[t][s] for s in SENIORITIES] for t in TIERS])
    hours = np.array([settings.hours_per_account[t] for t in TIERS], dtype="float64")
    m = len(seniority)
    owner_seniority = np.where(owner >= 0, seniority[np.maximum(owner, 0)], 0)
    owner_factor = np.where(owner >= 0, factors[tier, owner_seniority], 0.0)
    stay_allowed = (owner >= 0) & (owner_factor > 0)
    bonus = np.maximum(settings.continuity_share * priority, settings.continuity_min_gain)
    # Ties (e.g. an account of priority 0) go to keeping the owner, then to assigning
    # someone, rather than to leaving the account unassigned. Solver costs only: reported
    # values leave the tie-break out.
    # A part of a larger model (a neighbourhood, the accounts priced in) passes its tie so
    # that values stay comparable.
    if tie is None:
        tie = _TIE_BREAK * max(1.0, float(priority.mean()) if len(priority) else 1.0)
    value_stay = np.where(stay_allowed, priority * owner_factor + bonus + 2 * tie, 0.0)
    present = np.bincount(seniority, minlength=len(SENIORITIES)) > 0
    pools: list[tuple[int, float, np.ndarray]] = []
    pool_of_y, account_of_y, value_y = [], [], []
    for t in range(len(TIERS)):
        members = np.nonzero(tier == t)[0]
        for factor in sorted({float(f) for f, ok in zip(factors[t], present, strict=True) if ok}):
            if factor <= 0:
                continue
            seniorities = np.nonzero((factors[t] == factor) & present)[0]
            pools.append((t, factor, np.isin(seniority, seniorities)))
            pool_of_y.append(np.full(len(members), len(pools) - 1))
            account_of_y.append(members)
            value_y.append(priority[members] * factor + tie)
    slot_allowed = factors[:, seniority].T > 0 if m else np.zeros((0, len(TIERS)), dtype=bool)
    return _Model(
        priority=priority,
        bonus=bonus,
        seniority=seniority,
        factors=factors,
        tier=tier,
        value_stay=value_stay,
        stay_allowed=stay_allowed,
        owner=owner,
        pool_of_y=np.concatenate(pool_of_y) if pool_of_y else np.zeros(0, dtype=int),
        account_of_y=np.concatenate(account_of_y) if account_of_y else np.zeros(0, dtype=int),
        value_y=np.concatenate(value_y) if value_y else np.zeros(0),
        pools=pools,
        slot_allowed=slot_allowed,
        capacity_accounts=capacity_accounts,
        capacity_hours=capacity_hours,
        hours=hours,
        tie=tie,
    )


@dataclass(frozen=True)
class _Program:
    """The model as a linear program: maximise value @ x."""

    value: np.ndarray
    upper: np.ndarray
    a_ub: sp.csr_matrix
    b_ub: np.ndarray
    a_eq: sp.csr_matrix
    network_rows: int  # the first rows of a_ub that are not capacity rows
    slots: slice  # the k variables
    capacity_manager: np.ndarray  # per capacity row: the manager index
    capacity_in_hours: np.ndarray  # per capacity row: True for hours, False for accounts


def _program(model: _Model) -> _Program:
    n, m, tiers = model.n, model.m, len(TIERS)
    ny = len(model.pool_of_y)
    q0, k0 = n + ny, n + ny + m * tiers
    size = k0 + m * tiers
    value = np.concatenate([model.value_stay, model.value_y, np.zeros(2 * m * tiers)])
    slot_upper = np.where(model.slot_allowed.ravel(), np.inf, 0.0)
    upper = np.concatenate([model.stay_allowed.astype(float), np.ones(ny), slot_upper, slot_upper])
    # accounts: s_i + sum_p y_ip <= 1
    rows = [np.arange(n), model.account_of_y]
    cols = [np.arange(n), n + np.arange(ny)]
    vals = [np.ones(n), np.ones(ny)]
    ub_rows = n
    # capacities: sum_t k_jt <= accounts, sum_t hours_t k_jt <= hours
    for j in range(m):
        for capacity, weights in (
            (model.capacity_accounts[j], np.ones(tiers)),
            (model.capacity_hours[j], model.hours),
        ):
            if np.isnan(capacity):
                continue
            rows.append(np.full(tiers, ub_rows))
            cols.append(k0 + j * tiers + np.arange(tiers))
            vals.append(weights)
            ub_rows += 1
    capacity_rows = [
        (j, kind, c)
        for j in range(m)
        for kind, c in enumerate((model.capacity_accounts[j], model.capacity_hours[j]))
        if not np.isnan(c)
    ]
    capacities = [c for _, _, c in capacity_rows]
    a_ub = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(ub_rows, size),
    )
    b_ub = np.concatenate([np.ones(n), np.asarray(capacities, dtype="float64")])
    # pools: sum_i y_ip - sum_{j in pool} q_jt = 0
    rows, cols, vals = [], [], []
    for p, (t, _, members) in enumerate(model.pools):
        chosen = np.nonzero(model.pool_of_y == p)[0]
        managers = np.nonzero(members)[0]
        rows += [np.full(len(chosen), p), np.full(len(managers), p)]
        cols += [n + chosen, q0 + managers * tiers + t]
        vals += [np.ones(len(chosen)), -np.ones(len(managers))]
    # slots: sum_{i owned by j, tier t} s_i + q_jt - k_jt = 0
    base = len(model.pools)
    staying = np.nonzero(model.stay_allowed)[0]
    slot_rows = base + model.owner[staying] * tiers + model.tier[staying]
    every_slot = base + np.arange(m * tiers)
    rows += [slot_rows, every_slot, every_slot]
    cols += [staying, q0 + np.arange(m * tiers), k0 + np.arange(m * tiers)]
    vals += [np.ones(len(staying)), np.ones(m * tiers), -np.ones(m * tiers)]
    a_eq = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(base + m * tiers, size),
    )
    return _Program(
        value,
        upper,
        a_ub,
        b_ub,
        a_eq,
        n,
        slice(k0, size),
        np.array([j for j, _, _ in capacity_rows], dtype=int),
        np.array([kind == 1 for _, kind, _ in capacity_rows], dtype=bool),
    )


@dataclass(frozen=True)
class _Relaxed:
    """An optimal basic solution of a `_Program`'s LP."""

    x: np.ndarray
    value: float  # value @ x (with the solver's tie-break)
    # per row of a_ub: its dual (<= 0: what one more unit of it is worth, negated)
    duals_ub: np.ndarray


class _LinearProgram:
    """A `_Program` loaded into HiGHS once (highspy), solved again after changes of bounds.

    Each solve after the first starts from the last basis (dual simplex, HiGHS's warm start),
    so the re-solves of the rounding cost a fraction of the first solve. Programs of at least
    `_IPM_MIN_COLUMNS` columns are solved first by the interior point method with crossover
    (a basic solution, as the simplex gives), several times faster there than the dual
    simplex from scratch; smaller ones by the dual simplex throughout. Without capacities,
    the capacity rows are left out (the network LP)."""

    def __init__(self, program: _Program, with_capacities: bool) -> None:
        rows = program.a_ub.shape[0] if with_capacities else program.network_rows
        matrix = sp.vstack([program.a_ub[:rows], program.a_eq]).tocsc()
        equalities = program.a_eq.shape[0]
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = matrix.shape[1], matrix.shape[0]
        lp.col_cost_ = -program.value
        lp.col_lower_ = np.zeros(matrix.shape[1])
        lp.col_upper_ = _highs_bounds(program.upper)
        lp.row_lower_ = np.concatenate([np.full(rows, -highspy.kHighsInf), np.zeros(equalities)])
        lp.row_upper_ = np.concatenate([program.b_ub[:rows], np.zeros(equalities)])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = matrix.indptr
        lp.a_matrix_.index_ = matrix.indices
        lp.a_matrix_.value_ = matrix.data
        # highspy._Highs: the solver without highspy.Highs's callback set-up, which prints
        # the HiGHS banner to stdout before any option can silence it.
        self._highs = highspy._Highs()
        self._highs.setOptionValue("output_flag", False)
        self._highs.setOptionValue("random_seed", 0)
        large = matrix.shape[1] >= _IPM_MIN_COLUMNS
        self._highs.setOptionValue("solver", "ipm" if large else "simplex")
        self._highs.passModel(lp)
        self._rows = rows
        self._columns = matrix.shape[1]
        self._program_upper = program.upper
        self._solved = False

    def optimum(self, upper: np.ndarray | None = None) -> _Relaxed:
        """The optimum with these upper bounds and every lower bound 0 (never infeasible:
        all zero is a solution)."""
        relaxed = self.solve(None if upper is None else np.zeros(self._columns), upper)
        if relaxed is None:
            raise RuntimeError("allocation LP failed: infeasible with every variable at 0")
        return relaxed

    def solve(
        self, lower: np.ndarray | None = None, upper: np.ndarray | None = None
    ) -> _Relaxed | None:
        """The optimum with these column bounds (None: as given / as last set); None when
        the bounds make the LP infeasible."""
        if lower is not None or upper is not None:
            self._highs.changeColsBounds(
                self._columns,
                np.arange(self._columns, dtype=np.int32),
                np.zeros(self._columns) if lower is None else lower,
                _highs_bounds(self._program_upper if upper is None else upper),
            )
        if self._solved:
            self._highs.setOptionValue("solver", "simplex")
        self._highs.run()
        self._solved = True
        status = self._highs.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible and lower is not None:
            return None
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"allocation LP failed: {self._highs.modelStatusToString(status)}")
        solution = self._highs.getSolution()
        return _Relaxed(
            np.asarray(solution.col_value),
            -float(self._highs.getInfo().objective_function_value),
            np.asarray(solution.row_dual)[: self._rows],
        )


def _highs_bounds(upper: np.ndarray) -> np.ndarray:
    return np.where(np.isinf(upper), highspy.kHighsInf, upper)


def _slot_counts_exact(
    program: _Program, gap: float, time_limit: float
) -> tuple[np.ndarray, float, bool] | None:
    """k from the MILP with integer k: (k, the solver's dual bound, whether the time limit
    stopped it), None without a solution."""
    size = len(program.value)
    integrality = np.zeros(size)
    integrality[program.slots] = 1
    matrix = sp.vstack([program.a_ub, program.a_eq]).tocsr()
    lower = np.concatenate([np.full(len(program.b_ub), -np.inf), np.zeros(program.a_eq.shape[0])])
    upper = np.concatenate([program.b_ub, np.zeros(program.a_eq.shape[0])])
    result = milp(
        -program.value,
        constraints=LinearConstraint(matrix, lower, upper),
        integrality=integrality,
        bounds=Bounds(np.zeros(size), program.upper),
        options={"mip_rel_gap": gap, "time_limit": time_limit},
    )
    if result.x is None:
        return None
    bound = -float(result.mip_dual_bound) if result.mip_dual_bound is not None else np.inf
    return np.round(result.x[program.slots]), bound, result.status == 1


def _assign(model: _Model, program: _Program, slot_counts: np.ndarray) -> np.ndarray:
    """The integral network solution for fixed k: the manager index per account or -1."""
    upper = program.upper.copy()
    upper[program.slots] = slot_counts
    result = _LinearProgram(program, with_capacities=False).optimum(upper)
    assigned = _assignment(model, result.x)
    if assigned is None:
        raise RuntimeError("allocation: the network LP returned a fractional assignment")
    return assigned


def _assignment(model: _Model, x: np.ndarray) -> np.ndarray | None:
    """The manager index per account (or -1) of an integral basic solution; None when x is
    fractional."""
    if np.any(np.abs(x - np.round(x)) > _INTEGRAL):
        return None
    x = np.round(x)
    n, ny, tiers = model.n, len(model.pool_of_y), len(TIERS)
    stays = x[:n] > 0
    moved = x[n : n + ny] > 0
    intake = x[n + ny : n + ny + model.m * tiers].reshape(model.m, tiers).astype(int)
    assigned = np.full(n, -1)
    assigned[stays] = model.owner[stays]
    return _disaggregate(model, assigned, moved, intake)


def _disaggregate(
    model: _Model, assigned: np.ndarray, moved: np.ndarray, intake: np.ndarray
) -> np.ndarray:
    """Give each pool's accounts to its managers' intakes: back to their own owner first
    when the owner is in the pool, then in manager order (deterministic)."""
    for p, (t, _, members) in enumerate(model.pools):
        accounts = model.account_of_y[(model.pool_of_y == p) & moved]
        managers = np.nonzero(members)[0]
        left = {int(j): int(intake[j, t]) for j in managers}
        rest = []
        for i in accounts:
            j = int(model.owner[i])
            if j in left and left[j] > 0:
                assigned[i] = j
                left[j] -= 1
            else:
                rest.append(i)
        queue = [j for j in managers for _ in range(left[int(j)])]
        if len(queue) != len(rest):
            raise RuntimeError("allocation: pool intake does not match the accounts moved")
        assigned[np.asarray(rest, dtype=int)] = np.asarray(queue, dtype=int)
    return assigned


def _objective(model: _Model, assigned: np.ndarray) -> float:
    """Value + continuity bonus of an assignment (manager index per account, -1 = none)."""
    known = assigned >= 0
    factor = model.factors[model.tier, model.seniority[np.maximum(assigned, 0)]]
    value = np.where(known, model.priority * factor, 0.0)
    value += np.where(known & (assigned == model.owner), model.bonus, 0.0)
    return float(value.sum())


def _load(model: _Model, assigned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accounts and hours per manager under an assignment."""
    known = assigned >= 0
    counts = np.bincount(assigned[known], minlength=model.m).astype(float)
    hours = np.bincount(assigned[known], weights=model.hours[model.tier[known]], minlength=model.m)
    return counts, hours


def _released(model: _Model, assigned: np.ndarray, around: np.ndarray) -> np.ndarray:
    """Accounts reopened around a rounded solution: at every manager of `around` (bool per
    manager: those whose counts the rounding changed), the lowest-value accounts of each
    tier until they free the hours of the largest slot (and one account), so that a better
    account can take their place."""
    largest = float(model.hours.max()) if len(model.hours) else 0.0
    needed = np.array(
        [max(1, int(np.ceil(largest / h))) if h > 0 else 1 for h in model.hours], dtype=int
    )
    value = model.priority * model.factors[model.tier, model.seniority[np.maximum(assigned, 0)]]
    value = value + np.where(assigned == model.owner, model.bonus, 0.0)
    owned = np.nonzero(assigned >= 0)[0]
    owned = owned[around[assigned[owned]]]
    # cells (manager, tier), lowest value first within each cell
    order = owned[np.lexsort((owned, value[owned], model.tier[owned], assigned[owned]))]
    cell = assigned[order] * len(TIERS) + model.tier[order]
    return order[_rank_within(cell) < needed[model.tier[order]]]


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    if not len(groups):
        return np.zeros(0, dtype=int)
    starts = np.r_[0, np.nonzero(np.diff(groups))[0] + 1]
    lengths = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, lengths)


def _unassigned_candidates(
    model: _Model, assigned: np.ndarray, room_accounts: np.ndarray, room_hours: np.ndarray
) -> np.ndarray:
    """The unassigned accounts that could still fit, best first, at most as many per tier
    as the remaining capacity holds."""
    unassigned = np.nonzero(assigned < 0)[0]
    candidates = []
    for t in range(len(TIERS)):
        pool = unassigned[model.tier[unassigned] == t]
        if not len(pool):
            continue
        by_accounts = np.where(
            np.isnan(room_accounts), len(pool), np.floor(room_accounts + _INTEGRAL)
        )
        by_hours = (
            np.where(
                np.isnan(room_hours), len(pool), np.floor(room_hours / model.hours[t] + _INTEGRAL)
            )
            if model.hours[t] > 0
            else np.full(model.m, len(pool))
        )
        fits = int(
            np.clip(np.minimum(by_accounts, by_hours), 0, None)[model.slot_allowed[:, t]].sum()
        )
        if fits <= 0:
            continue
        best = np.maximum(model.priority[pool] * model.factors[t].max(), model.value_stay[pool])
        candidates.append(pool[np.lexsort((pool, -best))][:fits])
    return np.concatenate(candidates) if candidates else np.zeros(0, dtype=int)


def _improve(
    model: _Model, assigned: np.ndarray, around: np.ndarray, settings: AllocationSettings
) -> tuple[np.ndarray, bool]:
    """Re-solve exactly the neighbourhood of a rounded solution: the accounts released at
    the managers `around` and the unassigned ones that could fit, in the capacity the other
    accounts leave. Keeps the result only when it is better. Also says whether the time
    limit stopped the MILP."""
    released = _released(model, assigned, around)
    fixed = assigned.copy()
    fixed[released] = -1
    counts, hours = _load(model, fixed)
    room_accounts = np.maximum(model.capacity_accounts - counts, 0.0)
    room_hours = np.maximum(model.capacity_hours - hours, 0.0)
    reopened = np.union1d(released, _unassigned_candidates(model, fixed, room_accounts, room_hours))
    if not len(reopened):
        return assigned, False
    neighbourhood = _build_model(
        model.priority[reopened],
        model.tier[reopened],
        model.owner[reopened],
        model.seniority,
        room_accounts,
        room_hours,
        settings,
        tie=model.tie,
    )
    program = _program(neighbourhood)
    solved = _slot_counts_exact(
        program, settings.neighbourhood_mip_rel_gap, settings.neighbourhood_time_limit_seconds
    )
    if solved is None:
        return assigned, True
    candidate = fixed
    slot_counts, _, limited = solved
    candidate[reopened] = _assign(neighbourhood, program, slot_counts)
    better = _objective(model, candidate) > _objective(model, assigned)
    return (candidate if better else assigned), limited


def _dived_slot_counts(
    model: _Model, program: _Program, lp: _LinearProgram, relaxed: _Relaxed
) -> tuple[np.ndarray, _Relaxed]:
    """Integral slot counts from the LP's, one tier at a time, the tier of most hours first:
    its counts are fixed at the nearest integer, and the LP is solved again, so that the
    other tiers take up the capacity the rounding freed or give up what it took. A count
    is rounded up only when that fits the manager's capacities with the tiers already
    fixed; when the LP has no solution (too few accounts for the slots), only the half,
    then the quarter, of those closest to the next integer are, then none. `lp` holds the
    program with its last basis (each re-solve starts from it). Returns the counts and the
    last LP solution (its counts are those: an optimum of the network LP with them)."""
    tiers = len(TIERS)
    lower, upper = np.zeros(len(program.upper)), program.upper.copy()
    counts = relaxed.x[program.slots].reshape(model.m, tiers).copy()
    result: _Relaxed | None = relaxed
    fixed = np.zeros((model.m, tiers), dtype=bool)
    for t in np.argsort(-model.hours, kind="stable"):
        columns = program.slots.start + np.arange(model.m) * tiers + t
        down = np.floor(counts[:, t] + _INTEGRAL)
        nearest = np.floor(counts[:, t] + 0.5)
        if np.array_equal(down, nearest) and np.all(np.abs(counts[:, t] - down) <= _INTEGRAL):
            lower[columns] = upper[columns] = down  # already integral: the LP stays optimal
            fixed[:, t] = True
            continue
        others = np.where(fixed, np.round(counts), 0.0)
        fits = ~(others.sum(axis=1) + nearest > model.capacity_accounts + _INTEGRAL) & ~(
            others @ model.hours + nearest * model.hours[t] > model.capacity_hours + _INTEGRAL
        )
        ups = np.nonzero(fits & (nearest > down))[0]
        ups = ups[np.argsort(down[ups] - counts[ups, t], kind="stable")]
        for share in sorted({len(ups), len(ups) // 2, len(ups) // 4, 0}, reverse=True):
            rounded = down.copy()
            rounded[ups[:share]] += 1
            trial_lower, trial_upper = lower.copy(), upper.copy()
            trial_lower[columns] = trial_upper[columns] = rounded
            result = lp.solve(trial_lower, trial_upper)
            if result is not None:
                break
        if result is None:
            raise RuntimeError("allocation: the LP has no solution with slot counts rounded down")
        lower, upper = trial_lower, trial_upper
        counts = result.x[program.slots].reshape(model.m, tiers)
        relaxed = result
        fixed[:, t] = True
    return np.round(counts).ravel(), relaxed


def _from_relaxation(
    model: _Model,
    program: _Program,
    lp: _LinearProgram,
    relaxed: _Relaxed,
    settings: AllocationSettings,
) -> tuple[np.ndarray, str]:
    """The integral plan from the LP's slot counts: exact when they are integral, else
    rounded tier by tier (`_dived_slot_counts`) and re-optimised around (neighbourhood
    MILP). A basic solution whose counts are integral is integral (with the counts fixed
    the program is a network), so the assignment is read from it; the network LP is solved
    apart only should it not be."""
    relaxed_k = relaxed.x[program.slots]
    if np.all(np.abs(relaxed_k - np.round(relaxed_k)) <= _INTEGRAL):
        assigned = _assignment(model, relaxed.x)
        if assigned is None:
            assigned = _assign(model, program, np.round(relaxed_k))
        return assigned, "lp (integral)"
    slot_counts, last = _dived_slot_counts(model, program, lp, relaxed)
    assigned = _assignment(model, last.x)
    if assigned is None:
        assigned = _assign(model, program, slot_counts)
    method = "lp rounding + neighbourhood milp" if settings.neighbourhood_rounds else "lp rounding"
    # The neighbourhood: the managers whose counts the rounding changed (a manager whose LP
    # counts are kept lost nothing to rounding). In the 1,000,000-account generated book
    # (684,318 active accounts x 9,948 managers), 1,310 managers and 3,891 accounts released:
    # the MILP solves in 5 s CPU and closes the gap to the bound from 0.05% to 0.0002%;
    # around every manager, it stopped at its time limit without improving the plan.
    rounded = np.any(
        np.abs(slot_counts - relaxed_k).reshape(model.m, len(TIERS)) > _INTEGRAL, axis=1
    )
    for _ in range(settings.neighbourhood_rounds):
        improved, limited = _improve(model, assigned, rounded, settings)
        if limited:
            method = f"{method}, time limit reached"
        if improved is assigned:
            break
        assigned = improved
    return assigned, method


@dataclass(frozen=True)
class _Plan:
    assigned: np.ndarray  # manager index per account or -1
    method: str
    bound: float  # upper bound on the objective (with the solver's tie-break)
    in_solver: int  # accounts the solver decided (the others keep their owner)


def _solve(model: _Model, settings: AllocationSettings) -> _Plan:
    if model.n > settings.exact_max_accounts:
        return _solve_priced(model, settings)
    program = _program(model)
    lp = _LinearProgram(program, with_capacities=True)
    relaxed = lp.optimum()
    bound = relaxed.value
    relaxed_k = relaxed.x[program.slots]
    if np.any(np.abs(relaxed_k - np.round(relaxed_k)) > _INTEGRAL):
        solved = _slot_counts_exact(program, settings.mip_rel_gap, settings.time_limit_seconds)
        if solved is not None:
            slot_counts, milp_bound, limited = solved
            method = "milp, time limit reached" if limited else "milp"
            assigned = _assign(model, program, slot_counts)
            return _Plan(assigned, method, min(bound, milp_bound), model.n)
    assigned, method = _from_relaxation(model, program, lp, relaxed, settings)
    return _Plan(assigned, method, bound, model.n)


@dataclass(frozen=True)
class _Prices:
    """Capacity prices (LP duals): what one more account / one more hour of each manager
    is worth."""

    per_account: np.ndarray  # (m,)
    per_hour: np.ndarray  # (m,)

    def of_slots(self, hours: np.ndarray) -> np.ndarray:
        """(m, T): the price of one account of each tier at each manager."""
        return self.per_account[:, None] + self.per_hour[:, None] * hours[None, :]


def _capacity_prices(program: _Program, relaxed: _Relaxed, m: int) -> _Prices:
    duals = np.maximum(-relaxed.duals_ub[program.network_rows :], 0.0)
    per_account, per_hour = np.zeros(m), np.zeros(m)
    hours = program.capacity_in_hours
    per_account[program.capacity_manager[~hours]] = duals[~hours]
    per_hour[program.capacity_manager[hours]] = duals[hours]
    return _Prices(per_account, per_hour)


def _gains(model: _Model, prices: _Prices) -> tuple[np.ndarray, np.ndarray]:
    """Per account, at these prices: (value of staying - its slot's price, best value of
    moving to a pool - the cheapest slot in the pool); -inf when not possible."""
    slot = prices.of_slots(model.hours)
    stay = np.full(model.n, -np.inf)
    keep = model.stay_allowed
    stay[keep] = model.value_stay[keep] - slot[model.owner[keep], model.tier[keep]]
    move = np.full(model.n, -np.inf)
    for p, (t, _, members) in enumerate(model.pools):
        chosen = model.pool_of_y == p
        np.maximum.at(
            move, model.account_of_y[chosen], model.value_y[chosen] - slot[members, t].min()
        )
    return stay, move


def _lagrangian_bound(model: _Model, prices: _Prices) -> float:
    """Upper bound on the objective for any prices >= 0 (capacities priced, not enforced:
    every account takes its best option at these prices). At the LP's optimal prices it
    is the LP bound."""
    stay, move = _gains(model, prices)
    capacity = prices.per_account @ np.nan_to_num(model.capacity_accounts) + (
        prices.per_hour @ np.nan_to_num(model.capacity_hours)
    )
    return float(capacity + np.maximum(np.maximum(stay, move), 0.0).sum())


def _initially_free(model: _Model) -> np.ndarray:
    """The accounts the solver starts with: those that cannot stay, those that gain by
    moving somewhere (before capacity prices), and, at every manager over a capacity, the
    least valuable owned accounts beyond what fits. The rest stay with their owner."""
    stay, move = _gains(model, _Prices(np.zeros(model.m), np.zeros(model.m)))
    free = ~model.stay_allowed | (move > stay)
    staying = np.nonzero(~free)[0]
    order = staying[np.lexsort((staying, -model.value_stay[staying], model.owner[staying]))]
    owner = model.owner[order]
    rank = _rank_within(owner)
    hours = model.hours[model.tier[order]]
    cumulative = np.cumsum(hours)
    starts = np.nonzero(rank == 0)[0]
    before = np.repeat(cumulative[starts] - hours[starts], np.diff(np.r_[starts, len(order)]))
    fits_accounts = ~(rank + 1 > model.capacity_accounts[owner])  # NaN: no limit
    fits_hours = ~(cumulative - before > model.capacity_hours[owner] + _INTEGRAL)
    free[order[~(fits_accounts & fits_hours)]] = True
    return free


def _part(model: _Model, free: np.ndarray, settings: AllocationSettings) -> _Model:
    """The model of the free accounts in the capacity the staying ones leave."""
    fixed = ~free
    counts, hours = _load(model, np.where(fixed, model.owner, -1))
    indices = np.nonzero(free)[0]
    return _build_model(
        model.priority[indices],
        model.tier[indices],
        model.owner[indices],
        model.seniority,
        np.maximum(model.capacity_accounts - counts, 0.0),
        np.maximum(model.capacity_hours - hours, 0.0),
        settings,
        tie=model.tie,
    )


def _solve_priced(model: _Model, settings: AllocationSettings) -> _Plan:
    """Large books: most accounts are best left with their owner, so only the others go to
    the solver. Start with `_initially_free`, solve the LP, and bring in every staying
    account whose staying is not optimal at the LP's capacity prices; repeat until none is
    left (then the LP is the whole book's LP) or `pricing_rounds` is reached. The integral
    plan comes from the last LP (`_from_relaxation`); the bound from the prices."""
    free = _initially_free(model)
    prices = _Prices(np.zeros(model.m), np.zeros(model.m))
    for round_ in range(settings.pricing_rounds + 1):
        part = _part(model, free, settings)
        if part.n == 0:
            break
        program = _program(part)
        lp = _LinearProgram(program, with_capacities=True)
        relaxed = lp.optimum()
        prices = _capacity_prices(program, relaxed, model.m)
        stay, move = _gains(model, prices)
        late = ~free & (np.maximum(move, 0.0) > stay + model.tie)
        if not late.any() or round_ == settings.pricing_rounds:
            break
        free |= late
    assigned = np.where(free, -1, model.owner)
    method = "lp (integral)"
    if part.n:
        assigned[free], method = _from_relaxation(part, program, lp, relaxed, settings)
    return _Plan(assigned, method, _lagrangian_bound(model, prices), part.n)


def _current_is_feasible(model: _Model) -> tuple[bool, list[int], int]:
    """(feasible, managers over a capacity, accounts whose owner may not own them)."""
    forbidden = int(((model.owner >= 0) & ~model.stay_allowed).sum())
    counts, hours = _load(model, model.owner)
    over = [
        j
        for j in range(model.m)
        if (counts[j] > model.capacity_accounts[j] + _INTEGRAL)
        or (hours[j] > model.capacity_hours[j] + _INTEGRAL)
    ]
    return forbidden == 0 and not over, over, forbidden


def allocate_accounts(
    scores: pd.DataFrame, account_managers: pd.DataFrame, settings: AllocationSettings
) -> AllocationResult:
    """Assign accounts to managers maximising expected value with continuity (see module doc).

    `scores` needs account_id, owner_id, tier and priority; `account_managers` is checked
    (`serving.portfolio_inputs.check_account_managers`).
    """
    require_columns(scores, "scores", ["account_id", "owner_id", "tier", "priority"])
    unknown_tiers = ~scores["tier"].isin(TIERS)
    if unknown_tiers.any():
        raise PortfolioInputError(
            f"scores: column 'tier' must be one of {list(TIERS)}; account_id "
            f"{list(scores.loc[unknown_tiers, 'account_id'].astype(str).head(5))}"
        )
    if account_managers.empty:
        raise PortfolioInputError("account_managers: the table has no manager to allocate to")
    managers = account_managers.sort_values("owner_id", kind="stable").reset_index(drop=True)
    manager_index = pd.Index(managers["owner_id"].astype(str).to_numpy(dtype=object), dtype=object)
    accounts = scores.assign(account_id=scores["account_id"].astype(str)).sort_values(
        "account_id", kind="stable"
    )
    priority = accounts["priority"].to_numpy(dtype="float64").clip(min=0.0)
    tier = accounts["tier"].map({t: c for c, t in enumerate(TIERS)}).to_numpy(dtype=int)
    owner_ids = accounts["owner_id"].astype("string").to_numpy(dtype=object, na_value=None)
    owner = manager_index.get_indexer(owner_ids).astype(int)  # -1: none or not a manager
    seniority = (
        managers["seniority"].map({s: c for c, s in enumerate(SENIORITIES)}).to_numpy(dtype=int)
    )
    model = _build_model(
        priority,
        tier,
        owner,
        seniority,
        managers["capacity_accounts"].to_numpy(dtype="float64"),
        managers["capacity_hours"].to_numpy(dtype="float64"),
        settings,
    )
    plan = _solve(model, settings)
    assigned, method, bound = plan.assigned, plan.method, plan.bound
    objective = _objective(model, assigned)
    feasible, over, forbidden = _current_is_feasible(model)
    current_objective = _objective(model, model.owner)
    if feasible and current_objective > objective + 1e-9 * max(1.0, abs(objective)):
        assigned, objective, method = (
            model.owner.copy(),
            current_objective,
            f"{method}; kept current",
        )
    return _result(
        accounts,
        managers,
        model,
        assigned,
        settings,
        {
            "method": method,
            "objective": objective,
            "upper_bound": bound,
            "in_solver": plan.in_solver,
            "current_feasible": feasible,
            "current_over_capacity": [str(managers["owner_id"].iloc[j]) for j in over],
            "current_forbidden_pairs": forbidden,
        },
    )


UNASSIGNED_NO_SENIORITY = "no manager has a seniority that may own its tier"
UNASSIGNED_NO_CAPACITY = (
    "capacity: the managers who may own it are full with accounts worth more to the plan"
)


def _unassigned_reasons(model: _Model, assigned: np.ndarray) -> pd.Series:
    """Why each unassigned account is (NA for assigned accounts)."""
    nobody = ~model.slot_allowed.any(axis=0) if model.m else np.ones(len(TIERS), dtype=bool)
    reasons = np.where(
        assigned >= 0,
        None,
        np.where(nobody[model.tier], UNASSIGNED_NO_SENIORITY, UNASSIGNED_NO_CAPACITY),
    )
    return pd.Series(reasons, dtype="string")


def _result(
    accounts: pd.DataFrame,
    managers: pd.DataFrame,
    model: _Model,
    assigned: np.ndarray,
    settings: AllocationSettings,
    solver: dict[str, Any],
) -> AllocationResult:
    owner_ids = managers["owner_id"].astype(str).to_numpy()
    seniority_names = np.array(SENIORITIES)[model.seniority] if model.m else np.array([])

    def realised(index: np.ndarray) -> np.ndarray:
        factor = model.factors[model.tier, model.seniority[np.maximum(index, 0)]] if model.m else 0
        return np.where(index >= 0, model.priority * factor, 0.0)

    def labels(index: np.ndarray, names: np.ndarray) -> pd.Series:
        values = np.where(index >= 0, names[np.maximum(index, 0)] if len(names) else "", None)
        return pd.Series(values, index=accounts.index, dtype="string")

    value_current, value_assigned = realised(model.owner), realised(assigned)
    current_owner = accounts["owner_id"].astype("string")
    assignments = pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy(),
            "tier": accounts["tier"].astype("string").to_numpy(),
            "priority": model.priority,
            "current_owner_id": current_owner.to_numpy(),
            "current_seniority": labels(model.owner, seniority_names).to_numpy(),
            "assigned_owner_id": labels(assigned, owner_ids).to_numpy(),
            "assigned_seniority": labels(assigned, seniority_names).to_numpy(),
            "value_current": value_current,
            "value_assigned": value_assigned,
        }
    ).reset_index(drop=True)
    for column in ("account_id", "tier", "current_owner_id", "current_seniority"):
        assignments[column] = assignments[column].astype("string")
    assignments["moved"] = (
        assignments["assigned_owner_id"].fillna("") != assignments["current_owner_id"].fillna("")
    ).astype(bool)
    assignments["unassigned_reason"] = _unassigned_reasons(model, assigned)
    accounts_current, hours_current = _load(model, model.owner)
    accounts_assigned, hours_assigned = _load(model, assigned)
    load = pd.DataFrame(
        {
            "owner_id": owner_ids,
            "name": managers["name"].astype("string").to_numpy(),
            "seniority": seniority_names,
            "capacity_accounts": managers["capacity_accounts"].to_numpy(dtype="float64"),
            "capacity_hours": managers["capacity_hours"].to_numpy(dtype="float64"),
            "accounts_current": accounts_current.astype(int),
            "hours_current": hours_current,
            "accounts_assigned": accounts_assigned.astype(int),
            "hours_assigned": hours_assigned,
            "value_assigned": np.bincount(
                assigned[assigned >= 0], weights=value_assigned[assigned >= 0], minlength=model.m
            ),
        }
    )
    total_current, total_assigned = float(value_current.sum()), float(value_assigned.sum())
    bound, objective = solver["upper_bound"], solver["objective"]
    moved = assignments[assignments["moved"]].assign(
        gain=lambda f: f["value_assigned"] - f["value_current"]
    )
    moved = moved.sort_values(["gain", "account_id"], ascending=[False, True])
    summary = {
        "status": "solved",
        "method": solver["method"],
        "accounts": int(model.n),
        "managers": int(model.m),
        "expected_value_current": round(total_current, 6),
        "expected_value_assigned": round(total_assigned, 6),
        "gain": round(total_assigned - total_current, 6),
        "gain_share": round((total_assigned - total_current) / total_current, 9)
        if total_current > 0
        else None,
        "accounts_moved": int(assignments["moved"].sum()),
        "accounts_unassigned": int((assigned < 0).sum()),
        "unassigned_by_reason": {
            str(k): int(v)
            for k, v in assignments["unassigned_reason"].value_counts().sort_index().items()
        },
        "accounts_without_known_owner": int((model.owner < 0).sum()),
        "accounts_in_solver": int(solver["in_solver"]),
        "objective_with_continuity": round(objective, 6),
        "upper_bound": round(bound, 6),
        "optimality_gap": round(max(0.0, (bound - objective) / bound), 9) if bound > 0 else 0.0,
        "current_feasible": solver["current_feasible"],
        "current_over_capacity": solver["current_over_capacity"],
        "current_forbidden_pairs": solver["current_forbidden_pairs"],
        "by_tier": {
            tier: {
                "accounts": int((assignments["tier"] == tier).sum()),
                "assigned_by_seniority": {
                    s: int(
                        ((assignments["tier"] == tier) & (assignments["assigned_seniority"] == s))
                        .fillna(False)
                        .sum()
                    )
                    for s in SENIORITIES
                },
            }
            for tier in TIERS
        },
        "largest_moves": [
            {
                "account_id": row.account_id,
                "tier": row.tier,
                "from": None if pd.isna(row.current_owner_id) else row.current_owner_id,
                "to": None if pd.isna(row.assigned_owner_id) else row.assigned_owner_id,
                "gain": round(float(row.gain), 6),
            }
            for row in moved.head(settings.moves_reported).itertuples(index=False)
        ],
    }
    return AllocationResult(assignments=assignments, managers=load, summary=summary)
