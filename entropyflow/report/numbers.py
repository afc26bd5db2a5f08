"""How a number is shown to a reader (terminal, HTML): one rule, so a value reads the same in
both. Files meant for programs (CSV, JSON) write full precision and are not formatted here."""

from __future__ import annotations

import math

MISSING = "—"


def fmt(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals and a true minus sign; ``—`` when missing, ``−∞``/``∞`` for
    infinities, and whole numbers with thousands separators from 10⁴ on."""
    if v is None:
        return MISSING
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    if abs(v) >= 1e4:
        return f"{v:,.0f}".replace("-", "−")
    return f"{v:.{digits}f}".replace("-", "−")
