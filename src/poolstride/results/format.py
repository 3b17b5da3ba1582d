"""Number formatting for people: the one place that turns results into table cells and sentences.

Every function takes ``None`` (a number that could not be computed) and prints ``missing`` for it
(``"n/a"`` unless the caller's table uses another mark, e.g. ``"-"``). Nothing here rounds for the JSON
outputs: they keep the raw numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

SI_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_number(x: Any, digits: int = 2, unit: str = "", *, missing: str = "n/a") -> str:
    """A float with ``digits`` decimals and an optional ``unit`` (``"71.2%"``); a non-float (an int, a
    string) is printed as it is, ``None`` as ``missing``."""
    if x is None:
        return missing
    if isinstance(x, float):
        return f"{x:.{digits}f}{unit}"
    return f"{x}{unit}"


def fmt_delta(x: float | None, digits: int | None = 1, unit: str = "", *, missing: str = "n/a") -> str:
    """A signed difference: ``"+1.2 pt"`` (``unit=" pt"``), ``"-3.0%"`` (``unit="%"``).

    ``digits=None`` prints a whole number with thousands separators, and 0 without a sign
    (``"+1,234"``, ``"-56"``, ``"0"``), as parameter counts are compared."""
    if x is None:
        return missing
    if digits is None:
        return f"0{unit}" if x == 0 else f"{int(x):+,}{unit}"
    return f"{x:+.{digits}f}{unit}"


def fmt_int(n: int | None, *, missing: str = "-") -> str:
    """A whole number with thousands separators: ``1234567`` -> ``"1,234,567"``."""
    return missing if n is None else f"{n:,}"


CountStyle = Literal["sig", "fixed", "plain"]


def fmt_count(x: Any, digits: int = 3, *, style: CountStyle = "sig", missing: str = "n/a") -> str:
    """A count with a k/M/G suffix (MACs, parameters, ops): ``1234567`` -> ``"1.23M"``.

    ``style`` says how the number before the suffix is written:

    * ``"sig"``: ``digits`` significant digits, trailing zeros dropped (``"1.2M"``, ``"24.3k"``);
    * ``"fixed"``: ``digits`` significant digits, trailing zeros kept (``"1.20M"``), so a column lines up;
    * ``"plain"``: the shortest exact form (``"1.5M"``, ``"250"``), as axis ticks want.

    Below 1000 a whole number is written whole and a fraction rounded to 3 decimals (``"sig"``, ``"fixed"``), or
    in its shortest form (``"plain"``)."""
    if x is None:
        return missing
    x = float(x)
    for i, (div, suffix) in enumerate(SI_SUFFIXES):
        if abs(x) >= div:
            m = _mantissa(x / div, digits, style)
            if abs(float(m)) >= 1000 and i > 0:  # 999,999 rounds to 1000k: write it as 1M
                div, suffix = SI_SUFFIXES[i - 1]
                m = _mantissa(x / div, digits, style)
            return m + suffix
    if style == "plain":
        return f"{x:g}"
    return str(int(x)) if x.is_integer() else str(round(x, 3))


def _mantissa(m: float, digits: int, style: CountStyle) -> str:
    if style == "plain":
        return f"{m:g}"
    if style == "sig":
        return f"{m:.{digits}g}"
    whole = 1 if m < 10 else 2 if m < 100 else 3  # |m| < 1000 after the suffix
    return f"{m:.{max(digits - whole, 0)}f}"


def fmt_ci(ci: Sequence[float] | None, digits: int = 1, signed: bool = True, *, missing: str = "n/a") -> str:
    """A confidence interval ``"[+0.18, +2.02]"`` (``signed=False``: ``"[70.10, 72.30]"``); ``missing``
    when there is none (fewer than 2 seeds)."""
    if not ci:
        return missing
    f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    return f"[{f.format(ci[0])}, {f.format(ci[1])}]"


def fmt_mean_ci(summary: Mapping[str, Any], digits: int = 2, bounds: tuple[float, float | None] = (0.0, 100.0)) -> str:
    """``"mean [lo, hi] (n=k)"`` of a :func:`poolstride.results.stats.summarize` dict; the interval is clipped
    to the range the quantity can take (``bounds``: a percentage by default, ``(0, None)`` for a ratio), so 3
    seeds with one outlier never print 119 %."""
    if summary.get("mean") is None:
        return "n/a"
    s = f"{summary['mean']:.{digits}f}"
    if summary.get("ci"):
        lo, hi = summary["ci"]
        lo = max(lo, bounds[0])
        hi = hi if bounds[1] is None else min(hi, bounds[1])
        s += " " + fmt_ci((lo, hi), digits, signed=False)
    return s + f" (n={summary['n']})"


def fmt_duration(seconds: float | None) -> str:
    """A duration in the unit a person reads best: ``"95 s"``, ``"12.5 min"``, ``"3.1 h"``, ``"2.5 days"``."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    for limit, div, unit in ((2 * 3600, 60, "min"), (2 * 86400, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} days"


def fmt_p(p: float | None, *, missing: str = "n/a") -> str:
    """A p-value with 3 decimals, ``"<0.001"`` below that."""
    if p is None:
        return missing
    return "<0.001" if p < 0.001 else f"{p:.3f}"
