"""A small inline SVG line of a series (no script, no library)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def sparkline(values: Sequence[float | None], *, title: str, width: int = 120, height: int = 24) -> str:
    """An ``<svg>`` polyline of ``values`` (oldest first; ``None`` gaps are skipped), scaled to its range."""
    label = escape(title, quote=True)
    points = [(i, float(v)) for i, v in enumerate(values) if v is not None]
    if not points:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="{label}"></svg>'
    ys = [v for _, v in points]
    low, high = min(ys), max(ys)
    pad = 2
    step_x = (width - 2 * pad) / max(len(values) - 1, 1)
    scale_y = (height - 2 * pad) / ((high - low) or 1.0)
    base_y = height - pad
    coords = [(f"{pad + i * step_x:.1f}", f"{base_y - (v - low) * scale_y:.1f}") for i, v in points]
    path = " ".join(f"{x},{y}" for x, y in coords)
    last_x, last_y = coords[-1]
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{label}"><title>{label}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="currentColor"/></svg>'
    )
