"""Receptive-field arithmetic (Araujo, Norris & Sim, Distill 2019), per spatial axis.

State of one tensor along one axis: ``r`` (receptive-field size in input pixels), ``j`` (jump: the distance
in input pixels between two neighbouring output units, i.e. the effective stride) and ``c`` (the centre, in
input pixel coordinates, of the receptive field of the *first* output unit; 0 = centre of input pixel 0).

A stage with kernel ``k`` (after dilation), stride ``s`` and padding-before ``p`` maps::

    r' = r + (k - 1) * j        c' = c + ((k - 1) / 2 - p) * j        j' = j * s

Merges (residual adds, concatenations) take the union of the branches' receptive fields, which equals the
max over paths when the branches are aligned; branches whose centres or jumps differ are flagged.
A *global* operator (global pooling, flatten + linear, spectral operators) sees the whole input: its
``r`` is reported as the input size and ``glob`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EPS = 1e-6


@dataclass(frozen=True)
class Axis:
    r: float = 1.0
    j: float = 1.0
    c: float = 0.0

    def stage(self, k: float, s: float, p: float) -> Axis:
        return Axis(self.r + (k - 1) * self.j, self.j * s, self.c + ((k - 1) / 2 - p) * self.j)

    @property
    def lo(self) -> float:
        return self.c - (self.r - 1) / 2

    @property
    def hi(self) -> float:
        return self.c + (self.r - 1) / 2


@dataclass(frozen=True)
class RF:
    """Receptive field of a tensor along H and W."""

    h: Axis = Axis()
    w: Axis = Axis()
    glob: bool = False  # every output unit sees the whole input
    context: bool = False  # a global (broadcast) input was mixed in, e.g. squeeze-and-excitation

    def stages(self, hs: Sequence[tuple[float, float, float]], ws: Sequence[tuple[float, float, float]]) -> RF:
        """Apply stages ``(k, s, p)`` along H (``hs``) and W (``ws``)."""
        if self.glob:
            return self
        h, w = self.h, self.w
        for k, s, p in hs:
            h = h.stage(k, s, p)
        for k, s, p in ws:
            w = w.stage(k, s, p)
        return RF(h, w, False, self.context)

    def make_global(self, in_hw: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)) -> RF:
        """Every output unit sees the whole input image of size ``in_hw``."""
        H, W = in_hw
        return RF(
            Axis(float(H), self.h.j * scale[0], (H - 1) / 2),
            Axis(float(W), self.w.j * scale[1], (W - 1) / 2),
            True,
            self.context,
        )

    @property
    def size(self) -> tuple[float, float]:
        return self.h.r, self.w.r

    @property
    def jump(self) -> tuple[float, float]:
        return self.h.j, self.w.j

    @property
    def center(self) -> tuple[float, float]:
        return self.h.c, self.w.c


def _union_axis(axes: Sequence[Axis]) -> Axis:
    lo = min(a.lo for a in axes)
    hi = max(a.hi for a in axes)
    return Axis(hi - lo + 1, max(a.j for a in axes), (lo + hi) / 2)


def merge(states: Sequence[RF], broadcast: Sequence[bool] | None = None) -> tuple[RF, str | None]:
    """Union of the branches' receptive fields; returns ``(rf, problem)`` where ``problem`` describes a
    misalignment (different centres or jumps) or is ``None``.

    ``broadcast[i]`` marks an input that is broadcast over space (a 1x1 map added to or multiplied with a
    larger one, e.g. squeeze-and-excitation): it does not change the spatial RF but sets ``context``.
    """
    broadcast = list(broadcast) if broadcast is not None else [False] * len(states)
    spatial = [s for s, b in zip(states, broadcast, strict=True) if not b]
    context = any(b for b in broadcast) or any(s.context for s in states)
    if not spatial:
        spatial = list(states)
    if any(s.glob for s in spatial):
        g = next(s for s in spatial if s.glob)
        return RF(g.h, g.w, True, context), None
    h = _union_axis([s.h for s in spatial])
    w = _union_axis([s.w for s in spatial])
    problem = None
    if len(spatial) > 1:
        ref = spatial[0]
        for s in spatial[1:]:
            dh, dw = s.h.c - ref.h.c, s.w.c - ref.w.c
            if abs(dh) > EPS or abs(dw) > EPS or abs(s.h.j - ref.h.j) > EPS or abs(s.w.j - ref.w.j) > EPS:
                problem = f"branch centres differ by ({_fmt(dh)}, {_fmt(dw)}) px" + (
                    f", jumps {_fmt(ref.h.j)} vs {_fmt(s.h.j)}" if abs(s.h.j - ref.h.j) > EPS else ""
                )
                break
    return RF(h, w, False, context), problem


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def chain(layers: Sequence[tuple[float, float, float]]) -> Axis:
    """The RF of a plain chain of ``(kernel, stride, padding)`` layers (a convenience for docs/tests)."""
    a = Axis()
    for k, s, p in layers:
        a = a.stage(k, s, p)
    return a


__all__ = ["RF", "Axis", "chain", "merge"]
