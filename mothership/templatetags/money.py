"""Money as the pages show it, the same rule as ``dollars`` in static/mothership/live.js: cents,
and hundredths of a cent for what is more than nothing but less than one cent (a day of a few
short replies is not "$0.00"), and "< $0.0001" below that."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def dollars(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    if 0 < value < 0.0001:
        return "< $0.0001"  # more than nothing: never "$0.0000"
    return f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"
