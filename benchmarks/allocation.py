"""How fast account-manager allocation solves, and how close to optimal it is.

Builds a synthetic book (10,000 accounts x 50 managers by default: 30 junior, 15
senior, 5 executive; priorities log-normal, tiers 5% / 20% / 75% by priority,
current owners at random, so the current allocation breaks the seniority rule and
some capacities) and times `serving.allocation.allocate_accounts` in scenarios that
bind the account capacity, the hours capacity or both. The target: under 30 seconds
for 10,000 accounts x 50 managers. Run with:

    uv run python -m benchmarks.allocation [--accounts N] [--managers M] [--seed S]

Results are recorded by hand in docs/benchmarks.md ("Allocation").
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from serving.allocation import allocate_accounts
from serving.portfolio_inputs import check_account_managers
from serving.settings import AllocationSettings

TARGET_SECONDS = 30.0


@dataclass(frozen=True)
class Scenario:
    """Capacities: accounts as a multiple of an even share (accounts / managers), hours per
    manager for a book of 10,000 accounts and 50 managers (scaled with the book); None = no
    such capacity. The table shows the hours the book needs against those available."""

    name: str
    accounts_share: float | None
    hours: float | None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("accounts only (1.2 x even share)", 1.2, None),
    Scenario("accounts only (0.9 x even share)", 0.9, None),
    Scenario("hours only (400 h)", None, 400.0),
    Scenario("hours only (160 h)", None, 160.0),
    Scenario("both (1.5 x, 400 h)", 1.5, 400.0),
    Scenario("both (1.1 x, 170 h)", 1.1, 170.0),
)


@dataclass(frozen=True)
class AllocationBenchmark:
    scenario: str
    accounts: int
    managers: int
    seconds: float
    method: str
    optimality_gap: float
    value_current: float
    value_assigned: float
    moved: int
    unassigned: int
    current_feasible: bool
    hours_needed: float
    hours_available: float | None


def synthetic_book(
    accounts: int, managers: int, scenario: Scenario, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores (account_id, owner_id, tier, priority) and account managers for a scenario."""
    rng = np.random.default_rng(seed)
    priority = rng.lognormal(8.0, 1.5, accounts)
    rank = np.argsort(np.argsort(-priority))
    tier = np.where(
        rank < 0.05 * accounts,
        "strategic",
        np.where(rank < 0.25 * accounts, "high-touch", "tech-touch"),
    )
    executives = max(1, managers // 10)
    seniors = max(1, (managers * 3) // 10)
    seniority = ["executive"] * executives + ["senior"] * seniors
    seniority += ["junior"] * (managers - len(seniority))
    owner_ids = [f"M{j:03d}" for j in range(managers)]
    scores = pd.DataFrame(
        {
            "account_id": [f"A{i:06d}" for i in range(accounts)],
            "owner_id": pd.array(rng.choice(owner_ids, accounts), dtype="string"),
            "tier": tier,
            "priority": priority,
        }
    )
    book = pd.DataFrame(
        {
            "owner_id": owner_ids,
            "name": [f"Manager {j}" for j in range(managers)],
            "seniority": seniority,
            "capacity_accounts": np.full(
                managers,
                np.nan
                if scenario.accounts_share is None
                else np.ceil(scenario.accounts_share * accounts / managers),
            ),
            "capacity_hours": np.full(
                managers,
                np.nan
                if scenario.hours is None
                else scenario.hours * accounts / 10_000 * 50 / managers,
            ),
        }
    )
    return scores, check_account_managers(book)


def run(accounts: int, managers: int, scenario: Scenario, seed: int) -> AllocationBenchmark:
    scores, book = synthetic_book(accounts, managers, scenario, seed)
    started = time.perf_counter()
    result = allocate_accounts(scores, book, AllocationSettings())
    seconds = time.perf_counter() - started
    summary = result.summary
    settings = AllocationSettings()
    hours = book["capacity_hours"]
    return AllocationBenchmark(
        scenario=scenario.name,
        accounts=accounts,
        managers=managers,
        seconds=seconds,
        method=summary["method"],
        optimality_gap=summary["optimality_gap"],
        value_current=summary["expected_value_current"],
        value_assigned=summary["expected_value_assigned"],
        moved=summary["accounts_moved"],
        unassigned=summary["accounts_unassigned"],
        current_feasible=summary["current_feasible"],
        hours_needed=float(scores["tier"].map(settings.hours_per_account).sum()),
        hours_available=None if hours.isna().all() else float(hours.sum()),
    )


def render(results: list[AllocationBenchmark]) -> Table:
    first = results[0]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    table = Table(
        title=f"allocation: {first.accounts:,} accounts x {first.managers} managers "
        f"(load average {load})"
    )
    columns = (
        "scenario",
        "hours needed / available",
        "seconds",
        "method",
        "gap to LP bound",
        "value current",
        "value assigned",
        "current feasible",
        "moved",
        "unassigned",
        f"< {TARGET_SECONDS:.0f} s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("scenario", "method") else "right")
    for r in results:
        available = "-" if r.hours_available is None else f"{r.hours_available:,.0f}"
        table.add_row(
            r.scenario,
            f"{r.hours_needed:,.0f} / {available}",
            f"{r.seconds:.1f}",
            r.method,
            f"{r.optimality_gap:.3%}",
            f"{r.value_current:,.0f}",
            f"{r.value_assigned:,.0f}",
            "yes" if r.current_feasible else "no",
            f"{r.moved:,}",
            f"{r.unassigned:,}",
            "met" if r.seconds < TARGET_SECONDS else "MISSED",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--managers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = [run(args.accounts, args.managers, s, args.seed) for s in SCENARIOS]
    Console().print(render(results))


if __name__ == "__main__":
    main()
