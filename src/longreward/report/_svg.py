"""Small inline-SVG charts: histograms, a correlation heatmap and interval plots.

Drawn here as SVG text so the report is one file that needs no network and no script to show
its charts. Every chart carries a ``<title>`` per mark, so hovering shows the exact value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

_W = 360
_H = 180
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 36, 10, 22, 30


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.2g}" if abs(x) < 1 else f"{x:.1f}"


def histogram(values: Sequence[float], *, title: str, low: float | None = None,
              high: float | None = None, bins: int = 10, color: str = "#3b6ea8") -> str:
    """Bar histogram of ``values`` over [low, high] (default: their range)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    head = f'<text x="{_PAD_L}" y="14" class="t">{escape(title)} (n={len(vals)})</text>'
    if not vals:
        return _frame(head + f'<text x="{_W / 2}" y="{_H / 2}" class="e">no values</text>')
    lo = min(vals) if low is None else low
    hi = max(vals) if high is None else high
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = [0] * bins
    for v in vals:
        k = int((min(max(v, lo), hi) - lo) / (hi - lo) * bins)
        counts[min(k, bins - 1)] += 1
    top = max(counts) or 1
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    bw = pw / bins
    parts = [head]
    for k, c in enumerate(counts):
        h = ph * c / top
        x0 = lo + (hi - lo) * k / bins
        x1 = lo + (hi - lo) * (k + 1) / bins
        parts.append(
            f'<rect x="{_PAD_L + k * bw + 1:.1f}" y="{_PAD_T + ph - h:.1f}" '
            f'width="{max(bw - 2, 1):.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{_fmt(x0)}–{_fmt(x1)}: {c}</title></rect>")
    parts.append(_axes(lo, hi, top))
    return _frame("".join(parts))


def _axes(lo: float, hi: float, top: int) -> str:
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    y0 = _PAD_T + ph
    out = [f'<line x1="{_PAD_L}" y1="{y0}" x2="{_PAD_L + pw}" y2="{y0}" class="a"/>',
           f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{y0}" class="a"/>',
           f'<text x="{_PAD_L - 4}" y="{_PAD_T + 4}" class="yl">{top}</text>',
           f'<text x="{_PAD_L - 4}" y="{y0}" class="yl">0</text>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        x = _PAD_L + pw * k / 4
        out.append(f'<text x="{x:.1f}" y="{y0 + 14}" class="xl">{_fmt(v)}</text>')
    return "".join(out)


def _frame(body: str, width: int = _W, height: int = _H) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def _corr_color(r: float | None) -> str:
    if r is None:
        return "#eeeeee"
    # blue for positive, red for negative, white at 0
    a = min(abs(r), 1.0)
    if r >= 0:
        return f"rgb({int(255 - 195 * a)},{int(255 - 145 * a)},{int(255 - 87 * a)})"
    return f"rgb({int(255 - 40 * a)},{int(255 - 175 * a)},{int(255 - 175 * a)})"


def heatmap(names: Sequence[str], matrix: Sequence[Sequence[float | None]],
            counts: Sequence[Sequence[int]], *, title: str) -> str:
    """A labelled correlation matrix (Pearson r in each cell)."""
    cell, left, top = 46, 96, 98
    size = len(names)
    # wide enough for the title too (≈7.2 px a character at the title's bold 12 px)
    width = max(left + cell * size + 8, int(len(title) * 7.2) + 12)
    height = top + cell * size + 8
    parts = [f'<text x="4" y="14" class="t">{escape(title)}</text>']
    for i, name in enumerate(names):
        y = top + cell * i + cell / 2 + 4
        parts.append(f'<text x="{left - 6}" y="{y:.1f}" class="yl">{escape(name)}</text>')
        x = left + cell * i + cell / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 6}" class="cl" '
                     f'transform="rotate(-40 {x:.1f} {top - 6})">{escape(name)}</text>')
    for i in range(size):
        for j in range(size):
            r = matrix[i][j]
            x, y = left + cell * j, top + cell * i
            label = "–" if r is None else f"{r:.2f}"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{_corr_color(r)}"><title>{escape(names[i])} × {escape(names[j])}: '
                f"r={label}, n={counts[i][j]}</title></rect>"
                f'<text x="{x + cell / 2 - 1:.1f}" y="{y + cell / 2 + 4:.1f}" class="v">'
                f"{label}</text>")
    return _frame("".join(parts), width, height)


def intervals(rows: Sequence[tuple[str, float | None, float | None, float | None]], *,
              title: str, reference: float | None = None, chance: float = 0.5) -> str:
    """One row per method: a dot at its accuracy and a bar over its interval, on 0–100%, with
    a dashed line at chance and a dotted one at ``reference`` (the reward's accuracy)."""
    left, right, row_h, top = 170, 20, 22, 30
    width = 620
    height = top + row_h * len(rows) + 26
    pw = width - left - right

    def x(v: float) -> float:
        return left + pw * max(0.0, min(1.0, v))

    parts = [f'<text x="4" y="14" class="t">{escape(title)}</text>']
    for k in range(6):
        v = k / 5
        parts.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" '
                     f'y2="{height - 22}" class="g"/>'
                     f'<text x="{x(v):.1f}" y="{height - 8}" class="xl">{int(v * 100)}%</text>')
    parts.append(f'<line x1="{x(chance):.1f}" y1="{top - 6}" x2="{x(chance):.1f}" '
                 f'y2="{height - 22}" class="chance"><title>chance</title></line>')
    if reference is not None:
        parts.append(f'<line x1="{x(reference):.1f}" y1="{top - 6}" x2="{x(reference):.1f}" '
                     f'y2="{height - 22}" class="ref"><title>reward</title></line>')
    for i, (name, acc, lo, hi) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" class="yl">{escape(name)}</text>')
        if acc is None:
            parts.append(f'<text x="{left + 4}" y="{y + 4:.1f}" class="e">no pairs</text>')
            continue
        tip = f"{name}: {100 * acc:.1f}%"
        if lo is not None and hi is not None:
            tip += f" (95% CI {100 * lo:.1f}–{100 * hi:.1f})"
            parts.append(f'<line x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" '
                         f'class="ci"><title>{escape(tip)}</title></line>')
        parts.append(f'<circle cx="{x(acc):.1f}" cy="{y:.1f}" r="5" class="dot">'
                     f"<title>{escape(tip)}</title></circle>")
    return _frame("".join(parts), width, height)
