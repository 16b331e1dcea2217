"""Expected expansion, priority and tier of a live (what-if) score, relative to the snapshot.

The nightly job enriches a whole portfolio at once with the frame functions of
`serving.analytics`, `serving.segmentation` and `serving.prioritisation`.
Some of those quantities are relative to the portfolio: the ideal-customer-
profile fit is learned from the portfolio's best accounts and the tiers are
ranks. A what-if record scored online is placed against the portfolio of the
loaded snapshot: `PortfolioReference` holds what the frame functions learned
from it (the fitted `IdealCustomerProfile`, the priority of the last strategic
and the last high-touch account) and `enrich_record` applies the same
formulas to one record in plain Python (a request must not pay pandas'
per-call cost). tests/unit/test_online_enrich.py checks that, for accounts of
the snapshot, the result equals `serving.portfolio.enrich_scores` exactly.

Tiers of a what-if record: strategic when its priority reaches the snapshot's
last strategic priority, high-touch when it reaches the last high-touch one,
tech-touch otherwise, then the promotion rule. (The nightly ranking also breaks
ties by ARR and id; the record does not displace anyone in the snapshot.)
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from serving.prioritisation import tier_sizes
from serving.segmentation import IdealCustomerProfile, best_accounts, firmographics
from serving.settings import PortfolioSettings

# The attributes of an account the enrichment reads besides its scores.
ACCOUNT_CONTEXT: tuple[str, ...] = (
    "segment",
    "industry",
    "region",
    "employees",
    "open_expansion_pipeline",
    "days_to_renewal",
)


@dataclass(frozen=True)
class PortfolioReference:
    """What enriching one live score needs from the snapshot's enriched scores."""

    settings: PortfolioSettings
    icp: IdealCustomerProfile | None
    strategic_cut: float | None
    high_touch_cut: float | None
    context: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # ICP fit by firmographic labels: a portfolio has few distinct combinations.
    icp_cache: dict[tuple[str | None, ...], float] = field(
        default_factory=dict, compare=False, repr=False
    )


def fit_reference(enriched: pd.DataFrame, settings: PortfolioSettings) -> PortfolioReference:
    """Learn the reference from the snapshot's enriched scores (with `priority` and `tier`)."""
    icp = None
    if len(enriched):
        icp = IdealCustomerProfile(smoothing=settings.segmentation.icp_smoothing).fit(
            firmographics(enriched, settings.segmentation),
            best_accounts(enriched, settings.segmentation),
        )
    ranked = enriched.sort_values(
        ["priority", "arr", "account_id"], ascending=[False, False, True]
    ).reset_index(drop=True)
    strategic, high_touch = tier_sizes(len(ranked), settings.tiers)
    strategic_cut = float(ranked["priority"].iloc[strategic - 1]) if strategic > 0 else None
    last_high_touch = strategic + high_touch
    high_touch_cut = (
        float(ranked["priority"].iloc[last_high_touch - 1]) if high_touch > 0 else strategic_cut
    )
    columns = [c for c in ACCOUNT_CONTEXT if c in enriched.columns]
    context_frame = enriched[["account_id", *columns]].astype(object)
    context_frame = context_frame.where(enriched[["account_id", *columns]].notna(), None)
    context = {
        str(row[0]): dict(zip(columns, row[1:], strict=True))
        for row in context_frame.itertuples(index=False, name=None)
    }
    return PortfolioReference(settings, icp, strategic_cut, high_touch_cut, context)


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def employee_band_label(employees: Any, bounds: tuple[float, ...]) -> str | None:
    """The band label of `serving.segmentation.employee_band` for one value."""
    value = _number(employees)
    if value is None:
        return None
    edges = [0.0, *bounds]
    labels = [f"{int(lo)}-{int(hi) - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{int(edges[-1])}+")
    return labels[min(bisect.bisect_right(list(bounds), value), len(labels) - 1)]


def icp_fit_of(attributes: Mapping[str, Any], reference: PortfolioReference) -> float:
    """`IdealCustomerProfile.score_samples` for one account's firmographics."""
    icp = reference.icp
    if icp is None:
        return 0.0
    segmentation = reference.settings.segmentation
    labels: dict[str, str | None] = {}
    for attribute in segmentation.icp_attributes:
        if attribute == "employee_band":
            labels[attribute] = employee_band_label(
                attributes.get("employees"), segmentation.employee_bands
            )
        else:
            value = attributes.get(attribute)
            labels[attribute] = None if value is None or value is pd.NA else str(value)
    key = tuple(labels.values())
    fit = reference.icp_cache.get(key)
    if fit is None:
        fit = round(icp.score_record(labels), 9)
        reference.icp_cache[key] = fit
    return fit


def enrich_record(
    scored: Mapping[str, Any],
    reference: PortfolioReference,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`scored` (account_id, p_churn, p_upsell, arr, ...) plus expected_expansion,
    icp_fit, priority and tier, computed as the nightly job computes them.

    The account's context (`ACCOUNT_CONTEXT`: firmographics, renewal timing,
    expansion pipeline) is the snapshot's for a known account; `context`
    replaces any of it (a what-if record's own values).
    """
    settings = reference.settings
    merged: dict[str, Any] = dict(reference.context.get(str(scored["account_id"]), {}))
    if context:
        merged.update(context)
    context = merged
    p_churn, p_upsell = float(scored["p_churn"]), float(scored["p_upsell"])
    arr = _number(scored.get("arr")) or 0.0

    pipeline = _number(context.get("open_expansion_pipeline")) or 0.0
    amount = max(arr * settings.value.expansion_fraction_of_arr, pipeline, 0.0)
    expected_expansion = p_upsell * amount

    fit = icp_fit_of(context, reference)
    value_at_stake = p_churn * arr * settings.value.saveable_share + expected_expansion
    fit_factor = (1.0 - settings.priority.fit_weight) + settings.priority.fit_weight * fit
    timing = 1.0
    days = _number(context.get("days_to_renewal"))
    window = float(settings.priority.renewal_window_days)
    if days is not None and days <= window:
        timing = 1.0 + settings.priority.renewal_weight * (1.0 - max(days, 0.0) / window)
    account_priority = round(value_at_stake * fit_factor * timing, 6)

    tiers = settings.tiers
    if reference.strategic_cut is not None and account_priority >= reference.strategic_cut:
        tier = "strategic"
    elif reference.high_touch_cut is not None and account_priority >= reference.high_touch_cut:
        tier = "high-touch"
    else:
        tier = "tech-touch"
    if tier == "tech-touch" and (
        expected_expansion >= tiers.promotion_expected_expansion
        or p_upsell >= tiers.promotion_p_upsell
    ):
        tier = "high-touch"
    return {
        **scored,
        "expected_arr_at_risk": p_churn * arr,
        "expected_expansion": expected_expansion,
        "icp_fit": fit,
        "priority": account_priority,
        "tier": tier,
    }


__all__ = [
    "ACCOUNT_CONTEXT",
    "PortfolioReference",
    "employee_band_label",
    "enrich_record",
    "fit_reference",
    "icp_fit_of",
]
