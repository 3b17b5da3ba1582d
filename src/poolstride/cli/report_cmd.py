"""``poolstride report``: statistics, plots and a decision for a study directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..report import ReportError, ReportOptions, make_report, tables
from ..study import status as study_status
from .common import app, console, print_json
from .common import examples as _examples


@app.command(
    "report",
    epilog=_examples(
        [
            "poolstride report runs/tiny-textures-demo-0212e1f1",
            "poolstride report STUDY_DIR --baseline max --bootstrap --json > report.json",
        ]
    ),
)
def report_command(
    study_dir: str = typer.Argument(
        ..., metavar="STUDY_DIR", help="A study directory written by `poolstride compare`."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Variant to compare with (default: the study's baseline, else the first variant)."
    ),
    bootstrap: bool = typer.Option(
        False, "--bootstrap", help="Percentile-bootstrap confidence intervals instead of t intervals."
    ),
    test: str = typer.Option("t", "--test", help="Paired test: t (paired t-test) or wilcoxon (signed-rank)."),
    margin: float = typer.Option(
        None,
        "--margin",
        help="Non-inferiority margin in accuracy points (default 1): a variant recommended for shift-consistency "
        "or cost must have its accuracy CI's lower bound above -MARGIN.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of a summary."),
    no_figures: bool = typer.Option(False, "--no-figures", help="Skip the plots (faster; tables and text only)."),
) -> None:
    """(Re)write STUDY_DIR/report/ (index.html, report.md, report.json, figures/) and print the decision.

    Works on a partly finished study (the report says so). Needs at least 2 seeds per variant for
    confidence intervals and tests; with 1 seed the report is written but the command exits with status 2.
    """
    if test not in ("t", "wilcoxon"):
        raise ReportError(f"unknown --test {test!r}; use t or wilcoxon")
    options = ReportOptions(
        baseline=baseline, bootstrap=bootstrap, test=test, noninferiority_margin=margin, figures=not no_figures
    )
    written = make_report(study_dir, options)
    if json_out:
        print_json(written.data)
    else:
        _print_summary(written.data, written.index)
    if not written.data["status"]["enough_seeds"]:
        raise ReportError(
            f"only 1 seed per variant: means only, no CIs or tests (they need at least 2 seeds; 3-5 are usual); "
            f"report written to {written.index}"
        )


def _print_summary(data: dict[str, Any], index: Path) -> None:
    status = data["status"]
    style = "bold yellow" if not status["complete"] else "dim"
    console.print(tables.status_line(data), style=style, markup=False, highlight=False)
    head, rows = tables.variants_table(data)
    t = Table(title=f"{data['study']['name']}: {data['study']['dataset']}, baseline {data['options']['baseline']}")
    keep = [0, 1, 2, 3, 4, 7, 9]
    for i in keep:
        t.add_column(head[i], overflow="fold")
    for r in rows:
        t.add_row(*[r[i] for i in keep])
    console.print(t)
    for s in data["decision"]["sentences"]:
        console.print(s, markup=False, highlight=False)
    for c in data["decision"]["caveats"]:
        console.print(f"  - {c}", style="dim", markup=False, highlight=False)
    console.print(f"report: {index}", markup=False, highlight=False)


@app.command(
    "status",
    epilog=_examples(["poolstride status runs/tiny-textures-demo-0212e1f1", "poolstride status STUDY_DIR --json"]),
)
def status_command(
    study_dir: str = typer.Argument(..., metavar="STUDY_DIR", help="A study directory (local or shared storage)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Runs done / failed / running / pending of a study, per variant, and which runs are running where.

    Example: poolstride status runs/tiny-textures-demo-0760f6b4
    """
    st = study_status(study_dir)
    if json_out:
        print_json(st)
        return
    t = Table(title=f"{st['name']}: {st['done']} done, {st['failed']} failed, {st['running']} running, "
                    f"{st['pending']} pending of {st['runs_total']} runs")  # fmt: skip
    for col in ("variant", "done", "failed", "running", "pending"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in st["variants"]:
        t.add_row(r["variant"], *(str(r[k]) for k in ("done", "failed", "running", "pending")))
    console.print(t)
    for r in st["running_runs"]:
        console.print(
            f"  running: {r['variant']} seed {r['seed']} on {r.get('host')} (pid {r.get('pid')}), "
            f"{r.get('epochs_done', 0)} epoch(s) done",
            markup=False,
            highlight=False,
        )
    if st["complete"]:
        console.print(f"complete; the report: poolstride report {study_dir}", markup=False, highlight=False)
