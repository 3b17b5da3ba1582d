"""The study report: statistics, Pareto fronts, plots and a decision, as HTML, Markdown and JSON.

``write_report(study_dir)`` reads a study directory (``docs/study-format.md``) and writes
``STUDY_DIR/report/{index.html, report.md, report.json, figures/*.png|svg}``, replacing the previous report
in one step. Matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..alias import study_alias
from ..results.io import clean_json, make_temp_dir, replace_dir
from . import html, markdown
from .build import NONINFERIORITY_MARGIN, ReportOptions, build
from .load import ReportError, Study, load_study
from .plots import make_figures

__all__ = [
    "ReportError",
    "ReportOptions",
    "Study",
    "WrittenReport",
    "build_report",
    "load_study",
    "make_report",
    "write_report",
]


@dataclass(frozen=True)
class WrittenReport:
    """A report written by :func:`make_report`: the path of its ``index.html`` and what ``report.json`` holds."""

    index: Path
    data: dict[str, Any]


def build_report(
    study_dir: str | Path,
    baseline: str | None = None,
    bootstrap: bool = False,
    *,
    test: str = "t",
    noninferiority_margin: float | None = None,
) -> dict[str, Any]:
    """The report's data (what ``report.json`` holds, without figures), for notebooks and scripts."""
    options = ReportOptions(
        baseline=baseline, bootstrap=bootstrap, test=test, noninferiority_margin=noninferiority_margin
    )
    return _data(load_study(study_dir), options)


def _data(study: Study, options: ReportOptions) -> dict[str, Any]:
    """:func:`~poolstride.report.build.build` with ``options``, every non-finite float (from a hand-edited
    study.json, say) replaced by None."""
    margin = NONINFERIORITY_MARGIN if options.noninferiority_margin is None else options.noninferiority_margin
    data = build(study, options.baseline, bootstrap=options.bootstrap, test=options.test, noninferiority_margin=margin)
    return dict(clean_json(data))


def _aliasing(study_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The per-site aliasing of each variant's first finished seed (poolstride.alias), when the study
    has checkpoints; (None, reason) when it cannot be measured. Never fails the report."""
    if not any(study_dir.glob("runs/*/seed*/checkpoint.pt")):
        return None, None
    try:
        res = study_alias(study_dir, max_seeds=1)
    except Exception as e:  # noqa: BLE001 - an extra section must not cost the report
        return None, f"aliasing section left out: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    left = [f"{r['variant']} seed {r['seed']}: {r['note']}" for r in res["runs"] if r.get("note")]
    return res, ("aliasing not measured for " + "; ".join(left)[:300]) if left else None


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_report(
    study_dir: str | Path,
    baseline: str | None = None,
    bootstrap: bool = False,
    *,
    test: str = "t",
    figures: bool = True,
    noninferiority_margin: float | None = None,
    aliasing: bool = True,
) -> Path:
    """Write ``STUDY_DIR/report/`` atomically and return the path of its ``index.html``.

    The options are those of :class:`~poolstride.report.build.ReportOptions`; :func:`make_report` takes them
    as one and returns the report's data too. Raises :class:`ReportError` (a ``PoolstrideError``) for an empty
    or foreign directory, mixed datasets, an unknown baseline. A study with one seed or a partly finished one
    gets a report that says so.
    """
    options = ReportOptions(baseline, bootstrap, test, noninferiority_margin, figures, aliasing)  # its field order
    return make_report(study_dir, options).index


def make_report(study_dir: str | Path, options: ReportOptions | None = None) -> WrittenReport:
    """Write ``STUDY_DIR/report/`` atomically (:func:`write_report`) and return where, with its data."""
    options = options or ReportOptions()
    study = load_study(study_dir)
    data = _data(study, options)
    final = study.dir / "report"
    try:
        tmp = make_temp_dir(final, prefix=".report.tmp-")
    except OSError as e:
        raise ReportError(f"cannot write a report into {study.dir}: {e.strerror or e}") from None
    try:
        if options.aliasing:
            data["aliasing"], note = _aliasing(study.dir)
            if note:
                data["notes"].append(note)
        if options.figures:
            figs, notes = make_figures(study, data, tmp / "figures")
            data["figures"] = figs
            data["notes"].extend(notes)
        _write(tmp / "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
        _write(tmp / "report.md", markdown.render(data))
        _write(tmp / "index.html", html.render(data, tmp))
        os.chmod(tmp, 0o755)
        if not replace_dir(tmp, final):
            raise ReportError(f"could not replace {final}: another process keeps writing it")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return WrittenReport(final / "index.html", data)
