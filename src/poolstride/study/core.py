"""Studies: variants x seeds on one dataset with one recipe, stored as in docs/study-format.md.

Every (variant, seed) is a run with its own directory. Running the same study again resumes it: finished runs
(``result.json`` present) are skipped, an interrupted run continues from its last checkpoint, and the summary is
rebuilt from the result files on disk, so nothing is duplicated or lost. ``shard=(i, N)`` runs the runs whose
index k (in the study's fixed order) has ``k % N == i``, so N processes or machines can share one directory;
a per-run lock file keeps two unsharded processes from training the same run at once.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io as _io
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import PoolstrideError, SpecError
from ..results import io as tio
from ..train.data import DeviceData, check_fits, load_dataset
from ..train.engine import RunSpec, build_model, read_result, resolve_device, set_threads, train_run
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
from .workers import resolve_jobs, run_parallel

SCHEMA = "poolstride.study/1"
DEFAULT_MODEL = "tiny"
DEFAULT_DATASET = "textures"
DEFAULT_VARIANTS = "max,avg,conv,convpool,blur"
DEFAULT_SEEDS = 3
#: the default study's recipe (``poolstride compare`` with no arguments): sized for ~2.5 min on 2 quiet CPU cores
DEFAULT_RECIPE = "demo"

Callback = Callable[..., None]


class StudyError(PoolstrideError):
    """A study that cannot run: different definition in the directory, bad shard, unwritable output..."""


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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


_KEYS = ("model", "dataset", "recipe", "variants", "seeds")


def _key(defn: dict[str, Any], k: str) -> Any:
    """A definition entry as compared on resume (the recipe's free-text ``notes`` do not count)."""
    v = defn.get(k)
    if k == "recipe" and isinstance(v, dict):
        return {a: b for a, b in v.items() if a != "notes"}
    return v


def auto_name(defn: dict[str, Any]) -> str:
    key = {k: _key(defn, k) for k in _KEYS}
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


def _create_or_check_study(out: Path, study: dict[str, Any]) -> dict[str, Any]:
    """Write study.json exclusively (first process wins) or check that the existing one matches."""
    path = out / "study.json"
    if not path.exists() and ((out / "config.json").exists() or (out / "result.json").exists()):
        raise StudyError(f"{out} is a single-run directory (poolstride train), not a study; use another --out")
    if not path.exists():
        fd, tmp = tempfile_in(out, "study.json")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(study, indent=2) + "\n")
        try:
            os.link(tmp, path)  # atomic and exclusive
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StudyError(f"{path} is unreadable or corrupted ({e}); use another --out") from None
    if not isinstance(old, dict) or old.get("schema") != SCHEMA:
        raise StudyError(f"{out} holds something else than a poolstride study ({path.name}); use another --out")
    diff = [k for k in _KEYS if _key(old, k) != _key(study, k)]
    if diff:
        detail = "; ".join(_describe(k, old.get(k), study.get(k)) for k in diff)
        raise StudyError(
            f"{out} was created by a different command ({detail}); nothing was changed there. "
            "Use another --out, or repeat the original command to resume it"
        )
    return old


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "recipe" and isinstance(old, dict) and isinstance(new, dict):
        ks = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return "recipe: " + ", ".join(f"{k} {old.get(k)!r} vs {new.get(k)!r}" for k in ks[:4])
    if key == "variants":
        return f"variants {[v.get('name') for v in old or []]} vs {[v.get('name') for v in new or []]}"
    return f"{key} {old!r} vs {new!r}"


def tempfile_in(d: Path, name: str) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d)


# ---- run locks -----------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


STALE_LOCK_S = 6 * 3600


def acquire_lock(run_dir: Path) -> bool:
    """Claim a run: create ``run_dir/.lock`` exclusively. A lock left by a dead process on this host (or older
    than 6 h) is taken over. False when another live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock.read_text() or "{}")
                age = time.time() - lock.stat().st_mtime
            except (OSError, ValueError):
                held, age = {}, 0.0
            same_host = held.get("host") == me["host"]
            dead = same_host and isinstance(held.get("pid"), int) and not _pid_alive(held["pid"])
            if held.get("pid") == me["pid"] and same_host:
                return True
            if dead or age > STALE_LOCK_S or not held:
                with contextlib.suppress(OSError):
                    lock.unlink()
                continue
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return True
    return False


def release_lock(run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / ".lock").unlink()


# ---- summary -------------------------------------------------------------------------------------------------


def ci95(values: Sequence[float]) -> tuple[float, float | None, tuple[float, float] | None]:
    """Mean, sample std and the 95 % t-interval of the mean (None for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    h = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, sd, (mean - h, mean + h)


def run_dir_of(study_dir: Path, v: Variant | dict[str, Any], seed: int) -> Path:
    slug = v.slug if isinstance(v, Variant) else v["slug"]
    return Path(study_dir) / "runs" / slug / f"seed{seed}"


SUMMARY_COLUMNS = [
    "variant", "seed", "status", "acc", "loss", "shift_consistency", "shift_consistency_circular", "params",
    "macs", "other_ops", "latency_ms", "train_time_s", "images_per_s", "achieved_gflops", "peak_rss_mb", "reason",
]  # fmt: skip


def summarize(study_dir: str | Path, study: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study summary (``poolstride.summary/1``) from the result files on disk."""
    sd = Path(study_dir)
    if study is None:
        study = json.loads((sd / "study.json").read_text())
    runs: list[dict[str, Any]] = []
    variants_out = []
    seeds = study["seeds"]
    for v in study["variants"]:
        results = []
        for s in seeds:
            try:
                r = read_result(run_dir_of(sd, v, s))
            except PoolstrideError:
                r = None
            if r is not None:
                results.append(r)
        runs.extend(results)
        ok = [r for r in results if r.get("status") == "ok" and r.get("acc") is not None]
        row: dict[str, Any] = {"name": v["name"], "model": v["model"], "downsample": v["downsample"],
                               "n": len(ok), "failed": len(results) - len(ok)}  # fmt: skip
        if ok:
            m, sdv, ci = ci95([r["acc"] for r in ok])
            row.update(acc_mean=m, acc_std=sdv, acc_ci95=list(ci) if ci else None)
            for key in ("loss", "shift_consistency", "shift_consistency_circular", "train_time_s", "images_per_s",
                        "latency_ms", "achieved_gflops"):  # fmt: skip
                vals = [r[key] for r in ok if r.get(key) is not None]
                row[f"{key}_mean"] = sum(vals) / len(vals) if vals else None
            rss = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
            row["peak_rss_mb_max"] = max(rss) if rss else None
            sc = [r["shift_consistency"] for r in ok if r.get("shift_consistency") is not None]
            row["shift_consistency_std"] = ci95(sc)[1] if sc else None
            for key in ("params", "macs", "other_ops", "activation_bytes"):
                row[key] = ok[0].get(key)
        else:
            row.update(acc_mean=None, acc_std=None, acc_ci95=None)
            if results:
                row["params"] = results[0].get("params")
                row["macs"] = results[0].get("macs")
        row["reasons"] = sorted({r.get("reason") for r in results if r.get("status") != "ok" and r.get("reason")})
        variants_out.append(row)
    total = len(study["variants"]) * len(seeds)
    return tio.clean_json(
        {
            "schema": "poolstride.summary/1",
            "study": study,
            "complete": len(runs) == total,
            "runs_done": len(runs),
            "runs_total": total,
            # the largest resident memory any run's process reached (each --jobs worker is its own process)
            "peak_rss_mb_max": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None), default=None),
            "variants": variants_out,
            "runs": runs,
            "updated": _now(),
        }
    )


def write_summary(study_dir: str | Path, study: dict[str, Any] | None = None) -> dict[str, Any]:
    sd = Path(study_dir)
    summ = summarize(sd, study)
    tio.write_json(sd / "summary.json", summ)
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for r in summ["runs"]:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in SUMMARY_COLUMNS])
    tio.write_text(sd / "summary.csv", buf.getvalue())
    return summ


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
        from .render import summary_table

        return summary_table(self)

    def __rich__(self) -> Any:
        return self.table

    def _repr_html_(self) -> str:
        from rich.console import Console

        c = Console(record=True, width=120, file=_io.StringIO())
        c.print(self.table)
        for line in (self.decision or {}).get("sentences", []):
            c.print(line, markup=False, highlight=False)
        return c.export_html(inline_styles=True)


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
    if progress and callback is None:
        from .render import StudyProgress

        with StudyProgress(enabled=True) as prog:
            return compare(
                model, variants, seeds, epochs, dataset, data_dir, download, recipe, device, out, shard, prog,
                report, retry_failed, threads, model_options, weights, per_site, False, jobs, launcher, slurm,
                from_study, tensorboard, **recipe_overrides,
            )  # fmt: skip
    cb = callback or (lambda event, **kw: None)
    if tensorboard:
        from .tensorboard import TensorBoardLogger

        cb = TensorBoardLogger(cb)
    call = _python_call(model, variants, seeds, dataset, recipe, per_site, weights, recipe_overrides, epochs)
    if from_study is not None:
        model, variants, seeds, dataset, recipe, data_dir = _replay(from_study, out, data_dir)
        weights, per_site, model_options, epochs, recipe_overrides = None, None, None, None, {}
        call = f"poolstride.compare(from_study={str(from_study)!r}, out={str(out)!r})"
    shard_t = parse_shard(shard)
    set_threads(threads)
    overrides = {k: v for k, v in recipe_overrides.items() if v is not None}
    if epochs is not None:
        overrides["epochs"] = epochs
    rec = get_recipe(recipe, **overrides)
    model_str, obj = resolve_model_arg(model)
    check_model(model_str, obj)
    if launcher is not None:  # fail before anything is written
        _launcher_args(launcher, slurm, jobs, shard_t, 1)
        if obj is not None and model_str.startswith(PYTHON_PREFIX):
            raise StudyError(
                f"{model_str} is a Python object: cluster tasks rebuild the model from its record in study.json; "
                "give the model as package.module:callable"
            )
    wrec = weights_record(weights) if weights is not None else None
    if variants is None and per_site is not None:
        vlist = make_variants(model_str, DEFAULT, model_options)
    else:
        vlist = make_variants(model_str, variants, model_options)
    vlist = [
        dataclasses.replace(v, obj=obj if v.model == model_str else None, weights=wrec or v.weights) for v in vlist
    ]
    seed_list = parse_seeds(seeds)
    ds = load_dataset(dataset, data_dir, download=download)
    check_fits(ds, rec.train_subset, rec.batch_size)
    ds_name = dataset if isinstance(dataset, str) else str(getattr(ds, "name", "dataset"))
    devices = [resolve_device(d.strip()) for d in str(device).split(",") if d.strip()] or [resolve_device("auto")]
    dev = devices[0]
    size = tuple(int(x) for x in ds.x_train.shape[1:])
    info_lines: list[str] = []
    if per_site is not None:
        base = next((v for v in vlist if v.name == DEFAULT), None)
        if base is None:
            base = dataclasses.replace(vlist[0], name=DEFAULT, slug=DEFAULT, downsample=None, policy=None)
            vlist.insert(0, base)
        site_vs, notes = per_site_variants(base, per_site, len(ds.classes), size)
        vlist = unique([*vlist, *site_vs])
        info_lines += [f"warning: {n}" for n in notes]
        info_lines.append(
            f"per-site study: '{per_site}' at {len(site_vs)} site(s) of {model_str}, one variant each, beside "
            f"the unchanged {DEFAULT}: {', '.join(v.name for v in site_vs)}"
        )
    info_lines = _probe_variants(vlist, ds) + info_lines

    defn = definition(model_str, ds_name, rec, vlist, seed_list)
    out_dir = Path(out) if out is not None else Path("runs") / auto_name(defn)
    _check_writable(out_dir)
    study = {
        "schema": SCHEMA,
        "name": out_dir.name,
        **defn,
        "baseline": vlist[0].name,
        "dataset_info": {
            "n_train": int(len(ds.x_train)),
            "n_test": int(len(ds.x_test)),
            "input_size": list(ds.x_train.shape[1:]),
            "num_classes": len(ds.classes),
        },
        "model_source": {
            "model": model_str,
            "python_object": model_str.startswith(PYTHON_PREFIX),
            "options": dict(model_options or {}),
            "weights": wrec,
            "per_site": per_site,
            "notes": info_lines,
        },
        "provenance": {
            **provenance.record(dev, precision_name(dev, rec.amp), torch.get_num_threads(), call),
            "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
            "replay_of": None if from_study is None else str(Path(from_study).resolve()),
        },
        "created": _now(),
        "poolstride": __version__,
    }
    study = _create_or_check_study(out_dir, study)
    cb("study_info", lines=info_lines)

    order = [(v, s) for s in seed_list for v in vlist]  # seed-major: a full comparison appears early
    mine = [(k, v, s) for k, (v, s) in enumerate(order) if shard_t is None or k % shard_t[1] == shard_t[0]]
    data = DeviceData(ds, dev, rec.train_subset, rec.test_subset, rec.channels_last)
    spe = data.steps_per_epoch(min(rec.batch_size, data.n_train))
    todo = []
    for k, v, s in mine:
        rd = run_dir_of(out_dir, v, s)
        res = read_result(rd)
        if res is not None and retry_failed and res.get("status") != "ok":
            os.replace(rd / "result.json", rd / f"result.failed-{int(time.time())}.json")
            res = None
        if res is None:
            todo.append((k, v, s))
        else:
            cb("run_skip", variant=v.name, seed=s, result=res)
    cb(
        "study_start",
        study_dir=str(out_dir),
        runs_total=len(order),
        runs_mine=len(mine),
        runs_todo=len(todo),
        steps_per_run=spe * rec.epochs,
        steps_per_epoch=spe,
        shard=shard_t,
        threads=torch.get_num_threads(),
    )
    if launcher is not None:
        return _submit(launcher, slurm, jobs, out_dir, study, todo, obj, shard_t, cb,
                       {"dataset": dataset, "data_dir": data_dir, "device": device, "threads": threads,
                        "download": download})  # fmt: skip
    n_jobs, jobs_why = resolve_jobs(jobs, len(todo), threads, obj is not None, len(todo) * spe * rec.epochs, devices)
    if n_jobs > 1:
        cb("study_jobs", jobs=n_jobs, why=jobs_why)
        run_parallel(n_jobs, torch.get_num_threads(), cb, devices, todo=todo, out_dir=out_dir, study=study, ds=ds,
                     rec=rec, ds_name=ds_name)  # fmt: skip
        busy = [f"{v.name}/seed{s}" for _, v, s in todo if read_result(run_dir_of(out_dir, v, s)) is None]
    else:
        busy = run_todo(todo, out_dir, study, ds, rec, dev, ds_name, cb, data)
    summ = StudyResult(write_summary(out_dir, study))
    summ["study_dir"] = str(out_dir)
    summ["busy"] = busy
    if report and summ["runs_done"]:
        summ["report"] = _write_report(out_dir)
    summ["decision"] = _decision(out_dir, summ)
    cb("study_end", summary=summ)
    return summ


def _python_call(
    model: Any,
    variants: Any,
    seeds: Any,
    dataset: Any,
    recipe: Any,
    per_site: Any,
    weights: Any,
    overrides: Mapping[str, Any],
    epochs: Any,
) -> str:
    """The Python call that made a study (recorded when compare() is not run from the CLI)."""
    parts = [f"model={model if isinstance(model, str) else type(model).__name__!r}"]
    for k, v in (("variants", variants), ("seeds", seeds), ("per_site", per_site), ("weights", weights),
                 ("epochs", epochs)):  # fmt: skip
        if v is not None:
            parts.append(f"{k}={v!r}")
    parts.append(f"dataset={dataset if isinstance(dataset, str) else getattr(dataset, 'name', 'dataset')!r}")
    parts.append(f"recipe={recipe if isinstance(recipe, str) else getattr(recipe, 'name', '?')!r}")
    parts += [f"{k}={v!r}" for k, v in overrides.items() if v is not None]
    return f"poolstride.compare({', '.join(parts)})"


def _replay(src: str | Path, out: Any, data_dir: str | None) -> tuple[Any, ...]:
    """(model, variants, seeds, dataset, recipe, data_dir) of the study recorded in ``src``."""
    sd = Path(src)
    try:
        old = json.loads((sd / "study.json").read_text())
    except FileNotFoundError:
        raise StudyError(f"--from {src}: not a study directory (no study.json)") from None
    except (OSError, ValueError) as e:
        raise StudyError(f"--from {src}: study.json is unreadable ({e})") from None
    if out is None:
        raise StudyError("--from needs --out: a replay goes into a new directory")
    if Path(out).resolve() == sd.resolve():
        raise StudyError("--out is the study being replayed; give a new directory")
    if str(old.get("model", "")).startswith(PYTHON_PREFIX) or old.get("dataset") == "dataset":
        raise StudyError(f"--from {src}: the study was made from Python objects; replay it from Python")
    rec = Recipe.from_dict(old["recipe"])
    provenance.add_study_import_path(old)
    prov = old.get("provenance") or {}
    return (old["model"], [Variant.from_dict(v) for v in old["variants"]], old["seeds"], old["dataset"], rec,
            data_dir or prov.get("data_dir"))  # fmt: skip


def _launcher_args(
    launcher: str, slurm: str | Mapping[str, Any] | None, jobs: int | str | None, shard_t: Any, n_todo: int
) -> tuple[int, dict[str, Any]]:
    """(array tasks, sbatch parameters), validated before anything is written."""
    from .launch import LAUNCHERS, parse_params

    if launcher not in LAUNCHERS:
        raise StudyError(f"unknown --launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    if shard_t is not None:
        raise StudyError("--shard and --launcher do not mix: the launcher makes the shards (--jobs N tasks)")
    params = parse_params(slurm)
    if str(jobs).strip().lower() in ("auto", "none", ""):
        return max(1, n_todo), params
    try:
        n = int(jobs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StudyError(f"bad --jobs {jobs!r}; expected a positive integer or auto") from None
    if n < 1:
        raise StudyError(f"bad --jobs {n}; expected a positive integer")
    return n, params


def _submit(
    launcher: str,
    slurm: str | Mapping[str, Any] | None,
    jobs: int | str | None,
    out_dir: Path,
    study: dict[str, Any],
    todo: list[tuple[int, Variant, int]],
    obj: Any,
    shard_t: tuple[int, int] | None,
    cb: Callback,
    task_args: dict[str, Any],
) -> StudyResult:
    from .launch import submit

    n, params = _launcher_args(launcher, slurm, jobs, shard_t, len(todo))
    summ = StudyResult(write_summary(out_dir, study))
    summ["study_dir"] = str(out_dir)
    if not todo:
        summ["submitted"] = None
        cb("study_submitted", jobs=[], tasks=0, study_dir=str(out_dir), launcher=launcher)
        return summ
    n = min(n, len(todo)) if len(todo) else n
    handles = submit(launcher, out_dir, n, params, task_args)
    ids = [str(j.job_id) for j in handles]
    summ["submitted"] = {"launcher": launcher, "tasks": n, "jobs": ids, "params": params,
                         "watch": f"poolstride status {out_dir}"}  # fmt: skip
    summ.jobs = handles  # type: ignore[attr-defined]
    cb("study_submitted", jobs=ids, tasks=n, study_dir=str(out_dir), launcher=launcher)
    return summ


def run_todo(
    todo: list[tuple[int, Variant, int]],
    out_dir: Path,
    study: dict[str, Any],
    ds: Any,
    rec: Recipe,
    dev: torch.device,
    ds_name: str,
    callback: Callback,
    data: DeviceData | None = None,
) -> list[str]:
    """Claim (lock) and train every run of ``todo`` that no other process holds; return the ones held elsewhere.
    The loop every worker runs, in this process or in a ``--jobs`` worker."""
    cb = callback
    if data is None:
        data = DeviceData(ds, dev, rec.train_subset, rec.test_subset, rec.channels_last)
    busy = []
    for k, v, s in todo:
        rd = run_dir_of(out_dir, v, s)
        if read_result(rd) is not None:  # finished by another process meanwhile
            continue
        if not acquire_lock(rd):
            busy.append(f"{v.name}/seed{s}")
            cb("run_busy", variant=v.name, seed=s)
            continue
        try:
            if read_result(rd) is not None:
                continue
            cb("run_start", variant=v.name, seed=s, index=k, run_dir=str(rd))
            try:
                train_run(RunSpec(v, s), ds, rec, dev, rd, callback=cb, data=data)
            except PoolstrideError:
                raise
            except (RuntimeError, ValueError, FloatingPointError, MemoryError) as e:
                # the run fails with its reason; the study goes on
                tio.write_json(rd / "result.json", _failed(v, s, rec, ds_name, dev, f"{type(e).__name__}: {e}"))
            write_summary(out_dir, study)
        finally:
            release_lock(rd)
    return busy


def status(study_dir: str | Path) -> dict[str, Any]:
    """Runs done / failed / running / pending of a study directory (local or on shared storage), per variant.

    ``running``: a run whose ``.lock`` is held by a live process on this host, or by a process on another host
    within the last 6 h (its lock is refreshed when it is created; a longer run on another host is still counted).
    A lock of a dead process on this host counts as ``pending`` (it will be taken over)."""
    sd = Path(study_dir)
    try:
        study = json.loads((sd / "study.json").read_text())
    except FileNotFoundError:
        raise StudyError(f"{sd} is not a study directory (no study.json)") from None
    except (OSError, ValueError) as e:
        raise StudyError(f"{sd / 'study.json'} is unreadable ({e})") from None
    rows, running = [], []
    totals = {"done": 0, "failed": 0, "running": 0, "pending": 0}
    for v in study["variants"]:
        row = {"variant": v["name"], "done": 0, "failed": 0, "running": 0, "pending": 0}
        for seed in study["seeds"]:
            rd = run_dir_of(sd, v, seed)
            try:
                res = read_result(rd)
            except PoolstrideError:
                res = {"status": "failed"}
            if res is not None:
                key = "done" if res.get("status") == "ok" else "failed"
            else:
                key = "running" if _lock_live(rd) else "pending"
                if key == "running":
                    running.append({"variant": v["name"], "seed": seed, **_lock_info(rd)})
            row[key] += 1
            totals[key] += 1
        rows.append(row)
    total = len(study["variants"]) * len(study["seeds"])
    complete = totals["done"] + totals["failed"] == total
    return {"study_dir": str(sd), "name": study.get("name"), "runs_total": total, **totals, "complete": complete,
            "variants": rows, "running_runs": running}  # fmt: skip


def _lock_info(rd: Path) -> dict[str, Any]:
    try:
        held = json.loads((rd / ".lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}
    info: dict[str, Any] = {k: held.get(k) for k in ("host", "pid")}
    try:
        with open(rd / "metrics.jsonl") as f:
            info["epochs_done"] = sum(1 for _ in f)
    except OSError:
        info["epochs_done"] = 0
    return info


def _lock_live(rd: Path) -> bool:
    lock = rd / ".lock"
    try:
        held = json.loads(lock.read_text() or "{}")
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return False
    if held.get("host") == socket.gethostname():
        return isinstance(held.get("pid"), int) and _pid_alive(held["pid"])
    return age <= STALE_LOCK_S


def _decision(out_dir: Path, summ: dict[str, Any]) -> dict[str, Any] | None:
    """The report's decision (from the report just written, else built without figures)."""
    if not summ["runs_done"]:
        return None
    path = out_dir / "report" / "report.json"
    try:
        if summ.get("report") and path.exists():
            return dict(json.loads(path.read_text())["decision"])
        from ..report import build_report

        return dict(build_report(out_dir)["decision"])
    except Exception as e:  # noqa: BLE001 - the study is done; a report problem must not hide it
        return {"headline": f"no decision: the report failed ({type(e).__name__}: {e})", "sentences": [],
                "caveats": [], "recommendation": None, "basis": None}  # fmt: skip


def _failed(v: Variant, seed: int, rec: Recipe, ds_name: str, dev: torch.device, reason: str) -> dict[str, Any]:
    return {
        "schema": "poolstride.run/1", "variant": v.name, "seed": seed, "status": "failed", "reason": reason[:500],
        "model": v.model, "downsample": v.downsample, "dataset": ds_name, "epochs": rec.epochs, "recipe": rec.name,
        "acc": None, "loss": None, "shift_consistency": None, "shift_consistency_circular": None,
        "device": str(dev), "finished": _now(), "poolstride": __version__,
    }  # fmt: skip


def _write_report(out_dir: Path) -> str | None:
    from ..report import write_report

    try:
        return str(write_report(out_dir))
    except Exception as e:  # the study is done; a report problem must not hide it
        return f"report failed: {type(e).__name__}: {e}"


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
