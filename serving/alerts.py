"""Portfolio alerts: a rule crossed its threshold, with the accounts concerned and an action.

Comparison conventions (see `serving.settings`): "above" rules fire on observed >
threshold, "below" rules on observed < threshold, "rose by" rules on rise >= threshold,
after rounding observed values to `comparison_decimals`. Severity is "critical" when
observed >= critical_ratio x threshold (<= threshold / critical_ratio for "below" rules),
"warning" otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from serving.analytics import Concentration, expected_arr_at_risk
from serving.portfolio_inputs import group_labels
from serving.settings import AlertSettings

Comparison = Literal[">", "<", ">="]


@dataclass(frozen=True)
class Alert:
    """One alert: which rule fired, on what, by how much, and what to do."""

    rule: str
    comparison: Comparison
    threshold: float
    observed: float
    severity: Literal["warning", "critical"]
    suggested_action: str
    message: str
    accounts: list[str] = field(default_factory=list)
    scope: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)


def crosses(observed: float, threshold: float, comparison: Comparison, decimals: int) -> bool:
    """Whether `observed` (rounded to `decimals`) crosses `threshold` under `comparison`."""
    value = round(observed, decimals)
    if comparison == ">":
        return value > threshold
    if comparison == "<":
        return value < threshold
    return value >= threshold


def severity(
    observed: float, threshold: float, comparison: Comparison, settings: AlertSettings
) -> Literal["warning", "critical"]:
    """critical when observed is `critical_ratio` times beyond the threshold."""
    decimals = settings.comparison_decimals
    value = round(observed, decimals)
    ratio = settings.critical_ratio
    if comparison == "<":
        return "critical" if value <= round(threshold / ratio, decimals) else "warning"
    return "critical" if value >= round(threshold * ratio, decimals) else "warning"


def _alert(
    rule: str,
    comparison: Comparison,
    threshold: float,
    observed: float,
    settings: AlertSettings,
    message: str,
    accounts: list[str],
    scope: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Alert:
    return Alert(
        rule=rule,
        comparison=comparison,
        threshold=float(threshold),
        observed=round(float(observed), settings.comparison_decimals),
        severity=severity(observed, threshold, comparison, settings),
        suggested_action=settings.actions[rule],
        message=message,
        accounts=accounts[: settings.max_accounts],
        scope=scope,
        details=(details or [])[: settings.max_accounts],
    )


def concentration_alerts(
    concentration: Concentration, scores: pd.DataFrame, settings: AlertSettings, unknown: str
) -> list[Alert]:
    """Top-N share above `concentration_top10`; largest industry share above `sector_dependency`."""
    alerts = []
    share = concentration.top_share
    if share is not None and crosses(
        share, settings.concentration_top10, ">", settings.comparison_decimals
    ):
        alerts.append(
            _alert(
                "concentration_top10",
                ">",
                settings.concentration_top10,
                share,
                settings,
                f"The top {concentration.top_n} accounts (parents rolled up) hold "
                f"{share:.1%} of ARR",
                concentration.top_parents,
            )
        )
    sector = concentration.largest_industry_share
    if sector is not None and crosses(
        sector, settings.sector_dependency, ">", settings.comparison_decimals
    ):
        industry = concentration.largest_industry
        in_sector = scores[group_labels(scores["industry"], unknown) == industry]
        ranked = in_sector.sort_values(["arr", "account_id"], ascending=[False, True])
        alerts.append(
            _alert(
                "sector_dependency",
                ">",
                settings.sector_dependency,
                sector,
                settings,
                f"Industry {industry!r} holds {sector:.1%} of ARR",
                [str(a) for a in ranked["account_id"]],
                scope=industry,
            )
        )
    return alerts


def churn_share_alert(scores: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """Weighted churn risk / ARR above `churn_share`; accounts by expected ARR at risk."""
    arr = float(scores["arr"].sum())
    if arr <= 0:
        return []
    at_risk = expected_arr_at_risk(scores)
    share = float(at_risk.sum()) / arr
    if not crosses(share, settings.churn_share, ">", settings.comparison_decimals):
        return []
    ranked = (
        pd.DataFrame({"account_id": scores["account_id"].astype(str), "at_risk": at_risk})
        .query("at_risk > 0")
        .sort_values(["at_risk", "account_id"], ascending=[False, True])
    )
    return [
        _alert(
            "churn_share",
            ">",
            settings.churn_share,
            share,
            settings,
            f"Weighted churn risk is {share:.1%} of ARR",
            list(ranked["account_id"]),
        )
    ]


def coverage_alerts(
    coverage: pd.DataFrame, uncovered: dict[str, list[str]], settings: AlertSettings
) -> list[Alert]:
    """One alert per segment whose coverage is below `coverage_target`; accounts are the
    segment's target accounts that are not customers."""
    alerts = []
    for segment, row in coverage.iterrows():
        value = row["coverage"]
        if value is None or pd.isna(value):
            continue
        if crosses(float(value), settings.coverage_target, "<", settings.comparison_decimals):
            alerts.append(
                _alert(
                    "coverage",
                    "<",
                    settings.coverage_target,
                    float(value),
                    settings,
                    f"Segment {segment!r} covers {value:.1%} of its "
                    f"{int(row['target_accounts'])} target accounts",
                    uncovered.get(str(segment), []),
                    scope=str(segment),
                )
            )
    return alerts


def risk_changes(scores: pd.DataFrame, previous_scores: pd.DataFrame) -> pd.DataFrame:
    """Accounts scored in both runs: account_id, industry, arr, p_churn_previous, p_churn, rise."""
    previous = previous_scores[["account_id", "p_churn"]].astype({"account_id": str})
    current = scores[["account_id", "industry", "arr", "p_churn"]].astype({"account_id": str})
    joined = current.merge(
        previous.rename(columns={"p_churn": "p_churn_previous"}), on="account_id", how="inner"
    )
    joined["rise"] = joined["p_churn"] - joined["p_churn_previous"]
    return joined


def account_risk_rise_alert(
    scores: pd.DataFrame, previous_scores: pd.DataFrame, settings: AlertSettings
) -> list[Alert]:
    """Accounts whose p_churn rose by at least `account_risk_rise` since the previous run."""
    changes = risk_changes(scores, previous_scores)
    decimals = settings.comparison_decimals
    rose = changes[changes["rise"].round(decimals) >= settings.account_risk_rise]
    if rose.empty:
        return []
    rose = rose.sort_values(["rise", "account_id"], ascending=[False, True])
    details = [
        {
            "account_id": row.account_id,
            "p_churn_previous": round(float(row.p_churn_previous), decimals),
            "p_churn": round(float(row.p_churn), decimals),
            "rise": round(float(row.rise), decimals),
        }
        for row in rose.itertuples(index=False)
    ]
    return [
        _alert(
            "account_risk_rise",
            ">=",
            settings.account_risk_rise,
            float(rose["rise"].iloc[0]),
            settings,
            f"{len(rose)} account(s) saw p_churn rise by at least "
            f"{settings.account_risk_rise:g} since the previous run",
            list(rose["account_id"]),
            details=details,
        )
    ]


def sector_risk_rise_alerts(
    scores: pd.DataFrame, previous_scores: pd.DataFrame, settings: AlertSettings, unknown: str
) -> list[Alert]:
    """Industries whose weighted churn share (sum p_churn x arr / sum arr) rose by at least
    `sector_risk_rise` since the previous run (each run with its own accounts and industry;
    the previous run takes the current industry of accounts it does not label)."""
    previous = previous_scores.copy()
    previous["account_id"] = previous["account_id"].astype(str)
    current_industry = dict(
        zip(
            scores["account_id"].astype(str), group_labels(scores["industry"], unknown), strict=True
        )
    )
    own = (
        group_labels(previous["industry"], unknown)
        if "industry" in previous.columns
        else pd.Series(unknown, index=previous.index)
    )
    from_current = previous["account_id"].map(current_industry)
    previous["industry_label"] = own.where(own != unknown, from_current).fillna(unknown)

    def shares(frame: pd.DataFrame, labels: pd.Series) -> pd.Series:
        grouped = (
            pd.DataFrame(
                {"at_risk": frame["p_churn"] * frame["arr"], "arr": frame["arr"], "label": labels}
            )
            .groupby("label")[["at_risk", "arr"]]
            .sum()
        )
        grouped = grouped[grouped["arr"] > 0]
        return grouped["at_risk"] / grouped["arr"]

    now = shares(scores, group_labels(scores["industry"], unknown))
    before = shares(previous, previous["industry_label"])
    changes = risk_changes(scores, previous_scores)
    changes["industry"] = group_labels(changes["industry"], unknown)
    changes["at_risk_rise"] = changes["rise"] * changes["arr"]
    alerts = []
    for industry in sorted(set(now.index) & set(before.index)):
        rise = float(now[industry] - before[industry])
        if not crosses(rise, settings.sector_risk_rise, ">=", settings.comparison_decimals):
            continue
        rose = changes[(changes["industry"] == industry) & (changes["rise"] > 0)]
        rose = rose.sort_values(["at_risk_rise", "account_id"], ascending=[False, True])
        alerts.append(
            _alert(
                "sector_risk_rise",
                ">=",
                settings.sector_risk_rise,
                rise,
                settings,
                f"Industry {industry!r}: weighted churn share rose from {before[industry]:.1%} "
                f"to {now[industry]:.1%}",
                list(rose["account_id"]),
                scope=str(industry),
            )
        )
    return alerts
