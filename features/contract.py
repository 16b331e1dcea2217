"""The data contract: which tables the product reads, their columns and types.

This module is the single description of the contract. The loader types
columns from it, validation checks against it, the generator writes to it and
docs/data-contract.md documents it. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

ColumnType = Literal["id", "string", "date", "number", "bool"]

# A loaded portfolio: contract table name -> typed frame (only the tables given).
Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: ColumnType
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[ColumnSpec, ...]
    # The column that says when a row became known; features at t use rows with
    # this column <= t. None for tables that are not time-stamped (accounts).
    event_date: str | None = None

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(f"table {self.name!r} has no contract column {name!r}")


def _c(name: str, type_: ColumnType, required: bool = False, description: str = "") -> ColumnSpec:
    return ColumnSpec(name, type_, required, description)


CONTRACT: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "accounts",
            "One row per customer account (the CRM). If absent, derived from the revenue table's ids.",
            (
                _c("account_id", "id", True, "Unique account identifier"),
                _c("name", "string", description="Account name"),
                _c("parent_account_id", "id", description="Parent account (for roll-ups); empty for top-level accounts"),
                _c("segment", "string", description="CRM segment, e.g. enterprise / mid-market / smb"),
                _c("industry", "string", description="Industry or sector"),
                _c("region", "string", description="Sales region"),
                _c("employees", "number", description="Number of employees"),
                _c("created_at", "date", description="When the account was created"),
                _c("owner_id", "id", description="Current account manager"),
                _c("is_target", "bool", description="Whether the account belongs to the target list (coverage)"),
            ),
        ),
        TableSpec(
            "subscriptions",
            "SaaS contracts. ARR at t = sum of arr of subscriptions active at t.",
            (
                _c("account_id", "id", True),
                _c("start_date", "date", True, "First day the subscription is active"),
                _c("end_date", "date", description="Last day (exclusive); empty while the subscription runs"),
                _c("arr", "number", True, "Annual recurring revenue of this subscription (>= 0)"),
                _c("seats", "number", description="Licensed seats"),
                _c("plan", "string", description="Plan or tier"),
            ),
            event_date="start_date",
        ),
        TableSpec(
            "orders",
            "Transactional B2B revenue. ARR at t = revenue in the 365 days up to t.",
            (
                _c("account_id", "id", True),
                _c("date", "date", True, "Order date"),
                _c("amount", "number", True, "Order amount; negative for credits or cancellations"),
                _c("product_line", "string", description="Product line"),
                _c("margin", "number", description="Gross margin of the order (amount)"),
            ),
            event_date="date",
        ),
        TableSpec(
            "usage",
            "Daily or weekly product usage.",
            (
                _c("account_id", "id", True),
                _c("date", "date", True),
                _c("active_users", "number", description="Distinct active users in the period"),
                _c("events", "number", description="Product events in the period"),
                _c("seats_licensed", "number", description="Seats licensed at the time"),
            ),
            event_date="date",
        ),
        TableSpec(
            "support_tickets",
            "Support tickets.",
            (
                _c("account_id", "id", True),
                _c("created_at", "date", True),
                _c("closed_at", "date"),
                _c("priority", "string", description="low / medium / high / urgent"),
                _c("csat", "number", description="Satisfaction score given on the ticket"),
            ),
            event_date="created_at",
        ),
        TableSpec(
            "opportunities",
            "Sales opportunities.",
            (
                _c("account_id", "id", True),
                _c("created_at", "date", True),
                _c("closed_at", "date"),
                _c("stage", "string", description="open / won / lost"),
                _c("amount", "number"),
                _c("kind", "string", description="new / expansion / renewal"),
            ),
            event_date="created_at",
        ),
        TableSpec(
            "nps",
            "NPS survey answers.",
            (
                _c("account_id", "id", True),
                _c("date", "date", True),
                _c("score", "number", description="0-10"),
            ),
            event_date="date",
        ),
        TableSpec(
            "invoices",
            "Invoices and their payment (payment behaviour).",
            (
                _c("account_id", "id", True),
                _c("due_date", "date", True),
                _c("paid_at", "date"),
                _c("amount", "number"),
            ),
            event_date="due_date",
        ),
        TableSpec(
            "account_managers",
            "The people who own accounts, for allocation. Optional; not used for features.",
            (
                _c("owner_id", "id", True, "Matches accounts.owner_id"),
                _c("name", "string"),
                _c("seniority", "string", description="junior / senior / executive"),
                _c("capacity_accounts", "number", description="How many accounts the person can own"),
                _c("capacity_hours", "number", description="Hours per month available for accounts"),
            ),
        ),
    )
}

REVENUE_TABLES: tuple[str, ...] = ("subscriptions", "orders")
OPPORTUNITY_STAGES: tuple[str, ...] = ("open", "won", "lost")
OPPORTUNITY_KINDS: tuple[str, ...] = ("new", "expansion", "renewal")


def revenue_table(tables: Tables) -> str:
    """The name of the revenue table in `tables` (subscriptions wins if both are given)."""
    for name in REVENUE_TABLES:
        if name in tables:
            return name
    raise ValueError("neither 'subscriptions' nor 'orders' is given: one revenue table is required")
