"""Charts as SVG drawn on the server: no JavaScript, no library, readable when printed.

Each chart scales to its container (``viewBox``, width 100%), names itself for screen readers
(``role="img"`` and a ``<title>``), and gives each mark a tooltip; the pages put the numbers in a
table beside it as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["COLOURS", "hbars", "stacked_columns", "stacked_hbars"]

COLOURS = {"ok": "#2e7d32", "refused": "#e0a100", "failed": "#c62828", "received": "#1565c0",
           "online": "#64b5f6", "resolved": "#6a1b9a", "ontime": "#ba68c8", "neutral": "#607d8b"}

Series = tuple[str, str, Sequence[int]]  # name, colour, a value per label


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** (len(str(int(value))) - 1)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _svg(width: int, height: int, title: str, body: list[str], css: str = "chart") -> Markup:
    head = (f'<svg class="{css}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet" '
            'xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(title)}</title>")
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every value above is escaped


def stacked_columns(labels: Sequence[str], series: Sequence[Series], title: str,
                    width: int = 1000, height: int = 260) -> Markup:
    """Columns over time (one per label), each stacked by series."""
    left, right, top, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    peak = _nice_max(max(totals, default=0))
    body: list[str] = []
    for k in range(5):
        value = peak * k / 4
        y = top + plot_h - plot_h * k / 4
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                    f"{value:g}</text>")
    n = max(1, len(labels))
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    every = max(1, n // 8)
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for name, colour, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / peak
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                        f'fill="{colour}"><title>{escape(label)} · {escape(name)}: {value}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{x + bar / 2:.1f}" y="{height - 14}" class="axis" '
                        f'text-anchor="middle">{escape(label)}</text>')
    return _svg(width, height, title, body)


def stacked_hbars(rows: Sequence[tuple[str, Sequence[tuple[str, str, int]]]], title: str,
                  width: int = 720, row_h: int = 26, label_w: int = 300) -> Markup:
    """One horizontal bar per row, stacked by its parts (name, colour, value)."""
    height = max(1, len(rows)) * row_h + 8
    peak = max((sum(v for _, _, v in parts) for _, parts in rows), default=0) or 1
    plot_w = width - label_w - 60
    body: list[str] = []
    for i, (label, parts) in enumerate(rows):
        y = 4 + i * row_h
        short = label if len(label) <= 44 else "…" + label[-43:]
        body.append(f'<text x="{label_w - 8}" y="{y + row_h * 0.62:.1f}" class="label" '
                    f'text-anchor="end"><title>{escape(label)}</title>{escape(short)}</text>')
        x = float(label_w)
        for name, colour, value in parts:
            if value <= 0:
                continue
            w = plot_w * value / peak
            body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 8}" '
                        f'fill="{colour}"><title>{escape(label)} · {escape(name)}: {value}</title></rect>')
            x += w
        total = sum(v for _, _, v in parts)
        body.append(f'<text x="{x + 6:.1f}" y="{y + row_h * 0.62:.1f}" class="value">{total}</text>')
    return _svg(width, height, title, body)


def hbars(rows: Sequence[tuple[str, float | None, str]], title: str, colour: str, *,
          peak: float | None = None, width: int = 520, row_h: int = 26, label_w: int = 200) -> Markup:
    """One horizontal bar per row: (label, value or None, the text shown beside the bar)."""
    height = max(1, len(rows)) * row_h + 8
    top = peak if peak is not None else _nice_max(max((v or 0 for _, v, _ in rows), default=0))
    plot_w = width - label_w - 70
    body: list[str] = []
    for i, (label, value, text) in enumerate(rows):
        y = 4 + i * row_h
        body.append(f'<text x="{label_w - 8}" y="{y + row_h * 0.62:.1f}" class="label" '
                    f'text-anchor="end">{escape(label)}</text>'
                    f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 8}" class="track"/>')
        w = plot_w * (value or 0) / (top or 1)
        if value:
            body.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
                        f'fill="{colour}"><title>{escape(label)}: {escape(text)}</title></rect>')
        body.append(f'<text x="{label_w + plot_w + 6}" y="{y + row_h * 0.62:.1f}" class="value">'
                    f"{escape(text)}</text>")
    return _svg(width, height, title, body)
