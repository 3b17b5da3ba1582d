"""The study report: statistics, Pareto fronts, plots and a decision, as HTML, Markdown and JSON.

``write_report(study_dir)`` reads a study directory (``docs/study-format.md``) and writes
``STUDY_DIR/report/{index.html, report.md, report.json, figures/*.png|svg}``, replacing the previous report
in one step. Matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from .load import ReportError, Study, load_study

__all__ = ["ReportError", "Study", "build_report", "load_study", "write_report"]


def build_report(
    study_dir: str | Path,
    baseline: str | None = None,
    bootstrap: bool = False,
    *,
    test: str = "t",
    noninferiority_margin: float | None = None,
) -> dict[str, Any]:
    """The report's data (what ``report.json`` holds, without figures), for notebooks and scripts."""
    from .build import NONINFERIORITY_MARGIN, build

    margin = NONINFERIORITY_MARGIN if noninferiority_margin is None else noninferiority_margin
    data: dict[str, Any] = _finite(
        build(load_study(study_dir), baseline, bootstrap=bootstrap, test=test, noninferiority_margin=margin)
    )
    return data


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (from a hand-edited study.json, say) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _aliasing(study_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The per-site aliasing of each variant's first finished seed (poolstride.analysis.alias), when the study
    has checkpoints; (None, reason) when it cannot be measured. Never fails the report."""
    if not any(study_dir.glob("runs/*/seed*/checkpoint.pt")):
        return None, None
    try:
        from ..analysis.alias import study_alias

        res = study_alias(study_dir, max_seeds=1)
    except Exception as e:  # noqa: BLE001 - an extra section must not cost the report
        return None, f"aliasing section left out: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    left = [f"{r['variant']} seed {r['seed']}: {r['note']}" for r in res["runs"] if r.get("note")]
    return res, ("aliasing not measured for " + "; ".join(left)[:300]) if left else None


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace directory ``final`` by ``tmp`` (two renames; a reader never sees a half-written report)."""
    for _attempt in range(20):
        old = None
        if final.exists():
            # unique per call: threads of one process share a pid
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
            try:
                os.replace(final, old)
            except FileNotFoundError:
                old = None
            except OSError:
                time.sleep(0.05)
                continue
        try:
            os.replace(tmp, final)
        except OSError:
            # another writer put a report in between: retry (last writer wins)
            time.sleep(0.05)
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return
    raise ReportError(f"could not replace {final}: another process keeps writing it")


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

    ``baseline``: variant to compare with (default: study.json's baseline, else the first variant).
    ``bootstrap``: percentile-bootstrap CIs instead of t intervals. ``test``: ``"t"`` (paired t-test) or
    ``"wilcoxon"``. ``noninferiority_margin``: accuracy points a variant recommended for shift-consistency or
    cost may lose at most (the lower bound of its accuracy CI; default 1).
    Raises :class:`ReportError` (a ``PoolstrideError``) for an empty or foreign directory,
    mixed datasets, an unknown baseline. A study with one seed or a partly finished one gets a report that
    says so.
    """
    from . import html, markdown
    from .build import NONINFERIORITY_MARGIN, build

    study = load_study(study_dir)
    margin = NONINFERIORITY_MARGIN if noninferiority_margin is None else noninferiority_margin
    data = _finite(build(study, baseline, bootstrap=bootstrap, test=test, noninferiority_margin=margin))
    final = study.dir / "report"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=study.dir))
    except OSError as e:
        raise ReportError(f"cannot write a report into {study.dir}: {e.strerror or e}") from None
    try:
        if aliasing:
            data["aliasing"], note = _aliasing(study.dir)
            if note:
                data["notes"].append(note)
        if figures:
            from .plots import make_figures

            figs, notes = make_figures(study, data, tmp / "figures")
            data["figures"] = figs
            data["notes"].extend(notes)
        _write(tmp / "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
        _write(tmp / "report.md", markdown.render(data))
        _write(tmp / "index.html", html.render(data, tmp))
        os.chmod(tmp, 0o755)
        _swap_in(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "index.html"
