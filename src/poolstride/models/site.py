"""Sites: the places in a model where spatial resolution drops.

Built-in models wrap every downsampling place in a :class:`DownsampleSite` module, so that sites can be
listed (:func:`list_sites`) and their operator swapped (:meth:`DownsampleSite.set_op`) without knowing the
model's code. (Finding the sites of an arbitrary model is the job of ``poolstride.surgery``.)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import SiteError
from ..ops import build as build_op
from ..ops import get_info
from ..spec import OpSpec, parse

#: site kinds
POOL, CONV, STEM, SHORTCUT = "pool", "conv", "stem", "shortcut"


def make_site_op(
    spec: str | OpSpec, in_channels: int, out_channels: int, stride: int = 2, adapter_k: int = 3
) -> nn.Module:
    """Build ``spec`` for a site mapping ``in_channels`` -> ``out_channels`` at ``stride``.

    When the operator keeps channels but the site changes them (e.g. ``max`` where a ResNet has a strided
    3x3 conv 16 -> 32), the site becomes a stride-1 ``adapter_k`` conv (in -> out) followed by the
    operator: exactly the "stride 1 + pooling" alternative to a strided conv.
    """
    s = parse(spec)
    if in_channels == out_channels or get_info(s.name).cls.can_change_channels(s):
        return build_op(s, in_channels, out_channels, stride)
    conv = nn.Conv2d(in_channels, out_channels, adapter_k, 1, (adapter_k - 1) // 2, bias=False)
    return nn.Sequential(conv, build_op(s, out_channels, out_channels, stride))


class DownsampleSite(nn.Module):
    """A downsampling place in a built-in model: holds the operator module in ``.op``.

    ``kind`` is one of ``pool`` (a pooling layer, channels kept), ``conv`` (a strided conv on the main
    path), ``stem`` or ``shortcut`` (a residual projection; set by the model's shortcut option, not by
    ``downsample=``). ``label`` is the spec string (or a structural description such as ``A``).
    """

    def __init__(
        self,
        kind: str,
        in_channels: int,
        out_channels: int,
        stride: int,
        op: nn.Module | str | OpSpec,
        label: str | None = None,
        adapter_k: int = 3,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.adapter_k = adapter_k
        self.spec: OpSpec | None = None
        if isinstance(op, (str, OpSpec)):
            self.set_op(op)
        else:
            self.op = op
            self.label = label or type(op).__name__

    @property
    def swappable(self) -> bool:
        return self.kind in (POOL, CONV, STEM)

    def set_op(self, spec: str | OpSpec) -> None:
        """Replace the operator (a fresh, randomly initialised module)."""
        s = parse(spec)
        self.op = make_site_op(s, self.in_channels, self.out_channels, self.stride, self.adapter_k)
        self.spec = s
        self.label = str(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, {self.in_channels}->{self.out_channels}, stride={self.stride}, op={self.label}"


@dataclass(frozen=True)
class SiteInfo:
    """A site as a plain record (what ``poolstride models`` prints and ``--json`` emits)."""

    path: str
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    op: str
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def iter_sites(model: nn.Module) -> list[tuple[str, DownsampleSite]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DownsampleSite)]


def list_sites(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> list[SiteInfo]:
    """The sites of a built-in model, with their input/output sizes when ``input_size`` (C, H, W) is
    given (found by a probe forward pass on one zero image, in eval mode)."""
    sizes: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    sites = iter_sites(model)
    if input_size is not None:
        hooks = []
        for name, m in sites:

            def hook(mod, inp, out, name=name):
                sizes[name] = (tuple(inp[0].shape[-2:]), tuple(out.shape[-2:]))

            hooks.append(m.register_forward_hook(hook))
        was = model.training
        try:
            model.eval()
            p = next(model.parameters(), None)
            x = torch.zeros(1, *input_size, device=p.device if p is not None else None)
            with torch.no_grad():
                model(x)
        finally:
            model.train(was)
            for h in hooks:
                h.remove()
    return [
        SiteInfo(
            n,
            m.kind,
            m.in_channels,
            m.out_channels,
            m.stride,
            m.label,
            sizes.get(n, (None, None))[0],
            sizes.get(n, (None, None))[1],
        )
        for n, m in sites
    ]


def apply_downsample(
    model: nn.Module,
    downsample: str | OpSpec | None = None,
    overrides: Mapping[str, str | OpSpec] | None = None,
    kinds: tuple[str, ...] = (POOL, CONV),
) -> nn.Module:
    """Set ``downsample`` on every swappable site of the given kinds, then apply per-site ``overrides``
    (keys are site paths or glob patterns such as ``"layer2.*"``; an override may target any swappable
    site, the stem included). Raises :class:`SiteError` if an override matches no site."""
    sites = iter_sites(model)
    if downsample is not None:
        spec = parse(downsample)
        for _, m in sites:
            if m.kind in kinds:
                m.set_op(spec)
    for pattern, override in (overrides or {}).items():
        hits = [(n, m) for n, m in sites if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise SiteError(f"override {pattern!r} matches no site; sites are: {', '.join(n for n, _ in sites)}")
        for n, m in hits:
            if not m.swappable:
                raise SiteError(f"site {n!r} is a {m.kind} site; set it with the model's shortcut option")
            m.set_op(override)
    return model
