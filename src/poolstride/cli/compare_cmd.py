"""``poolstride compare`` (a study: variants x seeds) and ``poolstride train`` (one run)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import typer

from ..errors import PoolstrideError
from ..resolve import parse_options
from ..study.render import StudyProgress, _count, _fmt, decision_lines, summary_table
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


def _check_jobs(jobs: str) -> None:
    if str(jobs).strip().lower() in ("auto", "none", ""):
        return
    try:
        n = int(jobs)
    except ValueError:
        raise PoolstrideError(f"bad --jobs {jobs!r}; expected a positive integer or auto") from None
    if n < 1:
        raise PoolstrideError(f"bad --jobs {n}; expected a positive integer or auto")


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    out = []
    for p in (path, *path.parents):
        if p.exists():
            break
        out.append(p)
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the directories this command created and left empty (deepest first); keep any with files."""
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


@app.command(
    "compare",
    epilog=_examples(
        [
            "poolstride compare",
            'poolstride compare --model mynet:build --per-site "pool->conv(k=3)"',
            'poolstride compare -m resnet20 -d cifar10 --data-dir ../shared/data -v "default,blur" --jobs 2',
        ]
    ),
)
def compare_command(
    model: str = typer.Option("tiny", "--model", "-m", help=MODEL_HELP),
    variants: str = typer.Option(None, "--variants", "-v", help=VARIANTS_HELP),
    per_site: str = typer.Option(
        None,
        "--per-site",
        help='A policy (e.g. "pool->conv(k=3)"): one variant per site it matches, only that site changed, '
        "beside the unchanged 'default' baseline.",
    ),
    weights: Path = typer.Option(
        None,
        "--weights",
        help="A state_dict (or a `poolstride convert --out` file) loaded before each variant's surgery.",
    ),
    seeds: str = typer.Option("3", "--seeds", "-s", help="Number of seeds (3), a list (0,1,2) or a range (0-4)."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Override the recipe's epochs."),
    dataset: str = typer.Option("textures", "--dataset", "-d", help="Dataset name (textures, cifar10, npz:PATH...)."),
    model_opt: list[str] = typer.Option(
        None,
        "--model-opt",
        "-O",
        help="Model option KEY=VALUE for every variant, e.g. bn=true (built-in) or weights=IMAGENET1K_V1 "
        "(torchvision, from the local cache only) (repeat).",
    ),
    data_dir: str = typer.Option(None, "--data-dir", help="Where on-disk datasets live."),
    download: bool = typer.Option(False, "--download", help="Download a missing standard dataset (needs network)."),
    recipe: str = typer.Option("demo", "--recipe", "-r", help="Training recipe: demo, fast, paper, adamw."),
    device: str = typer.Option(
        "auto",
        "--device",
        help="auto, cpu, cuda, cuda:N, or a list cuda:0,cuda:1 (--jobs workers spread over it, round robin).",
    ),
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
    jobs: str = typer.Option(
        "auto",
        "--jobs",
        "-j",
        help="Worker processes for the runs: auto (the CPU cores, 1 per run thread) or N; per-run results are "
        "identical to --jobs 1 on a CPU.",
    ),
    from_study: Path = typer.Option(
        None,
        "--from",
        help="Replay the study recorded in this directory (model, variants, dataset, recipe, seeds) into --out.",
    ),
    launcher: str = typer.Option(
        None,
        "--launcher",
        help="slurm: submit --jobs N array tasks through submitit (each a shard of this study directory on shared "
        "storage) and return; local: the same as local subprocesses.",
    ),
    slurm: str = typer.Option(
        None, "--slurm", help="sbatch parameters for --launcher slurm, e.g. partition=gpu,gpus_per_task=1,time=60."
    ),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Also write TensorBoard events per run (runs/*/seed*/tensorboard; the extra)."
    ),
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
    from ..study import compare

    if from_study is not None:
        given = [f"--{n}" for n, v, d in (
            ("model", model, "tiny"), ("variants", variants, None), ("per-site", per_site, None),
            ("weights", weights, None), ("seeds", seeds, "3"), ("epochs", epochs, None),
            ("dataset", dataset, "textures"), ("recipe", recipe, "demo"), ("model-opt", model_opt or None, None),
            ("batch-size", batch_size, None), ("lr", lr, None), ("amp", amp, None),
        ) if v != d]  # fmt: skip
        if given:
            raise PoolstrideError(f"--from replays the recorded definition; drop {', '.join(given)}")
    _check_jobs(jobs)  # the study checks it only after writing study.json
    if weights is not None:
        load_checkpoint(weights, "--weights")  # a file that is not a checkpoint: one clear line, before any work
    t0 = time.perf_counter()
    with StudyProgress(enabled=not json_out, console=console) as prog:
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
            weights=weights,
            per_site=per_site,
            jobs=jobs,
            launcher=launcher,
            slurm=slurm,
            from_study=from_study,
            tensorboard=tensorboard,
            batch_size=batch_size,
            lr=lr,
            amp=amp,
        )
    if json_out:
        print_json(summ)
        return
    if launcher is not None:
        return  # submitted: the progress callback said where and how to watch
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
    for text, style in decision_lines(summ.get("decision")):
        console.print(text, style=style or None, markup=False, highlight=False, soft_wrap=True)
    if not summ["complete"]:
        console.print(
            f"[yellow]{summ['runs_total'] - summ['runs_done']} runs not finished here[/] "
            "(other shards, busy or failed); run the same command again to resume."
        )


@app.command(
    "train",
    epilog=_examples(
        [
            "poolstride train --variant blur --epochs 2",
            'poolstride train --model torchvision:resnet18 --variant "pool->conv(k=3)" --weights r18.pt',
            "torchrun --nproc-per-node 2 --no-python poolstride train --model resnet20",
        ]
    ),
)
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
    import dataclasses
    import hashlib

    from ..errors import SpecError
    from ..study.core import slugify
    from ..train import RunSpec, dist, get_recipe, load_dataset, resolve_device, set_threads, train_run
    from ..train.data import DeviceData, check_fits
    from ..variants import check_model, describe, parse_entry, weights_record

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
    ds = load_dataset(dataset, data_dir, download=download)
    check_fits(ds, rec.train_subset, rec.batch_size)
    dev = resolve_device(device, info)
    if out is None:
        key = json.dumps([v.to_dict(), seed, dataset, rec.to_dict()], sort_keys=True)
        h = hashlib.sha1(key.encode()).hexdigest()[:8]
        out = Path("runs") / f"train-{slugify(model)}-{v.slug}-seed{seed}-{h}"
    created = _missing_dirs(Path(out))
    dist.init(info, dev)
    try:
        data = DeviceData(ds, dev, rec.train_subset, rec.test_subset, rec.channels_last)
        show = info.is_main and not json_out
        with StudyProgress(enabled=show, console=console) as prog:
            if show:
                prog.overall = None
                prog("run_start", variant=spec.name, seed=seed)
            result = train_run(spec, ds, rec, dev, out, callback=prog, dist_info=info, data=data)
    except PoolstrideError:  # a user error before training (bad option, weights...): leave no empty run directory
        _remove_empty(created)
        raise
    finally:
        dist.shutdown(info)
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
    console.print(
        f"{spec.name} seed {seed}: acc {_fmt(result['acc'])}%, loss {_fmt(result['loss'], 3)}, "
        f"shift-consistency {_fmt(result['shift_consistency'])}% "
        f"(circular {_fmt(result['shift_consistency_circular'])}%), "
        f"{_count(result.get('params'))} params, {_count(result.get('macs'))} MACs, "
        f"{_fmt(result['train_time_s'])} s, {_fmt(result['images_per_s'], 0)} img/s"
        + (f", {info.world} processes" if info.enabled else "")
    )
    console.print(f"run directory: {out}")
