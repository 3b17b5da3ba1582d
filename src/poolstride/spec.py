"""The spec language: ``name(arg=value,...)`` strings such as ``blur(base=max,size=4)``, ``conv(k=3)``,
``lp(p=3)`` or plain ``max``.

A spec is parsed once, at the entry point, into a frozen :class:`OpSpec` whose arguments are
validated against the operator's declared :class:`Param` schema (type, range, choices) and completed
with defaults. ``str(spec)`` prints the canonical form (non-default arguments only, sorted by the
schema's order), and ``parse(str(spec)) == spec`` always holds.

Grammar::

    spec   := NAME [ "(" [ arg ("," arg)* ] ")" ]
    arg    := KEY "=" VALUE | VALUE          # a bare VALUE fills the first parameter
    VALUE  := int | float | true | false | word
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import SpecError

Value = int | float | bool | str

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_SPEC = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_\-]*)\s*(?:\((.*)\))?\s*$", re.S)


@dataclass(frozen=True)
class Param:
    """One argument of an operator: its type, default and allowed values."""

    name: str
    type: type
    default: Value
    doc: str = ""
    choices: tuple[Value, ...] | None = None
    min: float | None = None
    max: float | None = None

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(_fmt(c) for c in self.choices)
        t = {int: "an integer", float: "a number", bool: "true or false", str: "a word"}[self.type]
        lo = "" if self.min is None else f">= {_fmt(self.min)}"
        hi = "" if self.max is None else f"<= {_fmt(self.max)}"
        rng = " and ".join(x for x in (lo, hi) if x)
        return f"{t}{' ' + rng if rng else ''}"

    def coerce(self, op: str, raw: Value) -> Value:
        """Turn a raw token (string from the parser or a Python value) into a checked value."""
        v: Value
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    v = raw
                elif str(raw).lower() in ("true", "1", "yes", "on"):
                    v = True
                elif str(raw).lower() in ("false", "0", "no", "off"):
                    v = False
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, bool):
                    raise ValueError
                f = float(raw)
                if not f.is_integer():
                    raise ValueError
                v = int(f)
            elif self.type is float:
                if isinstance(raw, bool):
                    raise ValueError
                v = float(raw)
                if not math.isfinite(v):
                    raise ValueError
            else:
                v = str(raw).lower()
        except (TypeError, ValueError):
            raise SpecError(f"{op}: {self.name}={raw!r} is not valid; expected {self.allowed()}") from None
        if self.choices is not None and v not in self.choices:
            raise SpecError(f"{op}: {self.name}={_fmt(v)} is not valid; expected {self.allowed()}")
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and (self.min is not None and v < self.min or self.max is not None and v > self.max)
        ):
            raise SpecError(f"{op}: {self.name}={_fmt(v)} is out of range; expected {self.allowed()}")
        return v


def _fmt(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v))
    return str(v)


@dataclass(frozen=True)
class OpSpec:
    """A parsed, validated operator spec: the operator name and *all* its arguments (defaults filled)."""

    name: str
    args: tuple[tuple[str, Value], ...] = field(default=())

    def __getitem__(self, key: str) -> Value:
        return dict(self.args)[key]

    def get(self, key: str, default: Value | None = None) -> Value | None:
        return dict(self.args).get(key, default)

    @property
    def kwargs(self) -> dict[str, Value]:
        return dict(self.args)

    def replace(self, **changes: Value) -> OpSpec:
        """A new spec with some arguments changed (validated again)."""
        return make(self.name, **{**self.kwargs, **changes})

    def __str__(self) -> str:
        schema = _schema(self.name)
        defaults = {p.name: p.default for p in schema}
        shown = [f"{k}={_fmt(v)}" for k, v in self.args if defaults.get(k) != v]
        return f"{self.name}({','.join(shown)})" if shown else self.name


# The schema of every operator, in registration order. The operator registry (``ops.registry.register``)
# declares each operator's parameters here, so this module depends on no operator and no torch.
_SCHEMAS: dict[str, tuple[Param, ...]] = {}


def declare(name: str, params: Sequence[Param]) -> None:
    """Declare operator ``name`` and its parameter schema (called by the operator registry)."""
    _SCHEMAS[name] = tuple(params)


def _schema(name: str) -> Sequence[Param]:
    try:
        return _SCHEMAS[name]
    except KeyError:
        raise _unknown(name) from None


def _unknown(name: str) -> SpecError:
    if not _SCHEMAS:  # poolstride.spec used on its own: the operators register on import of poolstride.ops
        return SpecError(f"unknown operator {name!r}: no operator is registered yet; import poolstride.ops first")
    return SpecError(f"unknown operator {name!r}; valid operators: {', '.join(_known_names())}")


def _known_names() -> list[str]:
    return list(_SCHEMAS)


def make(name: str, /, **kwargs: Value) -> OpSpec:
    """Build a validated :class:`OpSpec` from Python values."""
    name = name.strip().lower()
    schema = list(_schema(name))  # an unknown name: SpecError
    by_name = {p.name: p for p in schema}
    values: dict[str, Value] = {}
    for key, raw in kwargs.items():
        k = key.strip().lower()
        if k not in by_name:
            valid = ", ".join(p.name for p in schema) or "none"
            raise SpecError(f"{name}: unknown argument {k!r}; valid arguments: {valid}")
        p = by_name[k]
        if p.name in values:
            raise SpecError(f"{name}: argument {p.name!r} given twice")
        values[p.name] = p.coerce(name, raw)
    return OpSpec(name, tuple((p.name, values.get(p.name, p.default)) for p in schema))


def _split_args(op: str, body: str) -> list[str]:
    if any(c in body for c in "()[]{}"):
        raise SpecError(f"{op}: nested brackets are not allowed in arguments: {body!r}")
    parts = [a.strip() for a in body.split(",")]
    if parts == [""]:
        return []
    if any(a == "" for a in parts):
        raise SpecError(f"{op}: empty argument in {body!r}")
    return parts


def parse(text: str | OpSpec) -> OpSpec:
    """Parse a spec string such as ``"blur(base=max,size=4)"`` into a validated :class:`OpSpec`.

    Raises :class:`SpecError` with a message that lists the valid names, arguments or range.
    """
    if isinstance(text, OpSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"empty operator spec; valid operators: {', '.join(_known_names())}")
    m = _SPEC.match(text)
    if not m:
        raise SpecError(f"cannot parse spec {text!r}; expected NAME or NAME(key=value,...), e.g. conv(k=3)")
    name, body = m.group(1).lower(), m.group(2)
    if not _NAME.match(name):
        raise SpecError(f"bad operator name {name!r}")
    schema = list(_schema(name))  # an unknown name: SpecError
    kwargs: dict[str, Value] = {}
    for i, arg in enumerate(_split_args(name, body or "")):
        if "=" in arg:
            k, _, v = arg.partition("=")
            k, v = k.strip(), v.strip()
            if not k or not v:
                raise SpecError(f"{name}: malformed argument {arg!r}; expected key=value")
        elif i == 0 and schema:
            k, v = schema[0].name, arg
        else:
            raise SpecError(f"{name}: positional argument {arg!r} must come first; use key=value")
        if k.lower() in kwargs:
            raise SpecError(f"{name}: argument {k!r} given twice")
        kwargs[k.lower()] = v
    return make(name, **kwargs)


def parse_many(text: str | Sequence[str]) -> list[OpSpec]:
    """Parse a comma-separated list of specs (commas inside brackets do not split):
    ``"max,conv(k=3),blur(base=max,size=3)"``."""
    if not isinstance(text, str):
        return [parse(t) for t in text]
    out: list[str] = []
    depth, cur = 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"unbalanced ')' in {text!r}")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise SpecError(f"unbalanced '(' in {text!r}")
    out.append(cur)
    if any(not s.strip() for s in out):
        raise SpecError(f"empty entry in spec list {text!r}")
    return [parse(s) for s in out]


def split_list(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside (round or square) brackets: ``"max,blur(base=max,size=3)"`` -> two entries."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if depth < 0:
            raise SpecError(f"unbalanced bracket in {text!r}")
        if ch == sep and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if depth:
        raise SpecError(f"unbalanced bracket in {text!r}")
    out.append(cur.strip())
    if any(not e for e in out):
        raise SpecError(f"empty entry in list {text!r}")
    return out
