"""``poolstride compare`` (a study: variants x seeds) and ``poolstride train`` (one run)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import typer

from ..errors import PoolstrideError, SpecError
from ..resolve import parse_options
from ..study import compare
from ..study.render import StudyProgress, decision_lines, run_line, summary_table
from ..train import RunSpec, dist, get_recipe, plan_single, set_threads
from ..variants import check_model, describe, parse_entry, weights_record
from .common import app, console, err_console, load_checkpoint, print_json
from .common import examples as _examples

MODEL_HELP = (
    "Any model: a built-in name (tiny, allcnn-c, resnet20...), torchvision:NAME, timm:NAME, or "
    "package.module:callable (a file in the current directory works: mynet:build)."
)
VARIANTS_HELP = (
    "Comma list of variants (default max,avg,conv,convpool,blur): 'default' (the model as given), an operator "
    "spec at every site (max, conv(k=3), blur(base=max,size=3)), a structural variant (allcnn-c:strided), or a "
    "surgery policy (pool->conv(k=3), conv->conv(s=1)+blur(size=4), shortcut->avg+1x1) with optional "
    "[skip=stem,path=GLOB,stage=N,min_channels=N,init=preserve]; NAME=ENTRY names one."
)

AMP_HELP = (
    "Autocast: auto (bf16 where native: CUDA with bf16, AVX512-BF16/AMX CPUs; fp16 + loss scaling on older GPUs; "
    "fp32 elsewhere), bf16, fp16, off (fp32)."
)


PER_SITE_HELP = (
    'A policy (e.g. "pool->conv(k=3)"): one variant per site it matches, only that site changed, '
    "beside the unchanged 'default' baseline."
)

WEIGHTS_HELP = "A state_dict (or a `poolstride convert --out` file) loaded before each variant's surgery."

MODEL_OPT_HELP = (
    "Model option KEY=VALUE for every variant, e.g. bn=true (built-in) or weights=IMAGENET1K_V1 "
    "(torchvision, from the local cache only) (repeat)."
)

DEVICE_HELP = "auto, cpu, cuda, cuda:N, or a list cuda:0,cuda:1 (--jobs workers spread over it, round robin)."

THREADS_HELP = "torch CPU threads (default 1: same numbers on every machine; raise it for big models)."

JOBS_HELP = (
    "Worker processes for the runs: auto (the CPU cores, 1 per run thread) or N; per-run results are "
    "identical to --jobs 1 on a CPU."
)

FROM_STUDY_HELP = "Replay the study recorded in this directory (model, variants, dataset, recipe, seeds) into --out."

LAUNCHER_HELP = (
    "slurm: submit --jobs N array tasks through submitit (each a shard of this study directory on shared "
    "storage) and return; local: the same as local subprocesses."
)

SLURM_HELP = "sbatch parameters for --launcher slurm, e.g. partition=gpu,gpus_per_task=1,time=60."

TENSORBOARD_HELP = "Also write TensorBoard events per run (runs/*/seed*/tensorboard; the extra)."

COMPARE_EXAMPLES = [
    "poolstride compare",
    'poolstride compare --model mynet:build --per-site "pool->conv(k=3)"',
    'poolstride compare -m resnet20 -d cifar10 --data-dir ../shared/data -v "default,blur" --jobs 2',
]
TRAIN_EXAMPLES = [
    "poolstride train --variant blur --epochs 2",
    'poolstride train --model torchvision:resnet18 --variant "pool->conv(k=3)" --weights r18.pt',
    "torchrun --nproc-per-node 2 --no-python poolstride train --model resnet20",
]


@app.command("compare", epilog=_examples(COMPARE_EXAMPLES))
def compare_command(
    model: str = typer.Option("tiny", "--model", "-m", help=MODEL_HELP),
    variants: str = typer.Option(None, "--variants", "-v", help=VARIANTS_HELP),
    per_site: str = typer.Option(None, "--per-site", help=PER_SITE_HELP),
    weights: Path = typer.Option(None, "--weights", help=WEIGHTS_HELP),
    seeds: str = typer.Option("3", "--seeds", "-s", help="Number of seeds (3), a list (0,1,2) or a range (0-4)."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Override the recipe's epochs."),
    dataset: str = typer.Option("textures", "--dataset", "-d", help="Dataset name (textures, cifar10, npz:PATH...)."),
    model_opt: list[str] = typer.Option(None, "--model-opt", "-O", help=MODEL_OPT_HELP),
    data_dir: str = typer.Option(None, "--data-dir", help="Where on-disk datasets live."),
    download: bool = typer.Option(False, "--download", help="Download a missing standard dataset (needs network)."),
    recipe: str = typer.Option("demo", "--recipe", "-r", help="Training recipe: demo, fast, paper, adamw."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    out: Path = typer.Option(None, "--out", "-o", help="Study directory (default ./runs/<auto name>)."),
    shard: str = typer.Option(None, "--shard", help="Run the subset i/N (0 <= i < N) of the runs."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Override the recipe's batch size."),
    lr: float = typer.Option(None, "--lr", help="Override the recipe's learning rate."),
    threads: int = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    amp: str = typer.Option(None, "--amp", help=AMP_HELP),
    jobs: str = typer.Option("auto", "--jobs", "-j", help=JOBS_HELP),
    from_study: Path = typer.Option(None, "--from", help=FROM_STUDY_HELP),
    launcher: str = typer.Option(None, "--launcher", help=LAUNCHER_HELP),
    slurm: str = typer.Option(None, "--slurm", help=SLURM_HELP),
    tensorboard: bool = typer.Option(False, "--tensorboard", help=TENSORBOARD_HELP),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Re-run failed runs (old result kept aside)."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write the HTML/Markdown report."),
    json_out: bool = typer.Option(False, "--json", help="Print the study summary as JSON (no progress bars)."),
) -> None:
    """Run (or resume) a study: every variant x seed, trained and evaluated; ends with a table and the decision.

    With no arguments: the tiny demo net on the embedded textures data, max/avg/conv/convpool/blur x 3 seeds
    (a few minutes on 2 CPU cores). Any model works (--model mynet:build, torchvision:resnet18, timm:resnet18):
    its head and input channels are adapted to the data, and said so. Running the same command again resumes
    the same directory.
    """
    if from_study is not None:
        _refuse_definition_options(
            ("model", model, "tiny"), ("variants", variants, None), ("per-site", per_site, None),
            ("weights", weights, None), ("seeds", seeds, "3"), ("epochs", epochs, None),
            ("dataset", dataset, "textures"), ("recipe", recipe, "demo"), ("model-opt", model_opt or None, None),
            ("batch-size", batch_size, None), ("lr", lr, None), ("amp", amp, None),
        )  # fmt: skip
    if weights is not None:
        load_checkpoint(weights, "--weights")  # a file that is not a checkpoint: one clear line, before any work
    t0 = time.perf_counter()
    with StudyProgress(enabled=not json_out, console=console) as prog:
        summ = compare(
            model, variants, seeds, epochs, dataset, data_dir, download, recipe, device, out, shard, prog,
            not no_report, retry_failed, threads, parse_options(model_opt), weights, per_site, jobs=jobs,
            launcher=launcher, slurm=slurm, from_study=from_study, tensorboard=tensorboard, batch_size=batch_size,
            lr=lr, amp=amp,
        )  # fmt: skip
    if json_out:
        print_json(summ)
    elif launcher is None:  # submitted: the progress callback said where and how to watch
        _print_study(summ, time.perf_counter() - t0)


def _refuse_definition_options(*options: tuple[str, object, object]) -> None:
    """``--from`` replays the recorded definition: an option of the definition given anyway is an error."""
    given = [f"--{name}" for name, value, default in options if value != default]
    if given:
        raise PoolstrideError(f"--from replays the recorded definition; drop {', '.join(given)}")


def _print_study(summ: dict[str, Any], seconds: float) -> None:
    """The summary table, what its columns mean, where the study and its report are, and the decision."""
    console.print(summary_table(summ))
    console.print(
        f"acc: top-1 test accuracy, mean over seeds, with the 95% t-interval of the mean; shift: % of test images "
        f"whose top-1 class is unchanged under two random shifts of up to {summ['study']['recipe']['shift_max']} px "
        f"({summ['study']['recipe']['shift_padding']} padding; circ.: circular shifts); MACs: conv+linear "
        "multiply-accumulates per image; train s: mean training time per run."
    )
    console.print(f"study directory: {summ['study_dir']}  ({seconds:.1f} s)")
    if summ.get("report"):
        console.print(f"report: {summ['report']}")
    for text, style in decision_lines(summ.get("decision")):
        console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)
    if not summ["complete"]:
        console.print(
            f"[yellow]{summ['runs_total'] - summ['runs_done']} runs not finished here[/] "
            "(other shards, busy or failed); run the same command again to resume."
        )


@app.command("train", epilog=_examples(TRAIN_EXAMPLES))
def train_command(
    model: str = typer.Option("tiny", "--model", "-m", help=MODEL_HELP),
    variant: str = typer.Option(
        None, "--variant", "-v", help="One --variants entry (default: the model as given), e.g. blur, pool->conv(k=3)."
    ),
    downsample: str = typer.Option(None, "--downsample", help="Operator at every site (same as --variant SPEC)."),
    weights: Path = typer.Option(None, "--weights", help="A state_dict loaded before the variant's surgery."),
    model_opt: list[str] = typer.Option(None, "--model-opt", "-O", help="Model option KEY=VALUE (repeat)."),
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
    """Train and evaluate one run (resumable) of any model and variant. Works under torchrun for DDP:
    torchrun --nproc-per-node 2 --no-python poolstride train ...
    """
    if variant and downsample:
        raise SpecError("give --variant or --downsample, not both")
    set_threads(threads)
    info = dist.from_env()
    rec = get_recipe(recipe, epochs=epochs, batch_size=batch_size, lr=lr, train_subset=train_subset,
                     compile=compile or None, amp=amp)  # fmt: skip
    check_model(model)
    v = parse_entry(variant or downsample or "default", model, parse_options(model_opt))
    if weights is not None:
        load_checkpoint(weights, "--weights")  # a file that is not a checkpoint: one clear line, before any work
        v = dataclasses.replace(v, weights=weights_record(weights))
    spec = RunSpec(v, seed)
    run = plan_single(spec, dataset, rec, device, out, data_dir=data_dir, download=download, dist_info=info,
                      model=model)  # fmt: skip
    show = info.is_main and not json_out
    with StudyProgress(enabled=show, console=console) as prog:
        if show:
            prog.overall = None
            prog("run_start", variant=spec.name, seed=seed)
        result = run.train(callback=prog)
    if not info.is_main:
        return
    if json_out:
        print_json(result)
        return
    said = describe(v)
    for line in ([said] if said else []) + list(result.get("adaptations") or []):
        console.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)
    if result["status"] != "ok":
        err_console.print(f"run failed: {result['reason']}", markup=False)
    console.print(run_line(spec.name, seed, result) + (f", {info.world} processes" if info.enabled else ""))
    console.print(f"run directory: {run.run_dir}")
