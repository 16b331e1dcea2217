"""The nightly job's HTML report: one self-contained file.

`render_report(ReportInput)` returns the HTML text of
`serving/templates/report.html.j2`: inline CSS and inline SVG charts
(`serving.charts`), no scripts, fonts or images from anywhere, so the file
can be mailed, archived or opened offline. Every KPI tile carries
`data-kpi="<portfolio.json key>"` and `data-value="<the machine value>"` so
tools (and the browser test) can read the figures back.

The functions here only arrange what the job already computed (the
portfolio summary, the enriched scores, drift and outcomes) into rows and
charts; no metric is computed twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from serving.analytics import parent_of
from serving.charts import (
    calibration_chart,
    compact_number,
    concentration_curve,
    horizontal_bars,
    percent,
    priority_matrix,
)

TEMPLATE_NAME = "report.html.j2"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class ReportInput:
    """Everything the report shows, as the nightly job computed it."""

    summary: Mapping[str, Any]  # portfolio.json
    scores: pd.DataFrame  # enriched scores joined with the account attributes
    run: Mapping[str, Any]  # name, as_of, scored, rejected, churn_model, upsell_model, ...
    drift: pd.DataFrame | None = None  # serving.drift.model_drift rows of both models
    psi_alert: float = 0.2
    outcomes: Mapping[str, Any] | None = None  # serving.outcomes result + as_of, horizon_days
    data_tables: Sequence[Mapping[str, Any]] = field(default_factory=list)
    rejected: pd.DataFrame | None = None
    top_accounts: int = 15
    matrix_points: int = 1500
    high_risk_p_churn: float | None = None
    accounts: pd.DataFrame | None = None  # the accounts table, for the parent roll-up


def machine_value(value: Any) -> str:
    """The exact value for a `data-value` attribute: shortest round-trip float text, or ''."""
    if value is None:
        return ""
    number = float(value)
    return repr(number) if math.isfinite(number) else ""


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _band(summary: Mapping[str, Any]) -> tuple[float | None, float | None]:
    band = summary.get("weighted_churn_risk_band") or {}
    if isinstance(band, Mapping):
        return _number(band.get("p10")), _number(band.get("p90"))
    return None, None


def _alert_rules(summary: Mapping[str, Any]) -> set[str]:
    return {str(alert.get("rule", "")) for alert in summary.get("alerts", []) or []}


def kpi_tiles(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The KPI tiles: ARR, weighted churn risk with its band, forecast NRR, concentration, ..."""
    arr_total = _number(summary.get("arr_total"))
    risk = _number(summary.get("weighted_churn_risk"))
    p10, p90 = _band(summary)
    rules = _alert_rules(summary)
    share = risk / arr_total if risk is not None and arr_total else None
    tiles = [
        {
            "key": "arr_total",
            "label": "ARR",
            "value": summary.get("arr_total"),
            "text": compact_number(arr_total) if arr_total is not None else "n/a",
            "detail": (
                f"{int(summary['accounts']):,} scored accounts"
                if isinstance(summary.get("accounts"), int | float)
                else ""
            ),
            "alerting": False,
        },
        {
            "key": "weighted_churn_risk",
            "label": "Weighted churn risk",
            "value": summary.get("weighted_churn_risk"),
            "text": compact_number(risk) if risk is not None else "n/a",
            "detail": (
                f"{percent(share)} of ARR · P10–P90 {compact_number(p10)}–{compact_number(p90)}"
                if p10 is not None and p90 is not None
                else f"{percent(share)} of ARR"
            ),
            "alerting": any("churn" in rule and "drift" not in rule for rule in rules),
        },
        {
            "key": "nrr_forecast",
            "label": "Forecast NRR",
            "value": summary.get("nrr_forecast"),
            "text": percent(_number(summary.get("nrr_forecast"))),
            "detail": f"realised (12 months): {percent(_number(summary.get('nrr_realised')))}",
            "alerting": False,
        },
        {
            "key": "concentration_top10",
            "label": "Top-10 concentration",
            "value": summary.get("concentration_top10"),
            "text": percent(_number(summary.get("concentration_top10"))),
            "detail": "share of ARR held by the 10 largest (parents rolled up)",
            "alerting": any("concentration" in rule for rule in rules),
        },
    ]
    for tile in tiles:
        tile["machine"] = machine_value(_number(tile.pop("value")))
    return tiles


def _observed_text(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    if abs(number) <= 1.5 and number != int(number):
        return f"{number:.3g}"
    return compact_number(number)


def alert_rows(alerts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Alerts, critical first, as table rows."""
    order = {"critical": 0, "warning": 1, "info": 2}
    rows = []
    for alert in sorted(
        alerts, key=lambda a: (order.get(str(a.get("severity")), 3), str(a.get("rule")))
    ):
        accounts = alert.get("accounts") or []
        shown = ", ".join(
            str(a.get("account_id", a)) if isinstance(a, Mapping) else str(a) for a in accounts[:8]
        )
        if len(accounts) > 8:
            shown += f" and {len(accounts) - 8} more"
        rows.append(
            {
                "severity": str(alert.get("severity", "info")),
                "rule": str(alert.get("rule", "")),
                "observed": _observed_text(alert.get("observed")),
                "threshold": _observed_text(alert.get("threshold")),
                "message": str(alert.get("message", "")),
                "action": str(alert.get("suggested_action", "") or ""),
                "accounts": shown,
            }
        )
    return rows


def risk_by(summary: Mapping[str, Any], breakdown: str, limit: int = 12) -> list[tuple[str, float]]:
    """Expected ARR at risk per group of a summary breakdown (`by_segment`...), largest first."""
    groups = summary.get(breakdown) or {}
    items = [
        (str(name), float(row.get("weighted_churn_risk") or 0.0))
        for name, row in groups.items()
        if isinstance(row, Mapping)
    ]
    items.sort(key=lambda item: (-item[1], item[0]))
    return items[:limit]


def rolled_up_cumulative_share(
    scores: pd.DataFrame, accounts: pd.DataFrame | None = None
) -> np.ndarray:
    """Cumulative share of ARR of the largest accounts, children rolled up to their top parent
    (the same roll-up as the concentration metric, `serving.analytics.parent_of`)."""
    if scores.empty:
        return np.array([])
    frame = scores.assign(account_id=scores["account_id"].astype("string"))
    if "parent_account_id" not in frame.columns:
        frame = frame.assign(parent_account_id=pd.Series(pd.NA, index=frame.index, dtype="string"))
    parents = parent_of(frame, accounts)
    arr = frame["arr"].astype("float64").clip(lower=0).groupby(parents.to_numpy()).sum()
    values = np.sort(arr.to_numpy())[::-1]
    total = values.sum()
    return np.cumsum(values) / total if total > 0 else np.zeros_like(values)


def _reason_texts(reasons: Any, model: str) -> list[str]:
    if reasons is None:
        return []
    texts = []
    for reason in list(reasons):
        if isinstance(reason, Mapping) and reason.get("model") == model:
            text = reason.get("text") or reason.get("feature")
            contribution = _number(reason.get("contribution"))
            sign = "" if contribution is None else (" ↑" if contribution > 0 else " ↓")
            texts.append(f"{text}{sign}")
    return texts


def _account_label(row: Mapping[str, Any]) -> str:
    name = row.get("name")
    if isinstance(name, str) and name:
        return f"{name} ({row['account_id']})"
    return str(row["account_id"])


def top_account_rows(scores: pd.DataFrame, by: str, model: str, limit: int) -> list[dict[str, Any]]:
    """The `limit` accounts with the largest `by`, with their reasons for `model`."""
    if scores.empty or by not in scores.columns:
        return []
    top = scores.sort_values([by, "account_id"], ascending=[False, True], kind="stable").head(limit)
    rows = []
    for record in top.to_dict("records"):
        rows.append(
            {
                "account": _account_label(record),
                "segment": record.get("segment") if isinstance(record.get("segment"), str) else "",
                "tier": record.get("tier") if isinstance(record.get("tier"), str) else "",
                "arr": compact_number(float(record["arr"])),
                "p_churn": percent(_number(record.get("p_churn"))),
                "p_upsell": percent(_number(record.get("p_upsell"))),
                "expected_arr_at_risk": compact_number(
                    float(record.get("expected_arr_at_risk") or 0)
                ),
                "expected_expansion": compact_number(float(record.get("expected_expansion") or 0)),
                "reasons": _reason_texts(record.get("reasons"), model),
            }
        )
    return rows


def mover_blocks(movers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Movers (from the portfolio summary) as two small tables: churn and upsell."""
    if not movers:
        return {"previous": None, "blocks": []}
    blocks = []
    for key, title in (("churn", "Churn risk"), ("upsell", "Upsell propensity")):
        rows = []
        for mover in movers.get(key, []) or []:
            change = _number(mover.get("change")) or 0.0
            features = mover.get("features") or []
            rows.append(
                {
                    "account": str(mover.get("account_id")),
                    "before": percent(
                        _number(mover.get("previous", mover.get(f"p_{key}_previous")))
                    ),
                    "now": percent(_number(mover.get("current", mover.get(f"p_{key}")))),
                    "change": f"{'+' if change > 0 else ''}{100 * change:.1f} pts",
                    "direction": "up" if (change > 0) == (key == "churn") else "down",
                    "changes": ", ".join(
                        str(f.get("feature", f)) if isinstance(f, Mapping) else str(f)
                        for f in features[:3]
                    ),
                }
            )
        blocks.append({"title": title, "rows": rows})
    return {"previous": movers.get("previous_as_of"), "blocks": blocks}


def tier_rows(tiers: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Accounts, ARR, expected ARR at risk and expected expansion per coverage tier."""
    rows = []
    for tier, row in (tiers or {}).items():
        if not isinstance(row, Mapping) or "accounts" not in row:
            continue
        rows.append(
            {
                "tier": str(tier),
                "accounts": f"{int(row['accounts']):,}",
                "arr": compact_number(float(row.get("arr") or 0.0)),
                "at_risk": compact_number(float(row.get("expected_arr_at_risk") or 0.0)),
                "expansion": compact_number(float(row.get("expected_expansion") or 0.0)),
            }
        )
    return rows


ALLOCATION_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("status", "status", "text"),
    ("managers", "account managers", "count"),
    ("accounts", "accounts planned", "count"),
    ("expected_value_current", "expected value, current owners", "money"),
    ("expected_value_assigned", "expected value, plan", "money"),
    ("gain_share", "gain", "share"),
    ("accounts_moved", "accounts moved", "count"),
    ("accounts_unassigned", "accounts left unassigned", "count"),
    ("reason", "why", "text"),
)


def allocation_rows(allocation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The allocation summary's headline figures as label/value rows."""
    if not allocation:
        return {"rows": [], "note": "No account managers given: no allocation."}
    rows = []
    for key, label, kind in ALLOCATION_FIGURES:
        value = allocation.get(key)
        if value is None:
            continue
        if kind == "text":
            text = str(value)
        elif kind == "count":
            text = f"{int(value):,}"
        elif kind == "money":
            text = compact_number(float(value))
        else:
            text = percent(float(value))
        rows.append((label, text))
    return {"rows": rows, "note": ""}


def drift_blocks(drift: pd.DataFrame | None, psi_alert: float) -> list[dict[str, Any]]:
    """Per model: PSI of the score and of the most drifted features against the threshold."""
    if drift is None or drift.empty:
        return []
    blocks = []
    for target in sorted(drift["target"].unique()):
        rows = drift[drift["target"] == target]
        top = pd.concat([rows[rows["kind"] == "score"], rows[rows["kind"] == "feature"].head(11)])
        items = [
            (str(n) if k == "feature" else "score distribution", float(p))
            for n, k, p in zip(top["name"], top["kind"], top["psi"], strict=True)
        ]
        drifted = int(rows.loc[rows["kind"] == "feature", "alert"].sum())
        blocks.append(
            {
                "title": f"Drift of the {target} model (PSI vs training)",
                "chart": horizontal_bars(
                    items,
                    label=f"PSI of the {target} model",
                    value_text=lambda v: f"{v:.3f}",
                    threshold=psi_alert,
                ),
                "note": f"{drifted} of {int((rows['kind'] == 'feature').sum())} features above PSI {psi_alert:g}.",
            }
        )
    return blocks


def outcome_view(outcomes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Realised vs predicted for the earlier run whose horizon elapsed, as table rows and a chart."""
    if not outcomes or not any(t in outcomes for t in ("churn", "upsell")):
        return None
    rows = []
    for target in ("churn", "upsell"):
        if target not in outcomes:
            continue
        metrics = outcomes[target]["metrics"]
        rows.append(
            {
                "model": target,
                "auc": f"{metrics['roc_auc']:.3f}"
                if _number(metrics.get("roc_auc")) is not None
                else "n/a",
                "ece": f"{metrics['ece']:.3f}",
                "predicted": percent(metrics.get("mean_predicted")),
                "realised": percent(metrics.get("positive_rate")),
            }
        )
    churn = outcomes.get("churn", {})
    bins = churn.get("calibration", [])
    churn_metrics = churn.get("metrics", {})
    return {
        "as_of": outcomes.get("as_of"),
        "horizon_days": outcomes.get("horizon_days"),
        "labelled": f"{int(outcomes.get('accounts_labelled', 0)):,}",
        "rows": rows,
        "predicted_arr_at_risk": compact_number(churn_metrics.get("predicted_arr_at_risk")),
        "realised_churned_arr": compact_number(churn_metrics.get("realised_churned_arr")),
        "calibration_chart": calibration_chart(
            [b["mean_predicted"] for b in bins],
            [b["observed_rate"] for b in bins],
            [b["count"] for b in bins],
            label="Churn calibration of the earlier run",
        ),
    }


def rejected_rows(rejected: pd.DataFrame | None) -> list[dict[str, Any]]:
    if rejected is None or rejected.empty:
        return []
    counts = (
        rejected.groupby("reason", sort=True).size().sort_values(ascending=False, kind="stable")
    )
    return [{"reason": str(reason), "count": f"{int(n):,}"} for reason, n in counts.items()]


def matrix_chart(scores: pd.DataFrame, points: int, high_risk: float | None) -> tuple[Any, str]:
    """The priority matrix of the `points` accounts with the highest priority."""
    if scores.empty:
        return priority_matrix([], [], [], [], []), ""
    order = "priority" if "priority" in scores.columns else "expected_arr_at_risk"
    shown = scores.sort_values([order, "account_id"], ascending=[False, True], kind="stable").head(
        points
    )
    chart = priority_matrix(
        shown["p_churn"].to_numpy(dtype=float),
        shown["arr"].to_numpy(dtype=float),
        shown["expected_expansion"].to_numpy(dtype=float)
        if "expected_expansion" in shown.columns
        else np.ones(len(shown)),
        shown["tier"].astype("string").fillna("untiered").tolist()
        if "tier" in shown.columns
        else ["accounts"] * len(shown),
        shown["account_id"].astype(str).tolist(),
        churn_threshold=high_risk,
    )
    note = (
        f"The {len(shown):,} accounts with the highest {order.replace('_', ' ')} of {len(scores):,}; "
        "circle area: expected expansion; colour: coverage tier."
    )
    return chart, note


def report_context(data: ReportInput) -> dict[str, Any]:
    """The template's variables."""
    summary = data.summary
    scores = data.scores
    cumulative = rolled_up_cumulative_share(scores, data.accounts)
    matrix, matrix_note = matrix_chart(scores, data.matrix_points, data.high_risk_p_churn)
    top10 = _number(summary.get("concentration_top10"))
    return {
        "run": {
            "name": data.run.get("name", "portfolio"),
            "as_of": data.run.get("as_of"),
            "scored": int(data.run.get("scored", len(scores))),
            "rejected": int(data.run.get("rejected", 0)),
            "churn_model": data.run.get("churn_model", ""),
            "upsell_model": data.run.get("upsell_model", ""),
            "horizon_days": data.run.get("horizon_days", ""),
            "sources": data.run.get("sources", ""),
        },
        "kpis": kpi_tiles(summary),
        "alerts": alert_rows(summary.get("alerts", []) or []),
        "charts": {
            "risk_by_segment": horizontal_bars(
                risk_by(summary, "by_segment"),
                label="Expected ARR at risk by segment",
                color="#c05621",
            ),
            "risk_by_industry": horizontal_bars(
                risk_by(summary, "by_industry"),
                label="Expected ARR at risk by industry",
                color="#c05621",
            ),
            "concentration": concentration_curve(cumulative),
            "priority_matrix": matrix,
        },
        "concentration_note": (
            f"Top 10: {percent(top10)} of ARR across {len(cumulative):,} (rolled-up) accounts."
            if top10 is not None
            else ""
        ),
        "priority_note": matrix_note,
        "top_risk": top_account_rows(scores, "expected_arr_at_risk", "churn", data.top_accounts),
        "top_expansion": top_account_rows(
            scores, "expected_expansion", "upsell", data.top_accounts
        ),
        "movers": mover_blocks(summary.get("movers")),
        "tiers": tier_rows(summary.get("tiers")),
        "allocation": allocation_rows(summary.get("allocation")),
        "drift": drift_blocks(data.drift, data.psi_alert),
        "outcomes": outcome_view(data.outcomes),
        "data_tables": [
            {
                "table": t.get("table"),
                "read": f"{int(t.get('rows_read', 0)):,}",
                "loaded": f"{int(t.get('rows_loaded', 0)):,}",
                "excluded": f"{int(t.get('rows_excluded', 0)):,}",
            }
            for t in data.data_tables
        ],
        "rejected": rejected_rows(data.rejected),
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_report(data: ReportInput) -> str:
    """The report's HTML text (deterministic for the same input)."""
    return _environment().get_template(TEMPLATE_NAME).render(**report_context(data))
