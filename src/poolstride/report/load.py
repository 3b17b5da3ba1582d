"""Read a study directory (``docs/study-format.md``, schema ``poolstride.study/1``) into plain objects.

The result files are the source of truth: ``summary.json`` may lag behind a running study, so it is not
read. A run is done when its ``result.json`` exists; a study is complete when every (variant, seed) of
``study.json`` has one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PoolstrideError
from ..results import schema
from ..results.io import ResultFileError, read_json
from ..results.study import StudyFileError, read_study


class ReportError(PoolstrideError, ValueError):
    """The study directory cannot be reported on (missing, foreign, empty, mixed datasets, bad baseline...)."""


@dataclass
class Run:
    """One finished (ok or failed) run: its ``result.json`` and where it lives."""

    variant: str
    seed: int
    status: str
    result: dict[str, Any]
    dir: Path
    _metrics: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, key: str) -> float | None:
        """A finite numeric field of the result, else None."""
        return _num(self.result.get(key))

    def metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records of ``metrics.jsonl`` (unreadable lines, e.g. a line being written, skipped)."""
        if self._metrics is None:
            rows: list[dict[str, Any]] = []
            path = self.dir / "metrics.jsonl"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            for line in text.splitlines():
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    rows.append(obj)
            self._metrics = rows
        return self._metrics


@dataclass
class Study:
    """A study directory as the report sees it."""

    dir: Path
    meta: dict[str, Any]
    variants: list[str]
    seeds: list[int]
    runs: list[Run]
    dataset: str
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.dir.name)

    @property
    def runs_total(self) -> int:
        return len(self.variants) * len(self.seeds)

    @property
    def runs_done(self) -> int:
        return len(self.runs)

    @property
    def complete(self) -> bool:
        done = {(r.variant, r.seed) for r in self.runs}
        return all((v, s) in done for v in self.variants for s in self.seeds)

    def missing(self) -> list[tuple[str, int]]:
        done = {(r.variant, r.seed) for r in self.runs}
        return [(v, s) for v in self.variants for s in self.seeds if (v, s) not in done]

    def ok_runs(self, variant: str) -> list[Run]:
        return sorted((r for r in self.runs if r.variant == variant and r.ok), key=lambda r: r.seed)

    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """study.json's record of each variant listed there as a dict, by name, in study order."""
        out: dict[str, dict[str, Any]] = {}
        for v in self.meta.get("variants") or []:
            if isinstance(v, dict) and v.get("name") is not None:
                out.setdefault(str(v["name"]), v)
        return out

    @property
    def sites(self) -> dict[str, dict[str, Any]]:
        """The site record of each per-site variant (``compare --per-site``), by name, in study order; a
        variant without one (an ordinary variant, the baseline) is absent."""
        return {
            name: rec["site"]
            for name, rec in self.records.items()
            if isinstance(rec.get("site"), dict) and rec["site"].get("path") is not None
        }


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def load_study(study_dir: str | Path) -> Study:
    """Read ``study_dir``; raise :class:`ReportError` with a one-line reason when it cannot be reported on."""
    d = Path(study_dir)
    if not d.exists():
        raise ReportError(f"no such study directory: {d}")
    if not d.is_dir():
        raise ReportError(f"not a directory: {d}")
    study_file = d / "study.json"
    if not study_file.is_file():
        if not any(d.iterdir()):
            raise ReportError(f"{d} is empty: not a poolstride study directory (`poolstride compare` creates one)")
        raise ReportError(
            f"{d} is not a poolstride study directory: it has no study.json (`poolstride compare` creates one)"
        )
    try:
        meta = read_study(d)
    except StudyFileError as e:
        raise ReportError(str(e) if e.kind == "schema" else f"cannot read {study_file}: {e.detail}") from None
    variants, seeds, slug_to_name = _listed(meta)
    runs, notes = _read_runs(d, variants, seeds, slug_to_name)
    if not variants:
        raise ReportError(f"{study_file} lists no variants")
    if not runs:
        total = len(variants) * max(len(seeds), 1)
        raise ReportError(f"{d}: no finished runs yet (0 of {total}); nothing to report")
    dataset = _one_dataset(d, meta, runs)
    ok = [r for r in runs if r.ok]
    if not ok:
        reasons = "; ".join(f"{r.variant} seed {r.seed}: {r.result.get('reason') or 'no reason'}" for r in runs[:3])
        raise ReportError(f"{d}: all {len(runs)} finished runs failed ({reasons})")
    seeds.sort()
    return Study(dir=d, meta=meta, variants=variants, seeds=seeds, runs=runs, dataset=dataset, notes=notes)


def _listed(meta: dict[str, Any]) -> tuple[list[str], list[int], dict[str, str]]:
    """The variant names and seeds study.json lists, and the variant name of each run-directory slug."""
    variants_meta = meta.get("variants") or []
    variants: list[str] = []
    slug_to_name: dict[str, str] = {}
    for v in variants_meta:
        if isinstance(v, dict) and v.get("name") is not None:
            name = str(v["name"])
            variants.append(name)
            slug_to_name[str(v.get("slug") or name)] = name
        elif isinstance(v, str):
            variants.append(v)
            slug_to_name[v] = v
    seeds: list[int] = []
    for s in meta.get("seeds") or []:
        try:
            seeds.append(int(s))
        except (TypeError, ValueError):
            continue
    return variants, seeds, slug_to_name


def _read_runs(
    d: Path, variants: list[str], seeds: list[int], slug_to_name: dict[str, str]
) -> tuple[list[Run], list[str]]:
    """Every readable result file of ``d/runs`` (variants and seeds found there but not listed are added to
    ``variants`` and ``seeds``), and notes on what was skipped or unlisted."""
    notes: list[str] = []
    runs: list[Run] = []
    runs_dir = d / "runs"
    result_files = sorted(runs_dir.glob("*/seed*/result.json")) if runs_dir.is_dir() else []
    for rf in result_files:
        try:
            res = read_json(rf, "run result")
        except ResultFileError:
            notes.append(f"unreadable result file skipped: {rf.relative_to(d)}")
            continue
        if not isinstance(res, dict) or res.get("schema", schema.RUN) != schema.RUN:
            notes.append(f"result file with an unknown schema skipped: {rf.relative_to(d)}")
            continue
        slug = rf.parent.parent.name
        name = str(res.get("variant") or slug_to_name.get(slug, slug))
        try:
            seed = int(res.get("seed", rf.parent.name.removeprefix("seed")))
        except (TypeError, ValueError):
            notes.append(f"result file without a seed skipped: {rf.relative_to(d)}")
            continue
        status = str(res.get("status") or "ok")
        runs.append(Run(variant=name, seed=seed, status=status, result=res, dir=rf.parent))
        if name not in variants:
            variants.append(name)
            notes.append(f"variant {name!r} has runs but is not listed in study.json")
        if seed not in seeds:
            seeds.append(seed)
    return runs, notes


def _one_dataset(d: Path, meta: dict[str, Any], runs: list[Run]) -> str:
    """The study's dataset. One study = one dataset: refuse to mix numbers measured on different data."""
    counts: dict[str, int] = {}
    for r in runs:
        ds = r.result.get("dataset")
        if ds is not None:
            counts[str(ds)] = counts.get(str(ds), 0) + 1
    declared = meta.get("dataset")
    names = set(counts) | ({str(declared)} if declared is not None else set())
    if len(names) > 1:
        parts = ", ".join(f"{k} ({counts.get(k, 0)} runs)" for k in sorted(names))
        raise ReportError(
            f"mixed datasets in one study directory {d}: {parts}"
            + (f"; study.json says {declared}" if declared is not None else "")
            + "; a study is one dataset, use one directory per dataset"
        )
    return next(iter(names)) if names else "?"
