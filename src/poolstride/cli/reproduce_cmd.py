"""``poolstride reproduce``: derive the published claims again, the paper's number next to ours."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table as RichTable

from .. import reproduce
from ..reproduce import PROTOCOLS, papers
from ..reproduce.common import FAILS, HOLDS, SKIPPED, UNSURE, Reproduction, cell, hardware_line
from ..results.format import fmt_duration
from .common import app, console, err_console, print_json
from .common import examples as _examples

_VERDICT_STYLE: dict[str, str] = {HOLDS: "green", FAILS: "red", UNSURE: "yellow", SKIPPED: "dim"}


def _list_protocols() -> None:
    t = RichTable(title="reproductions (poolstride reproduce NAME)")
    t.add_column("name", no_wrap=True)
    for col in ("what", "sources", "data", "options"):
        t.add_column(col, overflow="fold")
    for p in PROTOCOLS.values():
        opts = ", ".join(f"--{o.replace('_', '-')}" for o in p.options)
        t.add_row(p.name, p.title, p.sources, "CIFAR-10" if p.needs_data else "none", opts)
    console.print(t)


def _papers_table() -> None:
    t = RichTable(title="paper numbers (src/poolstride/reproduce/papers.py)")
    for col in ("key", "value", "unit", "what", "source", "tag"):
        t.add_column(col, overflow="fold")
    for r in papers.table():
        t.add_row(r["key"], f"{r['value']:g}", r["unit"], r["what"], r["source"], r["tag"])
    console.print(t)


def _progress(event: str, **kw: Any) -> None:
    if event == "study_start":
        err_console.print(
            f"study {kw.get('study_dir')}: {kw.get('runs_todo')} of {kw.get('runs_total')} runs to train",
            markup=False,
            highlight=False,
        )
    elif event == "run_start":
        err_console.print(f"  training {kw.get('variant')} seed {kw.get('seed')}", markup=False, highlight=False)
    elif event == "end":
        r = kw.get("result") or {}
        acc = r.get("acc")
        msg = f"acc {acc:.2f}%" if isinstance(acc, (int, float)) else f"{r.get('status')}: {r.get('reason')}"
        err_console.print(f"    -> {msg} in {r.get('train_time_s')} s", markup=False, highlight=False)
    elif event in ("gradflow", "analyze"):
        err_console.print(
            "  " + event + " " + " ".join(f"{k}={v}" for k, v in kw.items()), markup=False, highlight=False
        )


def _print(rep: Reproduction) -> None:
    console.print(f"[bold]{rep.title}[/bold]")
    console.print(f"budget: {rep.budget.get('description')}", markup=False, highlight=False)
    console.print(f"hardware: {hardware_line(rep.hardware)}", markup=False, highlight=False)
    wall = rep.timing.get("wall_s")
    est = (rep.timing.get("paper_estimate") or {}).get("text")
    console.print(f"wall time: {fmt_duration(wall)}; paper budget here: {est}", markup=False, highlight=False)
    if rep.study_dir:
        console.print(f"study: {rep.study_dir}", markup=False, highlight=False)
    for tab in rep.tables:
        t = RichTable(title=tab.title)
        for col in tab.columns:
            t.add_column(col, overflow="fold")
        for row in tab.rows:
            t.add_row(*[cell(v) for v in row])
        console.print(t)
        if tab.note:
            console.print(tab.note, style="dim", markup=False, highlight=False)
    for c in rep.checks:
        style = _VERDICT_STYLE.get(c.verdict, "")
        console.print(f"[{style}]{c.verdict:>13}[/{style}]  ", end="")
        console.print(f"{c.claim} ({c.source})", markup=False, highlight=False)
        for p in c.parts:
            console.print(f"{'':>15}{p.verdict}: {p.detail or p.claim}", style="dim", markup=False, highlight=False)
        if not c.parts and c.detail:
            console.print(f"{'':>15}{c.detail}", style="dim", markup=False, highlight=False)
    for n in rep.notes:
        console.print(f"note: {n}", style="dim", markup=False, highlight=False)


@app.command(
    "reproduce",
    epilog=_examples(
        ["poolstride reproduce stem", "poolstride reproduce blurpool --data-dir ../shared/data/cifar10 --budget quick"]
    ),
)
def reproduce_command(
    name: str | None = typer.Argument(
        None, metavar="NAME", help="allcnn, resnet-shortcuts, stem, blurpool or mishkin-pooling (none: list them)."
    ),
    budget: str = typer.Option("quick", "--budget", help="quick (scaled, same recipe for all) or paper."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Where CIFAR-10 is: cifar-10-batches-py/ or train_*.npz + test.npz."
    ),
    dataset: str = typer.Option("cifar10", "--dataset", help="Dataset; 'textures' is a smoke-run stand-in."),
    out: str | None = typer.Option(None, "--out", "-o", help="Study directory (default runs/reproduce/NAME-...)."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="Seeds per variant (default 3)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the result as Markdown (for docs pages)."),
    families: str | None = typer.Option(None, "--families", help="allcnn: families, e.g. c or a,b,c."),
    depths: str | None = typer.Option(None, "--depths", help="resnet-shortcuts: depths, e.g. 20,56."),
    shortcuts: str | None = typer.Option(None, "--shortcuts", help="resnet-shortcuts: e.g. A,B,D,fish."),
    model: str | None = typer.Option(None, "--model", help="blurpool / mishkin-pooling: the network."),
    sizes: str | None = typer.Option(None, "--sizes", help="blurpool: blur filter sizes, e.g. 2,3,4,5."),
    models_: str | None = typer.Option(None, "--models", help="stem: ImageNet ResNets, e.g. resnet18,resnet50."),
    latency: bool | None = typer.Option(None, "--latency/--no-latency", help="stem: measure latency."),
    repeats: int | None = typer.Option(None, "--repeats", min=1, help="stem: timed repeats per latency."),
    gradflow: bool | None = typer.Option(
        None, "--gradflow/--no-gradflow", help="resnet-shortcuts: gradient flow at initialisation."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override the budget's epochs."),
    train_subset: int | None = typer.Option(None, "--train-subset", min=1, help="Override: training images used."),
    test_subset: int | None = typer.Option(None, "--test-subset", min=1, help="Override: test images used."),
    shift_images: int | None = typer.Option(
        None, "--shift-images", min=1, help="Override: images for shift-consistency."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Override the batch size."),
    lr: float | None = typer.Option(None, "--lr", help="Override the peak learning rate."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    report: bool = typer.Option(False, "--report/--no-report", help="Also write the study's HTML report."),
    papers_: bool = typer.Option(False, "--papers", help="Print the table of paper numbers and exit."),
) -> None:
    """Reproduce a published claim: run its protocol and print the paper's number next to ours.

    Prints budget, hardware, the paper-budget time estimate, and per claim: holds / does not hold / cannot tell.
    """
    if papers_:
        _papers_table()
        return
    if name is None or name == "list":
        _list_protocols()
        return
    proto = reproduce.get(name)
    if lr is not None and not lr > 0:
        raise reproduce.ReproduceError(f"--lr {lr}: must be > 0")
    opts: dict[str, Any] = {
        "families": families, "depths": depths, "shortcuts": shortcuts, "model": model, "sizes": sizes,
        "models": models_, "latency": latency, "repeats": repeats, "gradflow": gradflow,
    }  # fmt: skip
    kwargs: dict[str, Any] = {k: v for k, v in opts.items() if v is not None}
    if proto.needs_data:
        kwargs.update(
            dataset=dataset, data_dir=data_dir, out=out, device=device, threads=threads, report=report,
            epochs=epochs, train_subset=train_subset, test_subset=test_subset, shift_images=shift_images,
            batch_size=batch_size, lr=lr,
        )  # fmt: skip
    else:
        given = {"--epochs": epochs, "--train-subset": train_subset, "--test-subset": test_subset,
                 "--batch-size": batch_size, "--lr": lr, "--out": out, "--data-dir": data_dir}  # fmt: skip
        used = [k for k, v in given.items() if v is not None]
        if used:
            raise reproduce.ReproduceError(f"{proto.name} trains nothing and reads no data; drop {', '.join(used)}")
    if seeds is not None:
        kwargs["seeds"] = seeds
    if not json_out:
        kwargs["callback"] = _progress
    rep = reproduce.run(proto.name, budget, **kwargs)
    if json_out:
        print_json(rep.to_dict())
    elif markdown:
        sys.stdout.write(rep.markdown() + "\n")
    else:
        _print(rep)
