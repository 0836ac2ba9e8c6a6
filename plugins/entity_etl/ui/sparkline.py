"""A small inline SVG line of a series (no script, no library)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def sparkline(values: Sequence[float | None], *, title: str, width: int = 120, height: int = 24) -> str:
    """An ``<svg>`` polyline of ``values`` (oldest first; ``None`` gaps are skipped), scaled to its range."""
    points = [(i, float(v)) for i, v in enumerate(values) if v is not None]
    label = escape(title, quote=True)
    if not points:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="{label}"></svg>'
    low, high = min(v for _, v in points), max(v for _, v in points)
    span_x, span_y = max(len(values) - 1, 1), (high - low) or 1.0
    pad = 2

    def xy(i: int, v: float) -> str:
        x = pad + i * (width - 2 * pad) / span_x
        y = height - pad - (v - low) * (height - 2 * pad) / span_y
        return f"{x:.1f},{y:.1f}"

    path = " ".join(xy(i, v) for i, v in points)
    last_x, last_y = xy(*points[-1]).split(",")
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}"><title>{label}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="currentColor"/></svg>'
    )
