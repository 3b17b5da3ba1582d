"""``poolstride compare`` (a study: variants x seeds) and ``poolstride train`` (one run)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..resolve import parse_options
from .common import app, console, err_console, print_json

AMP_HELP = "Autocast: auto (bf16 where native: CUDA, AVX512-BF16/AMX CPUs; fp32 elsewhere), bf16, off (fp32)."


def _fmt(v: Any, nd: int = 1, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def _count(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            x = v / div
            return f"{x:.{2 if x < 10 else 1 if x < 100 else 0}f}{suf}"
    return f"{v:.0f}"


class _Progress:
    """Rich progress bars: the whole study (with ETA) and the current run."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
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
        self.run: Any = None
        self.spe = 1
        self.t_run = 0.0

    def __enter__(self) -> _Progress:
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
        if event == "study_start":
            self.spe = kw["steps_per_epoch"]
            shard = f" shard {kw['shard'][0]}/{kw['shard'][1]}" if kw.get("shard") else ""
            done = kw["runs_mine"] - kw["runs_todo"]
            threads = f"{kw['threads']} CPU thread" + ("s" if kw["threads"] != 1 else "")
            console.print(
                f"study [bold]{kw['study_dir']}[/]{shard}: {kw['runs_total']} runs, "
                f"{done} already done, {kw['runs_todo']} to run ({threads})"
            )
            if kw["runs_todo"]:  # nothing to run (a finished study resumed): no empty bar
                self.overall = p.add_task("overall", total=kw["runs_todo"] * kw["steps_per_run"], info="")
        elif event == "run_start":
            self.t_run = time.perf_counter()
            label = f"{kw['variant']} seed {kw['seed']}"
            if self.run is None:
                self.run = p.add_task(label, total=1, info="")
            else:
                p.reset(self.run, description=label, total=1, info="")
        elif event == "start" and self.run is not None:
            spe, ep, start = kw["steps_per_epoch"], kw["epochs"], kw["start_epoch"]
            p.update(self.run, total=spe * ep, completed=spe * start, info=f"epoch {start + 1}/{ep}")
            if start and self.overall is not None:
                p.advance(self.overall, spe * start)
                console.print(f"  resuming {p.tasks[self.run].description} from epoch {start}")
        elif event == "step":
            if self.run is not None:
                p.advance(self.run)
            if self.overall is not None:
                p.advance(self.overall)
        elif event == "epoch" and self.run is not None:
            acc = kw.get("test_acc")
            info = f"epoch {kw['epoch']} loss {kw['train_loss']:.3f}" + (f" acc {acc:.1f}%" if acc is not None else "")
            p.update(self.run, info=info)
        elif event == "end":
            r = kw["result"]
            name = f"{r['variant']} seed {r['seed']}"
            if r["status"] == "ok":
                console.print(
                    f"  [green]done[/] {name}: acc {r['acc']:.1f}%  shift-consistency "
                    f"{_fmt(r['shift_consistency'])}%  ({time.perf_counter() - self.t_run:.1f} s)"
                )
            else:
                console.print(f"  [red]failed[/] {name}: {r['reason']}")
        elif event == "run_busy":
            console.print(f"  skipped {kw['variant']} seed {kw['seed']}: another process is running it")


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
        ci = v.get("acc_ci95")
        n = str(v["n"]) + (f" +{v['failed']} failed" if v.get("failed") else "")
        t.add_row(
            v["name"],
            n,
            _fmt(v.get("acc_mean")),
            f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else "-",
            _fmt(v.get("shift_consistency_mean")),
            _fmt(v.get("shift_consistency_circular_mean")),
            _count(v.get("params")),
            _count(v.get("macs")),
            _fmt(v.get("train_time_s_mean")),
        )
    return t


@app.command("compare")
def compare_command(
    model: str = typer.Option("tiny", "--model", "-m", help="Built-in model, e.g. tiny, allcnn-c, resnet20."),
    variants: str = typer.Option(
        None,
        "--variants",
        "-v",
        help="Comma list of operator specs (default max,avg,conv,convpool,blur); also 'default', "
        "structural variants such as allcnn-c:strided, and NAME=SPEC.",
    ),
    seeds: str = typer.Option("3", "--seeds", "-s", help="Number of seeds (3), a list (0,1,2) or a range (0-4)."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Override the recipe's epochs."),
    dataset: str = typer.Option("textures", "--dataset", "-d", help="Dataset name (textures, cifar10, npz:PATH...)."),
    model_opt: list[str] = typer.Option(
        None, "--model-opt", "-O", help="Model family option KEY=VALUE for every variant, e.g. bn=true (repeat)."
    ),
    data_dir: str = typer.Option(None, "--data-dir", help="Where on-disk datasets live."),
    download: bool = typer.Option(False, "--download", help="Download a missing standard dataset (needs network)."),
    recipe: str = typer.Option("demo", "--recipe", "-r", help="Training recipe: demo, fast, paper, adamw."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    out: Path = typer.Option(None, "--out", "-o", help="Study directory (default ./runs/<auto name>)."),
    shard: str = typer.Option(None, "--shard", help="Run the subset i/N (0 <= i < N) of the runs."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Override the recipe's batch size."),
    lr: float = typer.Option(None, "--lr", help="Override the recipe's learning rate."),
    threads: int = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads (default 1: same numbers on every machine; raise it for big models).",
    ),
    amp: str = typer.Option(None, "--amp", help=AMP_HELP),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run failed runs (old result kept aside)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML/Markdown report."),
    json_out: bool = typer.Option(False, "--json", help="Print the study summary as JSON (no progress bars)."),
) -> None:
    """Run (or resume) a study: every variant x seed, trained and evaluated; ends with a table.

    With no arguments: the tiny demo net on the embedded textures data, max/avg/conv/convpool/blur x 3 seeds
    (a few minutes on 2 CPU cores). Running the same command again resumes the same directory.
    """
    from ..study import compare

    t0 = time.perf_counter()
    with _Progress(enabled=not json_out) as prog:
        summ = compare(
            model=model,
            variants=variants,
            seeds=seeds,
            epochs=epochs,
            dataset=dataset,
            data_dir=data_dir,
            download=download,
            recipe=recipe,
            device=device,
            out=out,
            shard=shard,
            callback=prog,
            report=not no_report,
            retry_failed=retry_failed,
            threads=threads,
            model_options=parse_options(model_opt),
            batch_size=batch_size,
            lr=lr,
            amp=amp,
        )
    if json_out:
        print_json(summ)
        return
    console.print(summary_table(summ))
    console.print(
        f"acc: top-1 test accuracy, mean over seeds, with the 95% t-interval of the mean; shift: % of test images "
        f"whose top-1 class is unchanged under two random shifts of up to {summ['study']['recipe']['shift_max']} px "
        f"({summ['study']['recipe']['shift_padding']} padding; circ.: circular shifts); MACs: conv+linear "
        "multiply-accumulates per image; train s: mean training time per run."
    )
    console.print(f"study directory: {summ['study_dir']}  ({time.perf_counter() - t0:.1f} s)")
    if summ.get("report"):
        console.print(f"report: {summ['report']}")
    if not summ["complete"]:
        console.print(
            f"[yellow]{summ['runs_total'] - summ['runs_done']} runs not finished here[/] "
            "(other shards, busy or failed); run the same command again to resume."
        )


@app.command("train")
def train_command(
    model: str = typer.Option("tiny", "--model", "-m", help="Built-in model, e.g. tiny, allcnn-c:all-cnn."),
    downsample: str = typer.Option(None, "--downsample", help="Operator at every site, e.g. blur."),
    seed: int = typer.Option(0, "--seed", min=0),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Override the recipe's epochs."),
    dataset: str = typer.Option("textures", "--dataset", "-d"),
    data_dir: str = typer.Option(None, "--data-dir"),
    download: bool = typer.Option(False, "--download", help="Download a missing standard dataset (needs network)."),
    recipe: str = typer.Option("demo", "--recipe", "-r", help="demo, fast, paper, adamw."),
    device: str = typer.Option("auto", "--device"),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default ./runs/train-<auto name>)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Global batch size (all processes)."),
    lr: float = typer.Option(None, "--lr"),
    train_subset: int = typer.Option(None, "--train-subset", min=1, help="Train on a fixed subset of N images."),
    threads: int = typer.Option(None, "--threads", min=1),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    amp: str = typer.Option(None, "--amp", help=AMP_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train and evaluate one run (resumable). Works under torchrun for DDP:
    torchrun --nproc-per-node 2 --no-python poolstride train ...
    """
    import hashlib

    from ..study.core import slugify
    from ..train import RunSpec, dist, get_recipe, load_dataset, resolve_device, set_threads, train_run
    from ..train.data import DeviceData

    set_threads(threads)
    info = dist.from_env()
    rec = get_recipe(recipe, epochs=epochs, batch_size=batch_size, lr=lr, train_subset=train_subset,
                     compile=compile or None, amp=amp)  # fmt: skip
    spec = RunSpec(model, downsample, seed)
    if downsample:
        from ..spec import parse

        spec = RunSpec(model, str(parse(downsample)), seed)
    ds = load_dataset(dataset, data_dir, download=download)
    dev = resolve_device(device, info)
    if out is None:
        key = json.dumps([model, spec.downsample, seed, dataset, rec.to_dict()], sort_keys=True)
        h = hashlib.sha1(key.encode()).hexdigest()[:8]
        out = Path("runs") / f"train-{slugify(model)}-{slugify(spec.name)}-seed{seed}-{h}"
    dist.init(info, dev)
    try:
        data = DeviceData(ds, dev, rec.train_subset, rec.test_subset, rec.channels_last)
        show = info.is_main and not json_out
        with _Progress(enabled=show) as prog:
            if show:
                prog.overall = None
                prog("run_start", variant=spec.name, seed=seed)
            result = train_run(spec, ds, rec, dev, out, callback=prog, dist_info=info, data=data)
    finally:
        dist.shutdown(info)
    if not info.is_main:
        return
    if json_out:
        print_json(result)
        return
    if result["status"] != "ok":
        err_console.print(f"run failed: {result['reason']}", markup=False)
    console.print(
        f"{spec.name} seed {seed}: acc {_fmt(result['acc'])}%, loss {_fmt(result['loss'], 3)}, "
        f"shift-consistency {_fmt(result['shift_consistency'])}% "
        f"(circular {_fmt(result['shift_consistency_circular'])}%), "
        f"{_count(result.get('params'))} params, {_count(result.get('macs'))} MACs, "
        f"{_fmt(result['train_time_s'])} s, {_fmt(result['images_per_s'], 0)} img/s"
        + (f", {info.world} processes" if info.enabled else "")
    )
    console.print(f"run directory: {out}")
