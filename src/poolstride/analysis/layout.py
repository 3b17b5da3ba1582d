"""Where the spatial axes of a tensor are: the layout of a tensor derived from an N x C x H x W feature map.

A receptive field describes the units of a map along its H and W axes. Views (reshape, permute, flatten, a
channel shuffle, space-to-depth written with ``view``/``permute``...) move the elements of a map around without
changing any element's field, but they change what the dimensions mean. A :class:`Layout` says, for every
dimension of a derived tensor, which *factors* of the source map it is made of, outer to inner: ``(axis, size,
step)`` where ``axis`` is

* ``"H"`` or ``"W"``: index ``i`` of the factor is source position ``i * step`` along that axis;
* ``""``: anything else (batch, channels, a broadcast dimension);
* ``"?"``: a reshape regrouped spatial positions with other elements in a way that cannot be followed
  (``mixed_by`` names the node).

A tensor is again a *map* (:func:`to_map`) when dimensions 2 and 3 are each one spatial factor of a different
axis and every other factor of that axis lies in the channel dimension as its inner part: the identity, an H/W
transpose, and space-to-depth (an ``f x f`` block moved to the channels: kernel = stride = ``f``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .rf import RF, Axis

Factor = tuple[str, int, int]
Dim = tuple[Factor, ...]
SPATIAL = ("H", "W", "?")


def _clean(factors: Iterable[Factor]) -> Dim:
    """Drop size-1 factors; merge neighbours that are one factor split in two (same axis, contiguous steps) and
    neighbouring non-spatial factors."""
    out: list[Factor] = []
    for f in factors:
        a, n, st = f
        if n == 1:
            continue
        if out:
            pa, pn, pst = out[-1]
            if a == pa == "":
                out[-1] = ("", pn * n, 0)
                continue
            if a == pa and a in ("H", "W") and pst == st * n:
                out[-1] = (a, pn * n, st)
                continue
        out.append((a, n, st if a in ("H", "W") else 0))
    return tuple(out)


def _size(dim: Dim) -> int:
    n = 1
    for f in dim:
        n *= f[1]
    return n


@dataclass(frozen=True)
class Layout:
    dims: tuple[Dim, ...]
    hw: tuple[int, int]  # size of the source map along H and W
    mixed_by: str = ""  # the node whose reshape mixed spatial positions beyond tracking ("?" factors)

    @classmethod
    def canonical(cls, shape: Sequence[int]) -> Layout:
        n, c, h, w = shape
        return cls((_clean([("", n, 0)]), _clean([("", c, 0)]), _clean([("H", h, 1)]), _clean([("W", w, 1)])), (h, w))

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def mixed(self) -> bool:
        return any(f[0] == "?" for d in self.dims for f in d)

    def spatial_in(self, dims: Iterable[int]) -> bool:
        """Whether any of ``dims`` holds spatial positions."""
        return any(f[0] in SPATIAL for d in dims for f in self.dims[d])

    def all_spatial_in(self, dims: Iterable[int]) -> bool:
        """Whether every spatial factor lies in ``dims`` (e.g. a reduction over them sees the whole map)."""
        ds = set(dims)
        return not any(f[0] in SPATIAL for i, d in enumerate(self.dims) if i not in ds for f in d)

    def same(self, other: Layout) -> bool:
        """Whether elements at the same index are the same source positions (mixed layouts: only when the same
        node mixed them)."""
        if self.mixed or other.mixed:
            return self.dims == other.dims and self.mixed_by == other.mixed_by
        return self.dims == other.dims and self.hw == other.hw

    def scrambled(self, dims: Iterable[int], node: str) -> Layout:
        """The positions along ``dims`` were reordered (``roll``, ``flip``, a concatenation along them): where
        those dimensions hold spatial positions they become ``"?"``; the others are kept."""
        ds = set(dims)
        new = tuple(
            _clean([("?", _size(d), 0)]) if i in ds and any(f[0] in SPATIAL for f in d) else d
            for i, d in enumerate(self.dims)
        )
        mixed = new != self.dims
        return Layout(new, self.hw, (self.mixed_by or node) if mixed else self.mixed_by)

    # --- transformations -----------------------------------------------------------------------------------

    def regroup(self, out_shape: Sequence[int], node: str) -> Layout:
        """The layout after a reshape (``view``, ``reshape``, ``flatten``, ``unflatten``, ``squeeze``...): the
        row-major sequence of factors is cut into the new dimensions, splitting a factor where a cut falls inside
        it; a cut that cannot split a factor exactly mixes positions (``"?"``)."""
        flat = list(_clean(f for d in self.dims for f in d))
        dims: list[Dim] = []
        for size in out_shape:
            need = int(size)
            taken: list[Factor] = []
            while need > 1:
                if not flat:
                    return self.mixed_to(out_shape, node)
                a, n, st = flat[0]
                if need % n == 0:
                    taken.append(flat.pop(0))
                    need //= n
                elif n % need == 0:
                    inner = n // need
                    taken.append((a, need, st * inner))
                    flat[0] = (a, inner, st)
                    need = 1
                else:
                    return self.mixed_to(out_shape, node)
            dims.append(_clean(taken))
        if flat:
            return self.mixed_to(out_shape, node)
        return Layout(tuple(dims), self.hw, self.mixed_by)

    def mixed_to(self, out_shape: Sequence[int], node: str) -> Layout:
        """Every dimension of a tensor of ``out_shape`` mixes positions (``"?"``), if there were any to mix."""
        spatial = any(f[0] in SPATIAL for d in self.dims for f in d)
        return Layout(
            tuple(_clean([("?" if spatial else "", int(n), 0)]) for n in out_shape), self.hw, self.mixed_by or node
        )

    def permute(self, perm: Sequence[int]) -> Layout:
        return Layout(tuple(self.dims[p] for p in perm), self.hw, self.mixed_by)

    def resized(self, shape: Sequence[int]) -> Layout | None:
        """The same dimensions with new sizes where they hold no spatial positions (a channel slice, a linear
        layer over the channels...); ``None`` when a dimension with spatial positions changes size."""
        if len(shape) != self.ndim:
            return None
        dims: list[Dim] = []
        for d, n in zip(self.dims, shape, strict=True):
            if _size(d) == n:
                dims.append(d)
            elif any(f[0] in SPATIAL for f in d):
                return None
            else:
                dims.append(_clean([("", int(n), 0)]))
        return Layout(tuple(dims), self.hw, self.mixed_by)

    def without(self, drop: Iterable[int], keepdim: bool = False) -> Layout:
        ds = set(drop)
        if keepdim:
            return Layout(tuple(() if i in ds else d for i, d in enumerate(self.dims)), self.hw, self.mixed_by)
        return Layout(tuple(d for i, d in enumerate(self.dims) if i not in ds), self.hw, self.mixed_by)

    def inserted(self, at: int, size: int = 1) -> Layout:
        dims = list(self.dims)
        dims.insert(at, _clean([("", size, 0)]))
        return Layout(tuple(dims), self.hw, self.mixed_by)


def to_map(layout: Layout, rf: RF) -> RF | None:
    """The receptive field of the tensor read as an N x C x H x W map, or ``None`` when its dimensions 2 and 3
    are not the source's spatial axes (e.g. channels-last, H and W mixed, positions moved to the batch)."""
    if layout.ndim != 4 or layout.mixed or layout.spatial_in([0]):
        return None
    d2, d3 = layout.dims[2], layout.dims[3]
    if len(d2) > 1 or len(d3) > 1 or any(f[0] not in ("H", "W") for f in d2 + d3):
        return None
    a2 = d2[0][0] if d2 else None
    a3 = d3[0][0] if d3 else None
    if a2 is not None and a2 == a3:
        return None
    other = {"H": "W", "W": "H"}
    options: list[tuple[str, str]]
    if a2 is None and a3 is None:
        options = [("H", "W"), ("W", "H")]
    elif a2 is None:
        assert a3 is not None
        options = [(other[a3], a3)]
    elif a3 is None:
        options = [(a2, other[a2])]
    else:
        options = [(a2, a3)]
    results = {r for o in options if (r := _read(layout, rf, o)) is not None}
    if len(results) != 1 or len(options) != sum(1 for o in options if _read(layout, rf, o) is not None):
        return None  # ambiguous (a 1x1 map whose axes could be either) or not a map
    return results.pop()


def _read(layout: Layout, rf: RF, axes: tuple[str, str]) -> RF | None:
    out: list[Axis] = []
    for dim, a in zip((2, 3), axes, strict=True):
        here = layout.dims[dim]
        block = sorted((f for f in layout.dims[1] if f[0] == a), key=lambda f: f[2])
        p = 1
        for _, n, st in block:  # the channel part must be the contiguous inner block [0, p)
            if st != p:
                return None
            p *= n
        n_here, st_here = (here[0][1], here[0][2]) if here else (1, p)
        if st_here != p or n_here * p != layout.hw[0 if a == "H" else 1]:
            return None
        src = rf.h if a == "H" else rf.w
        out.append(src.stage(p, p, 0.0) if p > 1 else src)
    return RF(out[0], out[1], rf.glob, rf.context)


__all__ = ["Layout", "to_map"]
