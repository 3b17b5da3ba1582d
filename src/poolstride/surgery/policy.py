"""Policies: rules that map downsampling sites to new operators, plus selectors.

A policy string holds one or more rules separated by ``;``::

    rule   := SOURCE "->" TARGET
    SOURCE := pool | max | avg | conv | stem | shortcut

Targets (the right-hand side reuses the operator spec language, :func:`poolstride.spec.parse`):

==============================================  ==================================================
``pool->SPEC``  (also ``max->``, ``avg->``)     the pool becomes operator SPEC, e.g. ``conv(k=3)``
                                                (All-CNN, Springenberg et al. 2015), ``avg``,
                                                ``blur(base=max)``, ``s2d``
``pool->remove+stride-prev``                    the pool is removed and the conv before it takes
                                                its stride (Strided-CNN)
``max->max(s=1)+blur(size=N)``                  the pool runs at stride 1, then a binomial blur
                                                subsamples (MaxBlurPool, Zhang 2019); likewise
                                                ``avg->avg(s=1)+blur``, ``pool->pool(s=1)+blur``
``conv->conv(s=1)+act+blur(size=N)``            Zhang 2019's anti-aliased strided conv: the conv runs
                                                at stride 1 (same weights), the norm and activation
                                                after it run at full resolution, then the blur
                                                subsamples after the activation (conv -> BN -> ReLU
                                                -> BlurPool); ``+act+max``, ``+act+avg`` likewise.
                                                A site without a conv -> [norm] -> activation chain
                                                falls back to ``conv->conv(s=1)+POOL``, with a warning
``conv->conv(s=1)+POOL``                        the strided conv runs at stride 1 (same weights), then
                                                POOL downsamples right after it, before the norm:
                                                ``max``, ``avg``, ``max(k=3)``, ``blur(size=N)``; with
                                                ``blur`` this is a fixed anti-aliasing filter folded
                                                into the conv (a larger strided conv), not Zhang's
                                                layout
``conv->SPEC``                                  the conv becomes a fresh operator SPEC (``s2d``...)
``stem->...``                                   as ``conv->``, for the stem only
``shortcut->avg+1x1``                           ResNet-D: avg pool then the 1x1 conv at stride 1
                                                (also ``max+1x1``, ``blur+1x1``)
``shortcut->pool+concat`` / ``pool+identity``   FishNet style: max pool, channels widened by
                                                concatenated copies / zeros; the conv is dropped
==============================================  ==================================================

``conv->`` also matches the stem (a strided conv too); select it away with ``skip=stem``.
Selectors apply to every rule: ``skip`` (kinds or path globs), ``stages``, ``paths`` (globs to
include), ``exclude`` (globs), ``min_channels``. ``init="preserve"`` asks for function-preserving
initialisation where it is mathematically possible.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SpecError
from ..ops import get_info
from ..spec import OpSpec, parse
from .find import CONV, KINDS, POOL, SHORTCUT, STEM, Site

SOURCES = ("pool", "max", "avg", "conv", "stem", "shortcut")
SHORTCUT_TARGETS = ("avg+1x1", "max+1x1", "blur+1x1", "pool+concat", "pool+identity")
INITS = ("default", "preserve")

VALID_FORMS = (
    "pool->SPEC (e.g. pool->conv(k=3), All-CNN; also max->SPEC, avg->SPEC)",
    "pool->remove+stride-prev (Strided-CNN)",
    "max->max(s=1)+blur(size=N) (MaxBlurPool; also avg->avg(s=1)+blur, pool->pool(s=1)+blur)",
    "conv->conv(s=1)+act+blur(size=N) (Zhang 2019's anti-aliased conv: conv at stride 1, its norm and "
    "activation at full resolution, the blur after the activation; also +act+max, +act+avg)",
    "conv->conv(s=1)+POOL with POOL = max, avg, max(k=3), blur(size=N)... (stride 1, then POOL right after "
    "the conv, before its norm; +blur is a fixed filter folded into the conv, not Zhang's layout)",
    "conv->SPEC (e.g. conv->s2d)",
    "stem->... (as conv->, the stem only)",
    "shortcut->avg+1x1 (ResNet-D), shortcut->max+1x1, shortcut->blur+1x1",
    "shortcut->pool+concat, shortcut->pool+identity (FishNet style)",
)

#: rule actions
OP, REMOVE, STRIDE1, SHORT = "op", "remove+stride-prev", "stride1+", "shortcut"
#: the conv at stride 1, its norm + activation at full resolution, then ``spec`` after the activation (Zhang 2019)
AFTER_ACT = "stride1+act+"
#: the middle part of ``conv->conv(s=1)+act+POOL``
ACT = "act"


def _bad(msg: str) -> SpecError:
    return SpecError(f"{msg}; valid policy forms: " + "; ".join(VALID_FORMS))


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``action`` is ``op`` (replace by ``spec``), ``remove+stride-prev``, ``stride1+``
    (the original at stride 1, then ``spec`` downsamples right after it), ``stride1+act+`` (a conv at stride
    1, then ``spec`` downsamples after the activation that follows it: Zhang 2019) or ``shortcut`` (``form``
    in SHORTCUT_TARGETS)."""

    source: str
    action: str
    spec: OpSpec | None = None
    form: str = ""
    text: str = ""

    def matches(self, site: Site) -> bool:
        """Whether this rule's source covers ``site`` (before selectors)."""
        if self.source == "shortcut":
            return site.kind == SHORTCUT
        if self.source == "stem":
            return site.kind == STEM
        if self.source == "conv":
            return site.kind in (CONV, STEM)
        if site.kind != POOL:
            return False
        return self.source == "pool" or site.type == self.source

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Selector:
    """Which sites a policy may touch. Empty fields select everything."""

    skip: tuple[str, ...] = ()
    stages: tuple[int, ...] | None = None
    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_channels: int = 0

    def reasons(self, site: Site) -> list[str]:
        """Why ``site`` is excluded (empty list = selected)."""
        out = []
        for s in self.skip:
            if site.kind == s or _glob(site.path, s):
                out.append(f"skip={s}")
        if self.stages is not None and site.stage not in self.stages:
            out.append(f"stage {site.stage} not in {list(self.stages)}")
        if self.paths and not any(_glob(site.path, p) for p in self.paths):
            out.append("path not selected")
        for p in self.exclude:
            if _glob(site.path, p):
                out.append(f"exclude={p}")
        if self.min_channels and site.in_channels < self.min_channels:
            out.append(f"{site.in_channels} < min_channels={self.min_channels}")
        return out

    def unmatched(self, sites: Sequence[Site]) -> list[str]:
        """Warnings for every selector that matches no site (they are never silent)."""
        out = []
        for s in self.skip:
            if not any(site.kind == s or _glob(site.path, s) for site in sites):
                what = "kind" if s in KINDS else "path pattern"
                out.append(f"selector skip={s} ({what}) matches no site")
        if self.stages is not None:
            have = sorted({s.stage for s in sites if s.stage is not None})
            for st in self.stages:
                if st not in have:
                    out.append(f"selector stage={st} matches no site; stages are {have}")
        for p in self.paths:
            if not any(_glob(s.path, p) for s in sites):
                out.append(f"selector path={p} matches no site")
        for p in self.exclude:
            if not any(_glob(s.path, p) for s in sites):
                out.append(f"selector exclude={p} matches no site")
        if self.min_channels and sites and not any(s.in_channels >= self.min_channels for s in sites):
            out.append(f"selector min_channels={self.min_channels} excludes every site")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "skip": list(self.skip),
            "stages": None if self.stages is None else list(self.stages),
            "paths": list(self.paths),
            "exclude": list(self.exclude),
            "min_channels": self.min_channels,
        }


def _glob(path: str, pattern: str) -> bool:
    return path == pattern or fnmatch.fnmatchcase(path, pattern)


@dataclass(frozen=True)
class Policy:
    """A parsed policy: rules (the first rule that covers a site wins), selectors and the init mode."""

    rules: tuple[Rule, ...]
    select: Selector = field(default_factory=Selector)
    init: str = "default"

    @property
    def text(self) -> str:
        return "; ".join(r.text for r in self.rules)

    def __str__(self) -> str:
        return self.text

    def rule_for(self, site: Site) -> Rule | None:
        for r in self.rules:
            if r.matches(site):
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.text, "select": self.select.to_dict(), "init": self.init}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        sel = d.get("select") or {}
        return parse_policy(d["policy"], init=d.get("init", "default"), **sel)


_S1 = re.compile(r"^\s*([a-z]+)\s*\(\s*s\s*=\s*1\s*\)\s*$")


def _split_plus(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "+" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _post_spec(text: str) -> OpSpec:
    """The downsampler after a stride-1 original: ``blur(...)`` means the blur alone (base=avg) unless a
    base is given; it must keep channels."""
    t = text.strip()
    name = t.split("(", 1)[0].strip().lower()
    if name == "blur" and "base" not in t:
        t = "blur(base=avg" + ("," + t[t.index("(") + 1 :] if "(" in t else ")")
        if t.endswith(",)"):
            t = t[:-2] + ")"
    spec = parse(t)
    if get_info(spec.name).cls.can_change_channels(spec):
        raise _bad(f"{text!r} after a stride-1 original must keep channels (a pool or blur), not {spec.name}")
    return spec


def _parse_rule(text: str) -> Rule:
    try:
        return _parse_rule_inner(text)
    except SpecError as e:
        msg = str(e)
        if "valid policy forms" in msg:
            raise
        raise SpecError(f"policy rule {text.strip()!r}: {msg}") from None


def _parse_rule_inner(text: str) -> Rule:
    if "->" not in text:
        raise _bad(f"cannot parse policy rule {text!r}: expected SOURCE->TARGET")
    src, _, tgt = text.partition("->")
    src, tgt = src.strip().lower(), tgt.strip()
    canon = f"{src}->{tgt}"
    if src not in SOURCES:
        raise _bad(f"unknown policy source {src!r} (valid sources: {', '.join(SOURCES)})")
    if not tgt:
        raise _bad(f"policy rule {text!r} has no target")
    low = re.sub(r"\s+", "", tgt.lower())
    if src == "shortcut":
        if low not in SHORTCUT_TARGETS:
            raise _bad(f"unknown shortcut target {tgt!r} (valid: {', '.join(SHORTCUT_TARGETS)})")
        return Rule(src, SHORT, None, low, canon)
    if low in ("remove+stride-prev", "remove+strideprev", "remove"):
        if src not in ("pool", "max", "avg"):
            raise _bad(f"{canon}: only pools can be removed")
        return Rule(src, REMOVE, None, "remove+stride-prev", f"{src}->remove+stride-prev")
    parts = _split_plus(tgt)
    if len(parts) == 3:
        if re.sub(r"\s+", "", parts[1].lower()) != ACT:
            raise _bad(f"{canon}: the middle part of a three-part target must be {ACT!r} (the norm and activation "
                       f"after the conv), e.g. conv->conv(s=1)+act+blur(size=4)")  # fmt: skip
        if src not in ("conv", "stem"):
            raise _bad(f"{canon}: '+act+' applies to strided convs (conv->, stem->) only")
        m = _S1.match(parts[0].lower())
        if not m or m.group(1) != "conv":
            raise _bad(f"{canon}: the first part must be the conv at stride 1, conv(s=1)")
        spec = _post_spec(parts[2])
        return Rule(src, AFTER_ACT, spec, "", f"{src}->conv(s=1)+{ACT}+{spec}")
    if len(parts) == 2:
        m = _S1.match(parts[0].lower())
        if not m:
            raise _bad(f"{canon}: the first part of a two-part target must be the original at stride 1, "
                       f"e.g. {'conv' if src in ('conv', 'stem') else src}(s=1)")  # fmt: skip
        want = {"conv": "conv", "stem": "conv"}.get(src, src)
        if m.group(1) != want:
            raise _bad(f"{canon}: a {src} site runs at stride 1 as {want}(s=1), not {m.group(1)}(s=1)")
        spec = _post_spec(parts[1])
        return Rule(src, STRIDE1, spec, "", f"{src}->{want}(s=1)+{spec}")
    if len(parts) > 2:
        raise _bad(f"{canon}: too many '+' parts")
    spec = parse(tgt)
    return Rule(src, OP, spec, "", f"{src}->{spec}")


def _as_tuple(v: str | Iterable[str] | None) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(str(x).strip() for x in v if str(x).strip())


def parse_policy(
    text: str | Policy,
    *,
    skip: str | Iterable[str] | None = None,
    stages: int | str | Iterable[int] | None = None,
    paths: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    min_channels: int = 0,
    init: str = "default",
) -> Policy:
    """Parse a policy string (rules separated by ``;``) and selectors into a :class:`Policy`.

    >>> str(parse_policy("pool->conv(k=3)"))
    'pool->conv'
    >>> parse_policy("conv->conv(s=1)+blur(size=4)", skip="stem").rules[0].spec.kwargs["base"]
    'avg'

    Raises :class:`SpecError` listing the valid forms for a bad policy.
    """
    if isinstance(text, Policy):
        if skip is stages is paths is exclude is None and not min_channels and init == "default":
            return text
        text = text.text
    if not isinstance(text, str) or not text.strip():
        raise _bad("empty policy")
    rules = tuple(_parse_rule(t) for t in text.split(";") if t.strip())
    if not rules:
        raise _bad("empty policy")
    if init not in INITS:
        raise SpecError(f"init={init!r} is not valid; expected one of {', '.join(INITS)}")
    if isinstance(stages, int):
        stages = (stages,)
    try:
        st = (
            None
            if stages is None
            else tuple(int(s) for s in (stages.split(",") if isinstance(stages, str) else stages))
        )
        mc = int(min_channels)
    except (TypeError, ValueError):
        raise SpecError(f"bad selector: stages={stages!r}, min_channels={min_channels!r}; expected integers") from None
    if mc < 0:
        raise SpecError(f"min_channels={mc} must be >= 0")
    sel = Selector(_as_tuple(skip), st, _as_tuple(paths), _as_tuple(exclude), mc)
    return Policy(rules, sel, init)


__all__ = ["AFTER_ACT", "INITS", "SOURCES", "VALID_FORMS", "Policy", "Rule", "Selector", "parse_policy"]
