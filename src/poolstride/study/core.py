"""Studies: variants x seeds on one dataset with one recipe, stored as in docs/study-format.md.

Every (variant, seed) is a run with its own directory. Running the same study again resumes it: finished runs
(``result.json`` present) are skipped, an interrupted run continues from its last checkpoint, and the summary is
rebuilt from the result files on disk, so nothing is duplicated or lost. ``shard=(i, N)`` runs the runs whose
index k (in the study's fixed order) has ``k % N == i``, so N processes or machines can share one directory;
a per-run lock file keeps two unsharded processes from training the same run at once.

:func:`compare` validates everything, plans the runs, runs them (here, in ``--jobs`` workers, or as cluster
tasks) and finishes with the summary, the report and the decision; the study directory itself is kept by
:mod:`poolstride.study.store`, the per-worker loop is :mod:`poolstride.study.runner`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io as _io
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from .. import __version__
from ..errors import PoolstrideError, SpecError
from ..report import build_report
from ..resolve import add_study_import_path
from ..results import io as tio
from ..results import schema
from ..results.study import read_result, run_dir_of
from ..train.data import DeviceData, check_fits, load_dataset
from ..train.engine import RunSpec, build_model, resolve_device, set_threads
from ..train.evaluate import precision_name
from ..train.recipe import Recipe, get_recipe
from ..variants import (
    DEFAULT,
    PYTHON_PREFIX,
    Variant,
    check_model,
    describe,
    feature_map_warning,
    parse_variants,
    per_site_variants,
    resolve_model_arg,
    slugify,
    unique,
    weights_record,
)
from . import provenance
from .launch import LAUNCHERS, parse_params, submit
from .render import StudyProgress, summary_table
from .runner import Todo, run_todo, write_report_safely
from .store import (
    DEFINITION_KEYS,
    StudyError,
    create_or_check_study,
    definition_entry,
    read_existing_study,
    write_summary,
)
from .tensorboard import TensorBoardLogger
from .workers import parse_jobs, resolve_jobs, run_parallel

DEFAULT_MODEL = "tiny"
DEFAULT_DATASET = "textures"
DEFAULT_VARIANTS = "max,avg,conv,convpool,blur"
DEFAULT_SEEDS = 3
#: the default study's recipe (``poolstride compare`` with no arguments): sized for ~2.5 min on 2 quiet CPU cores
DEFAULT_RECIPE = "demo"

Callback = Callable[..., None]


def _ignore(event: str, **kw: Any) -> None:
    """The callback of a study nobody watches."""


def make_variants(
    model: str, variants: str | Sequence[str | Variant] | None = None, model_kwargs: Mapping[str, Any] | None = None
) -> list[Variant]:
    """Variants from a comma list (or a sequence) of ``--variants`` entries: see :mod:`poolstride.variants`
    (``default``, an operator spec, ``allcnn-c:strided``, a surgery policy, each optionally ``NAME=``), or a
    sequence of :class:`Variant` records (a replayed study)."""
    if variants and not isinstance(variants, str) and all(isinstance(v, Variant) for v in variants):
        return unique([v for v in variants if isinstance(v, Variant)])
    entries: str | list[str] = variants if isinstance(variants, str) else [str(v) for v in variants or []]
    try:
        return parse_variants(model, entries if entries else DEFAULT_VARIANTS, model_kwargs)
    except SpecError as e:
        if "unbalanced" in str(e) or "empty entry" in str(e) or "given twice" in str(e):
            raise StudyError(str(e)) from None
        raise


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/N"`` (0 <= i < N) -> (i, N)."""
    if shard is None or shard == "":
        return None
    if isinstance(shard, tuple):
        i, n = shard
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
        if not m:
            raise StudyError(f"bad --shard {shard!r}; expected i/N with 0 <= i < N, e.g. 0/4")
        i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise StudyError(f"bad --shard {i}/{n}; expected i/N with 0 <= i < N, e.g. 0/4")
    return i, n


def parse_seeds(seeds: int | str | Sequence[int] | None) -> list[int]:
    if seeds is None:
        return list(range(DEFAULT_SEEDS))
    if isinstance(seeds, int):
        if seeds < 1:
            raise StudyError(f"--seeds {seeds}: need at least one seed")
        return list(range(seeds))
    if isinstance(seeds, str):
        s = seeds.strip()
        try:
            if re.fullmatch(r"\d+", s):
                return parse_seeds(int(s))
            if re.fullmatch(r"\d+\s*-\s*\d+", s):
                a, b = (int(x) for x in s.split("-"))
                if b < a:
                    raise ValueError
                return list(range(a, b + 1))
            out = [int(x) for x in s.split(",")]
        except ValueError:
            raise StudyError(f"bad --seeds {seeds!r}; expected a count (3), a list (0,1,2) or a range (0-4)") from None
    else:
        out = [int(x) for x in seeds]
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise StudyError(f"bad seeds {seeds!r}: need distinct non-negative integers")
    return out


def definition(
    model: str, dataset_name: str, recipe: Recipe, variants: list[Variant], seeds: list[int]
) -> dict[str, Any]:
    defn = {
        "model": model,
        "dataset": dataset_name,
        "recipe": recipe.to_dict(),
        "variants": [v.to_dict() for v in variants],
        "seeds": list(seeds),
    }
    return dict(json.loads(json.dumps(defn)))  # as it reads back from study.json (tuples become lists)


def auto_name(defn: dict[str, Any]) -> str:
    key = {k: definition_entry(defn, k) for k in DEFINITION_KEYS}
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return slugify(f"{defn['model']}-{defn['dataset']}-{defn['recipe']['name']}") + f"-{h}"


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise StudyError(f"cannot write to output directory {path}: {e.strerror or e}") from None


# ---- the study -------------------------------------------------------------------------------------------------


class StudyResult(dict):  # type: ignore[type-arg]
    """What :func:`compare` returns: the study summary (``poolstride.summary/1``, a dict, as before) with the
    study directory, the decision and a rich table as attributes. Shows as the table in a notebook."""

    @property
    def study_dir(self) -> Path:
        return Path(self["study_dir"])

    @property
    def decision(self) -> dict[str, Any] | None:
        return self.get("decision")

    @property
    def table(self) -> Any:
        return summary_table(self)

    def __rich__(self) -> Any:
        return self.table

    def _repr_html_(self) -> str:
        c = Console(record=True, width=120, file=_io.StringIO())
        c.print(self.table)
        for line in (self.decision or {}).get("sentences", []):
            c.print(line, markup=False, highlight=False)
        return c.export_html(inline_styles=True)


@dataclass
class StudyOptions:
    """The arguments of :func:`compare` as given (``recipe_overrides``: its extra keyword arguments)."""

    model: Any = DEFAULT_MODEL
    variants: str | Sequence[str | Variant] | None = None
    seeds: int | str | Sequence[int] | None = None
    epochs: int | None = None
    dataset: Any = DEFAULT_DATASET
    data_dir: str | None = None
    download: bool = False
    recipe: str | Recipe = DEFAULT_RECIPE
    device: str = "auto"
    out: str | Path | None = None
    shard: str | tuple[int, int] | None = None
    callback: Callback | None = None
    report: bool = True
    retry_failed: bool = False
    threads: int | None = None
    model_options: Mapping[str, Any] | None = None
    weights: str | Path | None = None
    per_site: str | None = None
    jobs: int | str | None = "auto"
    launcher: str | None = None
    slurm: str | Mapping[str, Any] | None = None
    from_study: str | Path | None = None
    tensorboard: bool = False
    recipe_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Study:
    """A validated study: its definition, its data, and where it lives."""

    rec: Recipe
    vlist: list[Variant]
    seeds: list[int]
    ds: Any
    ds_name: str
    devices: list[torch.device]
    obj: Any
    shard: tuple[int, int] | None
    info_lines: list[str]
    model_str: str
    weights: dict[str, Any] | None
    out_dir: Path = Path()
    study: dict[str, Any] = field(default_factory=dict)


def compare(
    model: Any = DEFAULT_MODEL,
    variants: str | Sequence[str] | None = None,
    seeds: int | str | Sequence[int] | None = None,
    epochs: int | None = None,
    dataset: Any = DEFAULT_DATASET,
    data_dir: str | None = None,
    download: bool = False,
    recipe: str | Recipe = DEFAULT_RECIPE,
    device: str = "auto",
    out: str | Path | None = None,
    shard: str | tuple[int, int] | None = None,
    callback: Callback | None = None,
    report: bool = True,
    retry_failed: bool = False,
    threads: int | None = None,
    model_options: Mapping[str, Any] | None = None,
    weights: str | Path | None = None,
    per_site: str | None = None,
    progress: bool = False,
    jobs: int | str | None = "auto",
    launcher: str | None = None,
    slurm: str | Mapping[str, Any] | None = None,
    from_study: str | Path | None = None,
    tensorboard: bool = False,
    **recipe_overrides: Any,
) -> StudyResult:
    """Run (or resume) a study and return its summary (``poolstride.summary/1``, see docs/study-format.md) as a
    :class:`StudyResult` (a dict, plus ``.table``, ``.decision`` and ``.study_dir``).

    ``model``: any MODEL string (a built-in name, ``torchvision:NAME``, ``timm:NAME``, ``package.module:callable``;
    a module in the current directory is importable), an ``nn.Module`` instance (deep-copied and re-initialised
    per run) or a factory. ``variants``: ``--variants`` entries (see :mod:`poolstride.variants`). ``weights``: a
    state_dict file loaded before the variant's surgery (converted sites start function-preserving where that
    exists). ``per_site``: a policy; adds one variant per site it matches (only that site changed) beside the
    unchanged ``default`` baseline. ``jobs``: worker processes for the runs (``auto`` = the cores, one torch
    thread per run unless ``threads`` says more; per-run results are identical to ``jobs=1`` on a CPU).
    ``launcher``: ``slurm`` (or ``local``) submits ``jobs`` array tasks through submitit, each running a shard of
    this study directory, and returns at once (``.jobs`` holds the submitit jobs); ``slurm``: sbatch parameters
    (``"partition=gpu,gpus_per_task=1,time=60"``), passed through. ``from_study``: replay the study recorded in
    that directory (model, variant records, dataset, recipe, seeds) into ``out``, a new directory.
    ``tensorboard``: also write each run's metrics as TensorBoard events (``runs/<variant>/seed<k>/tensorboard``).

    With every argument left at its default this is the default study: the tiny demo net on the embedded
    ``textures`` data, operators max, avg, conv, convpool, blur x 3 seeds, the ``demo`` recipe (``fast``
    shortened to 4 epochs on a fixed 2500-image subset). ``out`` defaults to ``./runs/<auto name>``, a
    name derived from the study definition, so repeating a call resumes the same directory.
    ``callback(event, **info)`` gets ``study_info`` (adaptations and warnings, once), ``study_start``,
    ``run_skip``, ``run_start``, the trainer's ``start``, ``step``, ``epoch``, ``end`` events, and ``study_end``;
    ``progress=True`` shows rich progress bars instead (terminal or notebook). Extra keyword arguments override
    recipe fields.
    """
    opts = StudyOptions(model, variants, seeds, epochs, dataset, data_dir, download, recipe, device, out, shard,
                        callback, report, retry_failed, threads, model_options, weights, per_site, jobs, launcher,
                        slurm, from_study, tensorboard, dict(recipe_overrides))  # fmt: skip
    if progress and callback is None:
        with StudyProgress(enabled=True) as prog:
            return _run(dataclasses.replace(opts, callback=prog))
    return _run(opts)


def _run(o: StudyOptions) -> StudyResult:
    """validate, plan, run (here, in workers or as cluster tasks), finish."""
    cb: Callback = o.callback or _ignore
    if o.tensorboard:
        cb = TensorBoardLogger(cb)  # fails before any work when the package is missing
    call = _python_call(o)
    if o.from_study is not None:
        o = _replay(o)
        call = f"poolstride.compare(from_study={str(o.from_study)!r}, out={str(o.out)!r})"
    st = _validate(o)
    _create(st, o, call)
    cb("study_info", lines=st.info_lines)
    data = DeviceData(st.ds, st.devices[0], st.rec.train_subset, st.rec.test_subset, st.rec.channels_last)
    todo = _plan(st, o.retry_failed, data, cb)
    if o.launcher is not None:
        return _submit(o, st, todo, cb)
    n_jobs, jobs_why = resolve_jobs(o.jobs, len(todo), o.threads, st.obj is not None,
                                    len(todo) * _steps_per_epoch(st, data) * st.rec.epochs, st.devices)  # fmt: skip
    if n_jobs > 1:
        cb("study_jobs", jobs=n_jobs, why=jobs_why)
        run_parallel(n_jobs, torch.get_num_threads(), cb, st.devices, todo=todo, out_dir=st.out_dir, study=st.study,
                     ds=st.ds, rec=st.rec, ds_name=st.ds_name)  # fmt: skip
        busy = [f"{v.name}/seed{s}" for _, v, s in todo if read_result(run_dir_of(st.out_dir, v, s)) is None]
    else:
        busy = run_todo(todo, st.out_dir, st.study, st.ds, st.rec, st.devices[0], st.ds_name, cb, data)
    return _finish(st, busy, o.report, cb)


def _validate(o: StudyOptions) -> _Study:
    """Check every argument, load the data and build every variant once, before anything is written."""
    shard_t = parse_shard(o.shard)
    parse_jobs(o.jobs)
    set_threads(o.threads)
    overrides = {k: v for k, v in o.recipe_overrides.items() if v is not None}
    if o.epochs is not None:
        overrides["epochs"] = o.epochs
    rec = get_recipe(o.recipe, **overrides)
    model_str, obj = resolve_model_arg(o.model)
    check_model(model_str, obj)
    if o.launcher is not None:  # fail before anything is written
        _launcher_args(o.launcher, o.slurm, o.jobs, shard_t, 1)
        if obj is not None and model_str.startswith(PYTHON_PREFIX):
            raise StudyError(
                f"{model_str} is a Python object: cluster tasks rebuild the model from its record in study.json; "
                "give the model as package.module:callable"
            )
    wrec = weights_record(o.weights) if o.weights is not None else None
    vlist = make_variants(model_str, DEFAULT if o.variants is None and o.per_site is not None else o.variants,
                          o.model_options)  # fmt: skip
    vlist = [
        dataclasses.replace(v, obj=obj if v.model == model_str else None, weights=wrec or v.weights) for v in vlist
    ]
    seed_list = parse_seeds(o.seeds)
    ds = load_dataset(o.dataset, o.data_dir, download=o.download)
    check_fits(ds, rec.train_subset, rec.batch_size)
    ds_name = o.dataset if isinstance(o.dataset, str) else str(getattr(ds, "name", "dataset"))
    devices = [resolve_device(d.strip()) for d in str(o.device).split(",") if d.strip()] or [resolve_device("auto")]
    info_lines: list[str] = []
    if o.per_site is not None:
        vlist, info_lines = _add_site_variants(vlist, o.per_site, model_str, ds)
    info_lines = _probe_variants(vlist, ds) + info_lines
    return _Study(rec, vlist, seed_list, ds, ds_name, devices, obj, shard_t, info_lines, model_str, wrec)


def _add_site_variants(vlist: list[Variant], per_site: str, model_str: str, ds: Any) -> tuple[list[Variant], list[str]]:
    """``per_site``: one variant per site the policy matches, beside the unchanged ``default`` baseline."""
    base = next((v for v in vlist if v.name == DEFAULT), None)
    if base is None:
        base = dataclasses.replace(vlist[0], name=DEFAULT, slug=DEFAULT, downsample=None, policy=None)
        vlist.insert(0, base)
    size = tuple(int(x) for x in ds.x_train.shape[1:])
    site_vs, notes = per_site_variants(base, per_site, len(ds.classes), size)
    lines = [f"warning: {n}" for n in notes]
    lines.append(
        f"per-site study: '{per_site}' at {len(site_vs)} site(s) of {model_str}, one variant each, beside "
        f"the unchanged {DEFAULT}: {', '.join(v.name for v in site_vs)}"
    )
    return unique([*vlist, *site_vs]), lines


def _create(st: _Study, o: StudyOptions, call: str) -> None:
    """Write study.json (or check that the directory holds this very study) and set ``st.out_dir``, ``st.study``."""
    model_str = st.model_str
    defn = definition(model_str, st.ds_name, st.rec, st.vlist, st.seeds)
    st.out_dir = Path(o.out) if o.out is not None else Path("runs") / auto_name(defn)
    _check_writable(st.out_dir)
    ds, dev = st.ds, st.devices[0]
    study = {
        "schema": schema.STUDY,
        "name": st.out_dir.name,
        **defn,
        "baseline": st.vlist[0].name,
        "dataset_info": {
            "n_train": int(len(ds.x_train)),
            "n_test": int(len(ds.x_test)),
            "input_size": list(ds.x_train.shape[1:]),
            "num_classes": len(ds.classes),
        },
        "model_source": {
            "model": model_str,
            "python_object": model_str.startswith(PYTHON_PREFIX),
            "options": dict(o.model_options or {}),
            "weights": st.weights,
            "per_site": o.per_site,
            "notes": st.info_lines,
        },
        "provenance": {
            **provenance.record(dev, precision_name(dev, st.rec.amp), torch.get_num_threads(), call),
            "data_dir": None if o.data_dir is None else str(Path(o.data_dir).resolve()),
            "replay_of": None if o.from_study is None else str(Path(o.from_study).resolve()),
        },
        "created": tio.utc_now(),
        "poolstride": __version__,
    }
    st.study = create_or_check_study(st.out_dir, study)


def _steps_per_epoch(st: _Study, data: DeviceData) -> int:
    return data.steps_per_epoch(min(st.rec.batch_size, data.n_train))


def _plan(st: _Study, retry_failed: bool, data: DeviceData, cb: Callback) -> Todo:
    """The runs of this shard still to train (``retry_failed``: failed ones too, their old result kept aside),
    in the study's order: seed-major, so a full comparison appears early."""
    order = [(v, s) for s in st.seeds for v in st.vlist]
    mine = [(k, v, s) for k, (v, s) in enumerate(order) if st.shard is None or k % st.shard[1] == st.shard[0]]
    todo = []
    for k, v, s in mine:
        rd = run_dir_of(st.out_dir, v, s)
        res = read_result(rd)
        if res is not None and retry_failed and res.get("status") != "ok":
            tio.set_aside(rd / "result.json", f"result.failed-{int(time.time())}.json")
            res = None
        if res is None:
            todo.append((k, v, s))
        else:
            cb("run_skip", variant=v.name, seed=s, result=res)
    spe = _steps_per_epoch(st, data)
    cb("study_start", study_dir=str(st.out_dir), runs_total=len(order), runs_mine=len(mine), runs_todo=len(todo),
       steps_per_run=spe * st.rec.epochs, steps_per_epoch=spe, shard=st.shard,
       threads=torch.get_num_threads())  # fmt: skip
    return todo


def _finish(st: _Study, busy: list[str], report: bool, cb: Callback) -> StudyResult:
    """The summary, the report (``report``) and the decision."""
    summ = StudyResult(write_summary(st.out_dir, st.study))
    summ["study_dir"] = str(st.out_dir)
    summ["busy"] = busy
    if report and summ["runs_done"]:
        summ["report"] = write_report_safely(st.out_dir)
    summ["decision"] = _decision(st.out_dir, summ)
    cb("study_end", summary=summ)
    return summ


def _python_call(o: StudyOptions) -> str:
    """The Python call that made a study (recorded when compare() is not run from the CLI)."""
    model, dataset, recipe = o.model, o.dataset, o.recipe
    parts = [f"model={model if isinstance(model, str) else type(model).__name__!r}"]
    for k, v in (("variants", o.variants), ("seeds", o.seeds), ("per_site", o.per_site), ("weights", o.weights),
                 ("epochs", o.epochs)):  # fmt: skip
        if v is not None:
            parts.append(f"{k}={v!r}")
    parts.append(f"dataset={dataset if isinstance(dataset, str) else getattr(dataset, 'name', 'dataset')!r}")
    parts.append(f"recipe={recipe if isinstance(recipe, str) else getattr(recipe, 'name', '?')!r}")
    parts += [f"{k}={v!r}" for k, v in o.recipe_overrides.items() if v is not None]
    return f"poolstride.compare({', '.join(parts)})"


def _replay(o: StudyOptions) -> StudyOptions:
    """``o`` with the model, variant records, seeds, dataset, recipe and data directory of the study recorded in
    ``o.from_study`` (and no option that would change them)."""
    src = o.from_study
    assert src is not None
    sd = Path(src)
    old = read_existing_study(sd, "--from")
    if o.out is None:
        raise StudyError("--from needs --out: a replay goes into a new directory")
    if Path(o.out).resolve() == sd.resolve():
        raise StudyError("--out is the study being replayed; give a new directory")
    if str(old.get("model", "")).startswith(PYTHON_PREFIX) or old.get("dataset") == "dataset":
        raise StudyError(f"--from {src}: the study was made from Python objects; replay it from Python")
    rec = Recipe.from_dict(old["recipe"])
    add_study_import_path(old)
    prov = old.get("provenance") or {}
    return dataclasses.replace(
        o, model=old["model"], variants=[Variant.from_dict(v) for v in old["variants"]], seeds=old["seeds"],
        dataset=old["dataset"], recipe=rec, data_dir=o.data_dir or prov.get("data_dir"), weights=None,
        per_site=None, model_options=None, epochs=None, recipe_overrides={},
    )  # fmt: skip


def _launcher_args(
    launcher: str, slurm: str | Mapping[str, Any] | None, jobs: int | str | None, shard_t: Any, n_todo: int
) -> tuple[int, dict[str, Any]]:
    """(array tasks, sbatch parameters), validated before anything is written."""
    if launcher not in LAUNCHERS:
        raise StudyError(f"unknown --launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    if shard_t is not None:
        raise StudyError("--shard and --launcher do not mix: the launcher makes the shards (--jobs N tasks)")
    params = parse_params(slurm)
    n = parse_jobs(jobs)
    return (max(1, n_todo) if n is None else n), params


def _submit(o: StudyOptions, st: _Study, todo: Todo, cb: Callback) -> StudyResult:
    """Submit ``o.jobs`` cluster tasks (``o.launcher``), each a shard of the study directory; returns at once."""
    assert o.launcher is not None
    launcher, out_dir = o.launcher, st.out_dir
    n, params = _launcher_args(launcher, o.slurm, o.jobs, st.shard, len(todo))
    summ = StudyResult(write_summary(out_dir, st.study))
    summ["study_dir"] = str(out_dir)
    if not todo:
        summ["submitted"] = None
        cb("study_submitted", jobs=[], tasks=0, study_dir=str(out_dir), launcher=launcher)
        return summ
    n = min(n, len(todo))
    task_args = {"dataset": o.dataset, "data_dir": o.data_dir, "device": o.device, "threads": o.threads,
                 "download": o.download}  # fmt: skip
    handles = submit(launcher, out_dir, n, params, task_args)
    ids = [str(j.job_id) for j in handles]
    summ["submitted"] = {"launcher": launcher, "tasks": n, "jobs": ids, "params": params,
                         "watch": f"poolstride status {out_dir}"}  # fmt: skip
    summ.jobs = handles  # type: ignore[attr-defined]
    cb("study_submitted", jobs=ids, tasks=n, study_dir=str(out_dir), launcher=launcher)
    return summ


def _decision(out_dir: Path, summ: dict[str, Any]) -> dict[str, Any] | None:
    """The report's decision (from the report just written, else built without figures)."""
    if not summ["runs_done"]:
        return None
    path = out_dir / "report" / "report.json"
    try:
        if summ.get("report") and path.exists():
            return dict(json.loads(path.read_text())["decision"])
        return dict(build_report(out_dir)["decision"])
    except Exception as e:  # noqa: BLE001 - the study is done; a report problem must not hide it
        return {"headline": f"no decision: the report failed ({type(e).__name__}: {e})", "sentences": [],
                "caveats": [], "recommendation": None, "basis": None}  # fmt: skip


def _probe_variants(vlist: list[Variant], ds: Any) -> list[str]:
    """Build every variant (seed 0) and run one image through it, so that a bad variant fails before any
    training; returns the lines to print once: what was adapted, and warnings."""
    size = tuple(int(x) for x in ds.x_train.shape[1:])
    lines: list[str] = []
    seen: set[str] = set()
    warned_map = False
    for v in vlist:
        try:
            built = build_model(RunSpec(v, 0), len(ds.classes), size)
            m = built.model
            m.eval()
            with torch.no_grad():
                m(torch.zeros(1, *size))
        except PoolstrideError as e:
            msg = str(e).splitlines()[0]
            raise StudyError(msg if v.name in msg else f"variant {v.name!r}: {msg}") from None
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise StudyError(
                f"variant {v.name!r} cannot run on {'x'.join(map(str, size))} input: {str(e).splitlines()[0][:200]}"
            ) from None
        d = describe(v)
        for line in ([d] if d else []) + built.adaptations:
            if line not in seen:
                seen.add(line)
                lines.append(line)
        for w in built.warnings:
            lines.append(f"warning: {w}")
        if not warned_map:
            w2 = feature_map_warning(v, m, size)
            if w2:
                lines.append(f"warning: {w2}")
                warned_map = True
    return lines
