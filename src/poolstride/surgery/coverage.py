"""Coverage sweep: convert many models under the main policies and say, per (model, policy), whether it
converted, matched no site, converted only partly, or is unsupported - always with the reason.

Used by the torchvision/timm coverage tests and by ``python -m poolstride.surgery.coverage`` (which
prints the table that docs/surgery.md quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import PoolstrideError
from ..extras import import_optional
from .convert import convert_detailed
from .find import analyze

#: the policies of DESIGN.md that the coverage sweep runs
MAIN_POLICIES = (
    "pool->conv(k=3)",
    "pool->remove+stride-prev",
    "conv->conv(s=1)+max",
    "conv->conv(s=1)+blur(size=4)",
    "max->max(s=1)+blur",
    "shortcut->avg+1x1",
    "shortcut->pool+concat",
)


@dataclass
class CoverageRow:
    model: str
    policy: str
    status: str  # converted | partial | no site | unsupported
    changed: int = 0
    sites: int = 0
    input_size: int = 0
    reason: str = ""
    seconds: float = 0.0
    model_out: tuple[int, ...] | None = None
    converted_out: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _short(msg: str, n: int = 240) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def check_coverage(
    name: str,
    model: nn.Module,
    policies: Sequence[str] = MAIN_POLICIES,
    sizes: Iterable[int] = (64, 96, 224),
) -> list[CoverageRow]:
    """Convert ``model`` under each policy at the smallest of ``sizes`` where its probe runs."""
    model.eval()
    ana, size, why = None, 0, ""
    for s in sizes:
        try:
            ana = analyze(model, (3, s, s))
            size = s
            break
        except PoolstrideError as e:
            why = str(e)
    if ana is None:
        return [CoverageRow(name, p, "unsupported", reason=_short(why)) for p in policies]
    rows = []
    for p in policies:
        t = time.perf_counter()
        row = CoverageRow(name, p, "unsupported", sites=len(ana.sites), input_size=size)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = convert_detailed(model, p, (3, size, size), strict=False, analysis=ana)
            bad = [r[len("unsupported: ") :] for _, r in c.skipped if r.startswith("unsupported")]
            row.changed = len(c.changes)
            if c.changes and not bad:
                row.status = "converted"
            elif c.changes:
                row.status, row.reason = "partial", _short("; ".join(bad))
            elif bad:
                row.status, row.reason = "unsupported", _short("; ".join(bad))
            else:
                row.status, row.reason = "no site", _short("; ".join(c.warnings) or "no site matches")
            if c.changes and ana.output is not None:
                x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
                with torch.no_grad():
                    row.model_out = tuple(model(x).shape)
                    c.model.eval()
                    row.converted_out = tuple(c.model(x).shape)
                if row.model_out != row.converted_out:  # pragma: no cover - the probe check catches this first
                    row.status, row.reason = "unsupported", f"output {row.converted_out} != {row.model_out}"
        except PoolstrideError as e:
            row.reason = _short(str(e))
        row.seconds = round(time.perf_counter() - t, 2)
        rows.append(row)
    return rows


def sweep(
    builders: dict[str, Callable[[], nn.Module]], policies: Sequence[str] = MAIN_POLICIES, **kw
) -> list[CoverageRow]:
    rows: list[CoverageRow] = []
    for name, build in builders.items():
        torch.manual_seed(0)
        try:
            model = build()
        except Exception as e:  # noqa: BLE001 - a constructor that fails is reported, not fatal
            rows += [CoverageRow(name, p, "unsupported", reason=_short(f"constructor failed: {e}")) for p in policies]
            continue
        rows += check_coverage(name, model, policies, **kw)
        del model
    return rows


def torchvision_builders(names: Iterable[str] | None = None) -> dict[str, Callable[[], nn.Module]]:
    tvm = import_optional("torchvision.models", "the coverage sweep")
    names = list(names) if names is not None else tvm.list_models(module=tvm)

    def make(n: str) -> Callable[[], nn.Module]:
        kw = {"aux_logits": False, "init_weights": False} if n in ("googlenet", "inception_v3") else {}
        return lambda: tvm.get_model(n, weights=None, **kw)

    return {f"torchvision:{n}": make(n) for n in names}


def timm_builders(names: Iterable[str]) -> dict[str, Callable[[], nn.Module]]:
    timm = import_optional("timm", "the coverage sweep")

    def make(n: str) -> Callable[[], nn.Module]:
        return lambda: timm.create_model(n, pretrained=False)

    return {f"timm:{n}": make(n) for n in names}


def markdown(rows: Sequence[CoverageRow]) -> str:
    pols = list(dict.fromkeys(r.policy for r in rows))
    models = list(dict.fromkeys(r.model for r in rows))
    by = {(r.model, r.policy): r for r in rows}
    abbrev = {"converted": "ok", "partial": "partial", "no site": "-", "unsupported": "NO"}
    out = ["| model | input | " + " | ".join(f"`{p}`" for p in pols) + " |", "|---|---|" + "---|" * len(pols)]
    notes = []
    for m in models:
        cells = []
        for p in pols:
            r = by[(m, p)]
            cell = abbrev[r.status] + (f" ({r.changed})" if r.changed else "")
            if r.status in ("partial", "unsupported"):
                notes.append(f"- {m}, `{p}`: {r.reason}")
            cells.append(cell)
        size = next((by[(m, p)].input_size for p in pols if by[(m, p)].input_size), 0)
        out.append(f"| {m} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(out + ([""] + notes if notes else [])) + "\n"


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - a script
    ap = argparse.ArgumentParser(description="poolstride surgery coverage sweep")
    ap.add_argument("models", nargs="*", help="torchvision names (default: every classification model)")
    ap.add_argument("--timm", nargs="*", default=[], help="timm model names")
    ap.add_argument("--json", help="write rows here")
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    builders = torchvision_builders(a.models or None) if a.models or not a.timm else {}
    builders.update(timm_builders(a.timm))
    rows = []
    for name, b in builders.items():
        t = time.perf_counter()
        r = sweep({name: b})
        rows += r
        print(f"{name}: " + ", ".join(f"{x.status}" for x in r) + f" [{time.perf_counter() - t:.1f}s]", file=sys.stderr)
        if a.json:
            with open(a.json, "w") as f:
                json.dump([x.to_dict() for x in rows], f, indent=1)
    print(markdown(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
