"""Inline SVG charts for the self-contained HTML report.

Each function takes plain numbers and labels and returns SVG markup (a
`markupsafe.Markup`, safe to place in a Jinja2 template with autoescaping):
no scripts, fonts or images, so the report opens anywhere and renders the
same offline. Text is escaped; numbers are rounded so the markup is stable
from run to run.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE: tuple[str, ...] = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#4a5568")
RISK_COLOR = "#c53030"
GRID_COLOR = "#e2e8f0"
AXIS_COLOR = "#718096"
TEXT_COLOR = "#2d3748"


def compact_number(value: float, digits: int = 3) -> str:
    """1234567 -> '1.23M', 0 -> '0', -4200 -> '-4.2k' (thousands, millions, billions)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= threshold:
            return f"{value / threshold:.{digits}g}{suffix}"
    return f"{value:.{digits}g}"


def percent(value: float | None, decimals: int = 1) -> str:
    """0.1234 -> '12.3%'; None or NaN -> 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{decimals}f}%"


def _f(value: float) -> str:
    """A coordinate rounded to 0.1 px, without trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}" '
        f'style="max-width:{width}px;font-family:inherit">' + "".join(body) + "</svg>"
    )


def _empty(width: int, height: int, label: str, message: str) -> Markup:
    return _svg(
        width,
        height,
        [
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS_COLOR}" '
            f'font-size="13">{escape(message)}</text>'
        ],
        label,
    )


def horizontal_bars(
    items: Sequence[tuple[str, float]],
    *,
    label: str,
    value_text: Callable[[float], str] = compact_number,
    color: str = PALETTE[0],
    threshold: float | None = None,
    width: int = 520,
    bar_height: int = 20,
) -> Markup:
    """One bar per (name, value), largest scale = the largest value (or the threshold).

    A `threshold` draws a dashed vertical line and colours bars beyond it red.
    """
    if not items:
        return _empty(width, 60, label, "no data")
    label_width, value_width, gap = 190, 70, 6
    plot_width = width - label_width - value_width
    top = max([v for _, v in items if math.isfinite(v)] + [threshold or 0.0, 1e-12])
    height = len(items) * (bar_height + gap) + gap
    body: list[str] = []
    for i, (name, value) in enumerate(items):
        y = gap + i * (bar_height + gap)
        length = max(0.0, value) / top * plot_width if math.isfinite(value) else 0.0
        fill = RISK_COLOR if threshold is not None and value > threshold else color
        name_text = name if len(name) <= 27 else name[:26] + "…"
        body.append(
            f'<text x="{label_width - 8}" y="{_f(y + bar_height * 0.72)}" text-anchor="end" '
            f'font-size="12" fill="{TEXT_COLOR}">{escape(name_text)}<title>{escape(name)}</title></text>'
            f'<rect x="{label_width}" y="{y}" width="{_f(length)}" height="{bar_height}" '
            f'rx="2" fill="{fill}"><title>{escape(name)}: {escape(value_text(value))}</title></rect>'
            f'<text x="{_f(label_width + length + 6)}" y="{_f(y + bar_height * 0.72)}" '
            f'font-size="12" fill="{TEXT_COLOR}">{escape(value_text(value))}</text>'
        )
    if threshold is not None:
        x = label_width + threshold / top * plot_width
        body.append(
            f'<line x1="{_f(x)}" y1="0" x2="{_f(x)}" y2="{height}" stroke="{RISK_COLOR}" '
            f'stroke-dasharray="4 3" stroke-width="1"><title>threshold {escape(value_text(threshold))}'
            f"</title></line>"
        )
    return _svg(width, height, body, label)


@dataclass(frozen=True)
class _Frame:
    """The plotting area of an x/y chart and its data ranges."""

    width: int
    height: int
    left: int = 56
    right: int = 16
    top: int = 12
    bottom: int = 40
    x_min: float = 0.0
    x_max: float = 1.0
    y_min: float = 0.0
    y_max: float = 1.0

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return (
            self.height
            - self.bottom
            - (value - self.y_min) / span * (self.height - self.top - self.bottom)
        )


def _axes(
    frame: _Frame,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[tuple[float, str]],
    x_title: str,
    y_title: str,
) -> list[str]:
    body: list[str] = []
    for value, text in y_ticks:
        y = _f(frame.y(value))
        body.append(
            f'<line x1="{frame.left}" y1="{y}" x2="{frame.width - frame.right}" y2="{y}" '
            f'stroke="{GRID_COLOR}"/><text x="{frame.left - 6}" y="{y}" dy="4" text-anchor="end" '
            f'font-size="11" fill="{AXIS_COLOR}">{escape(text)}</text>'
        )
    for value, text in x_ticks:
        x = _f(frame.x(value))
        body.append(
            f'<line x1="{x}" y1="{frame.top}" x2="{x}" y2="{frame.height - frame.bottom}" '
            f'stroke="{GRID_COLOR}"/><text x="{x}" y="{frame.height - frame.bottom + 15}" '
            f'text-anchor="middle" font-size="11" fill="{AXIS_COLOR}">{escape(text)}</text>'
        )
    body.append(
        f'<text x="{_f((frame.left + frame.width - frame.right) / 2)}" y="{frame.height - 6}" '
        f'text-anchor="middle" font-size="12" fill="{TEXT_COLOR}">{escape(x_title)}</text>'
        f'<text transform="translate(14 {_f((frame.top + frame.height - frame.bottom) / 2)}) '
        f'rotate(-90)" text-anchor="middle" font-size="12" fill="{TEXT_COLOR}">'
        f"{escape(y_title)}</text>"
    )
    return body


def concentration_curve(
    cumulative_share: Sequence[float],
    *,
    label: str = "Concentration curve",
    highlight_top: int = 10,
    width: int = 520,
    height: int = 300,
) -> Markup:
    """Cumulative share of ARR held by the largest accounts (x: share of accounts, y: share of ARR).

    `cumulative_share[i]` is the share of ARR held by the i+1 largest accounts.
    The diagonal is an evenly spread portfolio; the top-N point is marked.
    """
    n = len(cumulative_share)
    if n == 0:
        return _empty(width, height, label, "no accounts")
    frame = _Frame(width, height)
    # at most ~400 vertices: keep the head exactly, then thin evenly
    head = min(n, 100)
    index = list(range(head)) + list(range(head, n, max(1, (n - head) // 300)))
    if index[-1] != n - 1:
        index.append(n - 1)
    points = [(0.0, 0.0)] + [((i + 1) / n, float(cumulative_share[i])) for i in index]
    path = " ".join(
        f"{'M' if k == 0 else 'L'}{_f(frame.x(x))} {_f(frame.y(y))}"
        for k, (x, y) in enumerate(points)
    )
    ticks = [(t / 4, percent(t / 4, 0)) for t in range(5)]
    body = _axes(frame, ticks, ticks, "share of accounts (largest first)", "share of ARR")
    body.append(
        f'<line x1="{_f(frame.x(0))}" y1="{_f(frame.y(0))}" x2="{_f(frame.x(1))}" '
        f'y2="{_f(frame.y(1))}" stroke="{AXIS_COLOR}" stroke-dasharray="4 3"/>'
        f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>'
    )
    top = min(highlight_top, n)
    x, y = frame.x(top / n), frame.y(float(cumulative_share[top - 1]))
    anchor, dx = ("end", -8) if top / n > 0.6 else ("start", 8)
    dy = -10 if float(cumulative_share[top - 1]) < 0.5 else 16  # keep clear of the x axis
    body.append(
        f'<circle cx="{_f(x)}" cy="{_f(y)}" r="4" fill="{RISK_COLOR}"/>'
        f'<text x="{_f(x + dx)}" y="{_f(y + dy)}" text-anchor="{anchor}" font-size="12" '
        f'fill="{TEXT_COLOR}">top {top}: {escape(percent(float(cumulative_share[top - 1])))} '
        "of ARR</text>"
    )
    return _svg(width, height, body, label)


def _log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten around [low, high]; at most 1e308 (10.0**309 overflows a float)."""
    start, stop = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**e for e in range(start, min(stop, sys.float_info.max_10_exp) + 1)]


def priority_matrix(
    p_churn: Sequence[float],
    arr: Sequence[float],
    size: Sequence[float],
    groups: Sequence[str],
    names: Sequence[str],
    *,
    label: str = "Priority matrix",
    churn_threshold: float | None = None,
    width: int = 620,
    height: int = 380,
) -> Markup:
    """Scatter of p_churn (x) against ARR (y, log scale), circle area by `size`, colour by group.

    `churn_threshold` draws the high-risk boundary. The caller decides which
    accounts to plot (a report shows the top few thousand, not a million).
    """
    points = [
        (float(p), float(a), float(s), str(g), str(n))
        for p, a, s, g, n in zip(p_churn, arr, size, groups, names, strict=True)
        if math.isfinite(p) and math.isfinite(a) and a > 0
    ]
    if not points:
        return _empty(width, height, label, "no scored accounts")
    low = min(a for _, a, _, _, _ in points)
    high = max(a for _, a, _, _, _ in points)
    ticks = _log_ticks(low, high)
    frame = _Frame(
        width,
        height,
        left=64,
        top=30,
        y_min=math.log10(ticks[0]),
        y_max=math.log10(ticks[-1]),
    )
    x_ticks = [(t / 5, percent(t / 5, 0)) for t in range(6)]
    y_ticks = [(math.log10(t), compact_number(t)) for t in ticks]
    body = _axes(frame, x_ticks, y_ticks, "probability of churn", "ARR (log scale)")
    if churn_threshold is not None:
        x = _f(frame.x(churn_threshold))
        body.append(
            f'<line x1="{x}" y1="{frame.top}" x2="{x}" y2="{height - frame.bottom}" '
            f'stroke="{RISK_COLOR}" stroke-dasharray="4 3"/>'
        )
    largest = max((s for _, _, s, _, _ in points if math.isfinite(s)), default=0.0) or 1.0
    group_names = sorted({g for _, _, _, g, _ in points})
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(group_names)}
    # big circles first so the small ones stay visible on top
    for p, a, s, g, n in sorted(points, key=lambda pt: (-pt[2], pt[4])):
        radius = 2.0 + 10.0 * math.sqrt(max(0.0, s) / largest) if math.isfinite(s) else 2.0
        body.append(
            f'<circle cx="{_f(frame.x(p))}" cy="{_f(frame.y(math.log10(a)))}" r="{_f(radius)}" '
            f'fill="{colors[g]}" fill-opacity="0.45" stroke="{colors[g]}" stroke-width="0.6">'
            f"<title>{escape(n)}: p_churn {escape(percent(p))}, ARR {escape(compact_number(a))}, "
            f"{escape(g)}</title></circle>"
        )
    legend_y = 16
    x = frame.left
    for g in group_names:
        body.append(
            f'<circle cx="{x + 5}" cy="{legend_y - 4}" r="5" fill="{colors[g]}" fill-opacity="0.6"/>'
            f'<text x="{x + 14}" y="{legend_y}" font-size="11" fill="{TEXT_COLOR}">{escape(g)}</text>'
        )
        x += 24 + 7 * len(g)
    return _svg(width, height, body, label)


def calibration_chart(
    predicted: Sequence[float],
    observed: Sequence[float],
    counts: Sequence[int],
    *,
    label: str = "Calibration",
    width: int = 360,
    height: int = 300,
) -> Markup:
    """Mean predicted vs observed rate per bin, with the diagonal of perfect calibration."""
    bins = [
        (float(p), float(o), int(c))
        for p, o, c in zip(predicted, observed, counts, strict=True)
        if c > 0 and math.isfinite(p) and math.isfinite(o)
    ]
    if not bins:
        return _empty(width, height, label, "no outcomes yet")
    top = max(0.05, *(max(p, o) for p, o, _ in bins))
    top = min(1.0, math.ceil(top * 10) / 10)
    frame = _Frame(width, height, x_max=top, y_max=top)
    ticks = [(top * t / 4, percent(top * t / 4, 0)) for t in range(5)]
    body = _axes(frame, ticks, ticks, "predicted", "observed")
    body.append(
        f'<line x1="{_f(frame.x(0))}" y1="{_f(frame.y(0))}" x2="{_f(frame.x(top))}" '
        f'y2="{_f(frame.y(top))}" stroke="{AXIS_COLOR}" stroke-dasharray="4 3"/>'
    )
    largest = max(c for _, _, c in bins)
    path = " ".join(
        f"{'M' if k == 0 else 'L'}{_f(frame.x(p))} {_f(frame.y(o))}"
        for k, (p, o, _) in enumerate(bins)
    )
    body.append(f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="1.5"/>')
    for p, o, c in bins:
        body.append(
            f'<circle cx="{_f(frame.x(p))}" cy="{_f(frame.y(o))}" '
            f'r="{_f(2.5 + 4 * math.sqrt(c / largest))}" fill="{PALETTE[0]}">'
            f"<title>predicted {escape(percent(p))}, observed {escape(percent(o))}, "
            f"{c} accounts</title></circle>"
        )
    return _svg(width, height, body, label)
