"""Pareto fronts of accuracy (higher is better) against a cost (lower is better)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# total ops = MACs + other ops (docs/conventions.md): the cost the decision uses, because fixed-filter operators
# (blur, spectral, DiffStride) do their arithmetic in "other ops" and would look free on MACs alone.
COST_AXES: dict[str, str] = {
    "total_ops": "total ops (MACs + other ops)",
    "macs": "MACs",
    "latency_ms": "latency (ms)",
    "params": "parameters",
}


def front(points: Sequence[tuple[str, float | None, float | None]]) -> list[str]:
    """Names of the non-dominated points of ``(name, cost, value)``.

    A point is dominated when another has cost <= and value >= with at least one strict. Points with a
    missing cost or value are left out. The result is ordered by increasing cost.
    """
    pts = [(n, c, v) for n, c, v in points if c is not None and v is not None]
    keep = []
    for name, c, v in pts:
        dominated = any((c2 <= c and v2 >= v) and (c2 < c or v2 > v) for n2, c2, v2 in pts if n2 != name)
        if not dominated:
            keep.append((c, -v, name))
    return [name for _, _, name in sorted(keep)]


def analyze(rows: Sequence[dict[str, Any]], value_key: str = "acc_mean") -> dict[str, dict[str, Any]]:
    """For each cost axis: the front, the variants left out for a missing cost, and who dominates whom.

    ``rows`` are dicts with ``name``, ``value_key`` and the cost keys of :data:`COST_AXES`.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, label in COST_AXES.items():
        pts = [(str(r["name"]), r.get(key), r.get(value_key)) for r in rows]
        f = front(pts)
        missing = [n for n, c, v in pts if c is None or v is None]
        dominated_by: dict[str, list[str]] = {}
        valid = [(n, c, v) for n, c, v in pts if c is not None and v is not None]
        for n, c, v in valid:
            if n in f:
                continue
            dominated_by[n] = [n2 for n2, c2, v2 in valid if n2 != n and c2 <= c and v2 >= v and (c2 < c or v2 > v)]
        out[key] = {"label": label, "front": f, "missing": missing, "dominated_by": dominated_by}
    return out
