"""Rendering a study for people: rich progress bars while it runs, and the summary table.

Used by the CLI (``poolstride compare``/``train``) and by ``poolstride.compare(progress=True)`` in a terminal or a
notebook (rich detects Jupyter).
"""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..results import stats
from ..results.format import fmt_count, fmt_number


def _num(v: Any, digits: int = 1) -> str:
    """A number in the progress lines and the summary table: 1 decimal, ``-`` when unknown."""
    return fmt_number(v, digits, missing="-")


def _count(v: Any) -> str:
    """A count (params, MACs) in the summary table: ``1.23M``, ``-`` when unknown."""
    return fmt_count(v, style="fixed", missing="-")


def run_line(name: str, seed: int, result: dict[str, Any]) -> str:
    """The one-line summary of a finished run (``poolstride train``)."""
    return (
        f"{name} seed {seed}: acc {_num(result['acc'])}%, loss {_num(result['loss'], 3)}, "
        f"shift-consistency {_num(result['shift_consistency'])}% "
        f"(circular {_num(result['shift_consistency_circular'])}%), "
        f"{_count(result.get('params'))} params, {_count(result.get('macs'))} MACs, "
        f"{_num(result['train_time_s'])} s, {_num(result['images_per_s'], 0)} img/s"
    )


class StudyProgress:
    """Rich progress bars: the whole study (with ETA) and one line per active run (several with ``--jobs``)."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console()
        console = self.console
        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self.overall: Any = None
        self.run: Any = None  # the latest run's task
        self.tasks: dict[Any, Any] = {}  # run (variant, seed) -> its task: one line per active run
        self.t_runs: dict[Any, float] = {}
        self.current: Any = None
        self.spe = 1

    def _task(self, kw: dict[str, Any]) -> Any:
        return self.tasks.get(kw.get("run") or self.current)

    def __enter__(self) -> StudyProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.p.stop()

    started = False

    def __call__(self, event: str, **kw: Any) -> None:
        if not self.enabled:
            return
        p = self.p
        if not self.started:  # the live display starts with the first event, so errors print alone
            self.started = True
            p.start()
        if event == "study_info":
            for line in kw.get("lines") or []:
                style = "yellow" if line.startswith("warning:") else "dim"
                self.console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        elif event == "study_start":
            self.spe = kw["steps_per_epoch"]
            shard = f" shard {kw['shard'][0]}/{kw['shard'][1]}" if kw.get("shard") else ""
            done = kw["runs_mine"] - kw["runs_todo"]
            threads = f"{kw['threads']} CPU thread" + ("s" if kw["threads"] != 1 else "")
            self.console.print(
                f"study [bold]{kw['study_dir']}[/]{shard}: {kw['runs_total']} runs, "
                f"{done} already done, {kw['runs_todo']} to run ({threads})"
            )
            if kw["runs_todo"]:  # nothing to run (a finished study resumed): no empty bar
                self.overall = p.add_task("overall", total=kw["runs_todo"] * kw["steps_per_run"], info="")
        elif event == "study_submitted":
            if self.overall is not None:  # the runs happen elsewhere: no bar here
                p.remove_task(self.overall)
                self.overall = None
            jobs = kw["jobs"]
            if not jobs:
                self.console.print("nothing to submit: every run of this study is finished", highlight=False)
            else:
                first = jobs[0].split("_")[0]
                self.console.print(
                    f"submitted {kw['tasks']} {kw['launcher']} task(s) (job {first}"
                    + (f" .. {jobs[-1]}" if len(jobs) > 1 else "")
                    + f"); watch: poolstride status {kw['study_dir']}",
                    highlight=False,
                )
        elif event == "study_jobs":
            self.console.print(f"{kw['jobs']} worker processes ({kw['why']})", style="dim", highlight=False)
        elif event == "run_start":
            key = kw.get("run") or (kw["variant"], kw["seed"])
            self.current = key
            self.t_runs[key] = time.perf_counter()
            self.tasks[key] = p.add_task(f"{kw['variant']} seed {kw['seed']}", total=1, info="")
            self.run = self.tasks[key]
        elif event == "start" and self._task(kw) is not None:
            task = self._task(kw)
            spe, ep, start = kw["steps_per_epoch"], kw["epochs"], kw["start_epoch"]
            p.update(task, total=spe * ep, completed=spe * start, info=f"epoch {start + 1}/{ep}")
            if start and self.overall is not None:
                p.advance(self.overall, spe * start)
                self.console.print(f"  resuming {p.tasks[task].description} from epoch {start}")
        elif event == "step":
            task = self._task(kw)
            if task is not None:
                p.advance(task)
            if self.overall is not None:
                p.advance(self.overall)
        elif event == "epoch" and self._task(kw) is not None:
            acc = kw.get("test_acc")
            info = f"epoch {kw['epoch']} loss {kw['train_loss']:.3f}" + (f" acc {acc:.1f}%" if acc is not None else "")
            p.update(self._task(kw), info=info)
        elif event == "end":
            r = kw["result"]
            name = f"{r['variant']} seed {r['seed']}"
            key = kw.get("run") or self.current
            t0 = self.t_runs.pop(key, None)
            took = f"  ({time.perf_counter() - t0:.1f} s)" if t0 is not None else ""
            if r["status"] == "ok":
                self.console.print(
                    f"  [green]done[/] {name}: acc {r['acc']:.1f}%  shift-consistency "
                    f"{_num(r['shift_consistency'])}%{took}"
                )
            else:
                self.console.print(f"  [red]failed[/] {name}: {r['reason']}")
            task = self.tasks.pop(key, None)
            if task is not None and self.overall is not None:  # in a study: the finished run's bar goes
                p.remove_task(task)
        elif event == "run_busy":
            self.console.print(f"  skipped {kw['variant']} seed {kw['seed']}: another process is running it")


def summary_table(summ: dict[str, Any]) -> Table:
    study = summ["study"]
    title = (
        f"{study['model']} on {study['dataset']}, recipe {study['recipe']['name']} "
        f"({study['recipe']['epochs']} epochs), {summ['runs_done']}/{summ['runs_total']} runs"
    )
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, just in (
        ("variant", "left"),
        ("n", "right"),
        ("acc %", "right"),
        ("95% CI", "right"),
        ("shift %", "right"),
        ("circ. %", "right"),
        ("params", "right"),
        ("MACs", "right"),
        ("train s", "right"),
    ):
        t.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    for v in summ["variants"]:
        ci = stats.clip_ci(v.get("acc_ci95"))  # accuracy lies in [0, 100]
        n = str(v["n"]) + (f" +{v['failed']} failed" if v.get("failed") else "")
        t.add_row(
            v["name"],
            n,
            _num(v.get("acc_mean")),
            f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else "-",
            _num(v.get("shift_consistency_mean")),
            _num(v.get("shift_consistency_circular_mean")),
            _count(v.get("params")),
            _count(v.get("macs")),
            _num(v.get("train_time_s_mean")),
        )
    return t


def decision_lines(decision: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(text, style) lines of a decision, as ``compare`` and ``report`` print it."""
    if not decision:
        return []
    out = [(s, "bold" if i == 0 else "") for i, s in enumerate(decision.get("sentences") or [])]
    if not out and decision.get("headline"):
        out.append((decision["headline"], "bold"))
    out += [(f"  - {c}", "dim") for c in decision.get("caveats") or []]
    return out
