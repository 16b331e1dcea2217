"""The portfolio layer's two compositions: enrich the scores, summarise the portfolio.

    enrich_scores:   scores -> expected ARR at risk, expected expansion, value segment,
                     ICP fit, priority, tier, campaign eligibility
    build_portfolio_summary:
                     enriched scores + tables -> filters -> metrics overall and by
                     segment / industry / region / owner -> alerts -> tiers and
                     segmentation -> allocation -> movers -> a JSON-ready dict

Both are pure and deterministic (same inputs, same output). Definitions are in
docs/portfolio-metrics.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from serving.alerts import (
    Alert,
    account_risk_rise_alert,
    churn_share_alert,
    concentration_alerts,
    coverage_alerts,
    sector_risk_rise_alerts,
)
from serving.allocation import AllocationResult, allocate_accounts
from serving.analytics import (
    BREAKDOWN_DIMENSIONS,
    arr_lost_bands,
    concentration,
    coverage_by_segment,
    expected_arr_at_risk,
    expected_expansion,
    forecast_nrr,
    metrics_by,
    pipeline_velocity,
    realised_nrr,
    target_status,
    uncovered_targets,
)
from serving.movers import find_movers
from serving.portfolio_inputs import (
    PortfolioInputError,
    check_account_managers,
    check_accounts,
    check_arr_history,
    check_scores,
)
from serving.prioritisation import assign_tiers, priority
from serving.segmentation import (
    VALUE_SEGMENT_DESCRIPTIONS,
    campaign_eligibility,
    icp_fit,
    value_segment,
)
from serving.settings import TIERS, PortfolioSettings

ENRICHED_COLUMNS: tuple[str, ...] = (
    "expected_arr_at_risk",
    "expected_expansion",
    "value_segment",
    "icp_fit",
    "priority",
    "tier",
    "tier_reason",
    "eligible_campaigns",
)
# filter key -> the column it restricts ("owner" is accepted for owner_id)
FILTER_COLUMNS: dict[str, str] = {
    "segment": "segment",
    "industry": "industry",
    "region": "region",
    "owner_id": "owner_id",
    "owner": "owner_id",
}
_DECIMALS = 6


def enrich_scores(scores: pd.DataFrame, settings: PortfolioSettings | None = None) -> pd.DataFrame:
    """Add the portfolio columns to the scores (one row per account, input columns kept).

    Adds expected_arr_at_risk, expected_expansion, value_segment, icp_fit, priority, tier,
    tier_reason, eligible_<campaign> flags and eligible_campaigns. Tiers and the ICP are
    relative to the accounts given, so pass the whole portfolio.
    """
    settings = settings or PortfolioSettings()
    frame = check_scores(scores)
    frame["expected_arr_at_risk"] = expected_arr_at_risk(frame)
    frame["expected_expansion"] = expected_expansion(frame, settings.value)
    frame["value_segment"] = value_segment(frame, settings.segmentation)
    frame["icp_fit"] = icp_fit(frame, settings.segmentation)
    frame["priority"] = priority(frame, settings.value, settings.priority)
    tiers = assign_tiers(frame, settings.tiers)
    frame["tier"], frame["tier_reason"] = tiers["tier"], tiers["tier_reason"]
    for column, values in campaign_eligibility(frame, settings.campaigns).items():
        frame[column] = values
    return frame


def _filtered(frame: pd.DataFrame, filters: Mapping[str, Any], table: str) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    for key, wanted in filters.items():
        column = FILTER_COLUMNS[key]
        if column not in frame.columns:
            raise PortfolioInputError(f"{table}: cannot filter on {key!r}: no column {column!r}")
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        keep &= frame[column].astype("string").isin([str(v) for v in values]).fillna(False)
    return frame[keep.astype(bool)]


def _check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    if not filters:
        return {}
    unknown = sorted(set(filters) - set(FILTER_COLUMNS))
    if unknown:
        raise PortfolioInputError(
            f"filters: unknown key(s) {unknown}; use {sorted(FILTER_COLUMNS)}"
        )
    return {k: v for k, v in filters.items() if v is not None}


def _rows(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """index -> {column: value}, keeping each column's own type (ints stay ints)."""
    return {
        str(index): dict(zip(frame.columns, values, strict=True))
        for index, values in zip(frame.index, frame.astype(object).to_numpy(), strict=True)
    }


def _band(frame: pd.DataFrame, row: Any) -> dict[str, float]:
    return {name: float(frame.loc[row, name]) for name in frame.columns}


def _tiers_summary(scores: pd.DataFrame, settings: PortfolioSettings) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for tier in TIERS:
        members = scores[scores["tier"] == tier]
        result[tier] = {
            "accounts": len(members),
            "arr": float(members["arr"].sum()),
            "expected_arr_at_risk": float(members["expected_arr_at_risk"].sum()),
            "expected_expansion": float(members["expected_expansion"].sum()),
            "priority": float(members["priority"].sum()),
            "promoted": int(members["tier_reason"].str.startswith("promoted").fillna(False).sum()),
        }
    result["rules"] = settings.tiers.model_dump(mode="json")
    return result


def _segmentation_summary(scores: pd.DataFrame, settings: PortfolioSettings) -> dict[str, Any]:
    segments = {}
    for name, description in VALUE_SEGMENT_DESCRIPTIONS.items():
        members = scores[scores["value_segment"] == name]
        segments[name] = {
            "description": description,
            "accounts": len(members),
            "arr": float(members["arr"].sum()),
            "expected_arr_at_risk": float(members["expected_arr_at_risk"].sum()),
            "expected_expansion": float(members["expected_expansion"].sum()),
        }
    campaigns = {
        rule.name: {
            "description": rule.description,
            "accounts": int(scores[f"eligible_{rule.name}"].sum()),
        }
        for rule in settings.campaigns
    }
    fit = scores["icp_fit"]
    return {
        "value_segments": segments,
        "campaigns": campaigns,
        "icp_fit": {
            "mean": float(fit.mean()) if len(fit) else None,
            "p50": float(fit.median()) if len(fit) else None,
        },
    }


def _allocation_summary(result: AllocationResult, account_ids: set[str] | None) -> dict[str, Any]:
    """The plan's summary; with filters, the part of the plan for the filtered accounts."""
    summary = dict(result.summary)
    managers = result.managers
    summary["managers_load"] = [
        {
            "owner_id": row.owner_id,
            "name": None if pd.isna(row.name) else str(row.name),
            "seniority": row.seniority,
            "capacity_accounts": row.capacity_accounts,
            "capacity_hours": row.capacity_hours,
            "accounts_current": int(row.accounts_current),
            "accounts_assigned": int(row.accounts_assigned),
            "hours_current": float(row.hours_current),
            "hours_assigned": float(row.hours_assigned),
            "value_assigned": float(row.value_assigned),
        }
        for row in managers.itertuples(index=False)
    ]
    if account_ids is None:
        summary["scope"] = "portfolio"
        return summary
    part = result.assignments[result.assignments["account_id"].isin(account_ids)]
    current, assigned = float(part["value_current"].sum()), float(part["value_assigned"].sum())
    summary.update(
        {
            "scope": "filtered accounts of the portfolio-wide plan",
            "accounts": len(part),
            "expected_value_current": current,
            "expected_value_assigned": assigned,
            "gain": assigned - current,
            "gain_share": (assigned - current) / current if current > 0 else None,
            "accounts_moved": int(part["moved"].sum()),
            "accounts_unassigned": int(part["assigned_owner_id"].isna().sum()),
            "largest_moves": [
                m for m in summary["largest_moves"] if m["account_id"] in account_ids
            ],
        }
    )
    return summary


def plan_allocation(
    enriched: pd.DataFrame,
    account_managers: pd.DataFrame | None,
    settings: PortfolioSettings | None = None,
) -> AllocationResult | None:
    """The portfolio-wide account-manager plan for enriched scores (None without managers)."""
    settings = settings or PortfolioSettings()
    if account_managers is None or account_managers.empty or enriched.empty:
        return None
    return allocate_accounts(
        enriched, check_account_managers(account_managers), settings.allocation
    )


def build_portfolio_summary(
    scores: pd.DataFrame,
    accounts: pd.DataFrame | None,
    arr_history: pd.DataFrame | None,
    opportunities: pd.DataFrame | None,
    account_managers: pd.DataFrame | None,
    as_of: dt.date | str | pd.Timestamp,
    settings: PortfolioSettings | None = None,
    previous_scores: pd.DataFrame | None = None,
    filters: Mapping[str, Any] | None = None,
    *,
    current_features: pd.DataFrame | None = None,
    previous_features: pd.DataFrame | None = None,
    allocation: AllocationResult | None = None,
) -> dict[str, Any]:
    """The portfolio summary (`portfolio.json`): JSON-ready, no NaN, deterministic.

    `scores` are enriched first when they lack the enrichment columns (always over the
    whole portfolio, before filters). `filters` ({segment, industry, region, owner_id
    (or owner)}: a value or a list of values) restrict every metric, alert and mover to
    the matching accounts; the allocation plan stays portfolio-wide and its summary then
    covers the filtered accounts. `allocation` reuses a plan from `plan_allocation`.
    `current_features` / `previous_features` (account_id + feature columns) explain the
    movers.
    """
    settings = settings or PortfolioSettings()
    metric = settings.metrics
    unknown = metric.unknown_label
    applied = _check_filters(filters)
    day = pd.Timestamp(as_of).normalize()
    enriched = (
        check_scores(scores)
        if all(c in scores.columns for c in ENRICHED_COLUMNS)
        else enrich_scores(scores, settings)
    )
    table = check_accounts(accounts) if accounts is not None else None
    history = check_arr_history(arr_history) if arr_history is not None else None
    if allocation is None:
        allocation = plan_allocation(enriched, account_managers, settings)

    view = _filtered(enriched, applied, "scores") if applied else enriched
    previous = previous_scores
    if applied:
        if table is not None:
            table = _filtered(table, applied, "accounts")
        ids = set(view["account_id"].astype(str)) | (
            set(table["account_id"].astype(str)) if table is not None else set()
        )
        if history is not None:
            history = history[history["account_id"].astype(str).isin(ids)]
        if opportunities is not None:
            opportunities = opportunities[opportunities["account_id"].astype(str).isin(ids)]
        if previous is not None:
            previous = previous[previous["account_id"].astype(str).isin(ids)]
        if current_features is not None:
            current_features = current_features[
                current_features["account_id"].astype(str).isin(ids)
            ]

    arr_total = float(view["arr"].sum())
    weighted = float(view["expected_arr_at_risk"].sum())
    bands = arr_lost_bands(view, metric, BREAKDOWN_DIMENSIONS)
    concentrated = concentration(view, table, metric)
    targets = target_status(view, table, metric)
    coverage = coverage_by_segment(targets)
    realised = realised_nrr(history)
    forecast = forecast_nrr(view, settings)
    velocity = pipeline_velocity(opportunities, day, metric)

    alerts: list[Alert] = [
        *concentration_alerts(concentrated, view, settings.alerts, unknown),
        *churn_share_alert(view, settings.alerts),
        *coverage_alerts(coverage, uncovered_targets(targets), settings.alerts),
    ]
    if previous is not None:
        alerts += account_risk_rise_alert(view, previous, settings.alerts)
        alerts += sector_risk_rise_alerts(view, previous, settings.alerts, unknown)

    breakdowns = {}
    for dimension in BREAKDOWN_DIMENSIONS:
        frame = metrics_by(view, dimension, bands[dimension], metric)
        key = "by_owner" if dimension == "owner_id" else f"by_{dimension}"
        breakdowns[key] = _rows(frame)
    if account_managers is not None and "name" in account_managers.columns:
        names = dict(
            zip(
                account_managers["owner_id"].astype(str),
                account_managers["name"],
                strict=True,
            )
        )
        for owner, row in breakdowns["by_owner"].items():
            row["name"] = names.get(owner)

    summary: dict[str, Any] = {
        "as_of": day.date().isoformat(),
        "horizon_days": metric.horizon_days,
        "filters": applied,
        "accounts": len(view),
        "arr_total": arr_total,
        "weighted_churn_risk": weighted,
        "weighted_churn_share": weighted / arr_total if arr_total > 0 else None,
        "weighted_churn_risk_band": _band(bands[None], "all"),
        "expected_expansion": float(view["expected_expansion"].sum()),
        "concentration_top10": concentrated.top_share,
        "concentration": concentrated,
        "coverage_by_segment": {
            str(segment): row["coverage"] for segment, row in coverage.iterrows()
        },
        "coverage_detail": _rows(coverage),
        "nrr_realised": realised.nrr if realised is not None else None,
        "nrr_realised_detail": realised,
        "nrr_forecast": forecast.nrr,
        "nrr_forecast_detail": forecast,
        "pipeline_velocity": velocity,
        "alerts": alerts,
        "tiers": _tiers_summary(view, settings),
        "segmentation": _segmentation_summary(view, settings),
        "allocation": (
            _allocation_summary(
                allocation, set(view["account_id"].astype(str)) if applied else None
            )
            if allocation is not None
            else {
                "status": "skipped",
                "reason": "no account_managers table"
                if account_managers is None or account_managers.empty
                else "no accounts",
            }
        ),
        "movers": find_movers(view, previous, settings.movers, current_features, previous_features),
        **breakdowns,
        "settings": settings.model_dump(mode="json"),
    }
    return json_ready(summary)


def json_ready(value: Any) -> Any:
    """`value` as plain JSON types: numpy scalars to Python, NaN/inf/NA to None, dates to
    ISO strings, dataclasses to dicts, floats rounded to 6 decimals (stable output)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        items = sorted(value) if isinstance(value, set | frozenset) else list(value)
        return [json_ready(v) for v in items]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        rounded = round(number, _DECIMALS)
        return 0.0 if rounded == 0 else rounded
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
