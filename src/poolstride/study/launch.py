"""Studies on a cluster: a job array through submitit (``compare --launcher slurm``), one shard per task.

The submitting process validates everything and writes ``study.json`` (so a bad variant fails on the login
node, in one line, not in 32 queued tasks), then submits N tasks. Task i runs shard ``i/N`` of the same study
directory on shared storage with :func:`run_task`: it rebuilds every variant from its record in study.json, claims
runs by lock file, writes results atomically, and the task that finds the study complete writes the summary and
the report (``poolstride report DIR`` rebuilds it any time). ``poolstride status DIR`` shows progress from
anywhere; failed or killed runs are picked up by submitting the same command again (``--retry-failed`` also
re-runs runs that ended as failed).

Slurm parameters are a thin pass-through to ``submitit.SlurmExecutor.update_parameters`` (its names are
sbatch's: ``partition``, ``time`` in minutes, ``gpus_per_task``, ``cpus_per_task``, ``mem``, ...).
``--launcher local`` runs the same tasks as local subprocesses through ``submitit.LocalExecutor`` (what the tests
use; handy on a workstation too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PoolstrideError
from ..extras import first_line, import_optional
from ..resolve import add_study_import_path
from ..results import io as tio
from ..results.study import read_result, read_study, run_dir_of
from ..train.data import DeviceData, load_dataset
from ..train.engine import resolve_device, set_threads
from ..train.recipe import Recipe
from ..variants import Variant
from .runner import run_todo, write_report_safely
from .store import status, write_summary

LAUNCHERS = ("slurm", "local")


def parse_params(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``"partition=gpu,gpus_per_task=1,time=60"`` -> a dict (numbers as ints)."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    out: dict[str, Any] = {}
    for item in str(text).split(","):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise PoolstrideError(f"bad --slurm item {item!r}; expected key=value,key=value (sbatch names)")
        val: Any = v.strip()
        with contextlib.suppress(ValueError):
            val = int(val)
        out[k.strip()] = val
    return out


def _executor(launcher: str, folder: Path, params: dict[str, Any], tasks: int) -> Any:
    submitit = import_optional("submitit", f"--launcher {launcher}")
    ex: Any
    if launcher == "slurm":
        ex = submitit.SlurmExecutor(folder=str(folder))
        ex.update_parameters(array_parallelism=tasks, **params)
    elif launcher == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=int(params.pop("timeout_min", 24 * 60)), **params)
    else:
        raise PoolstrideError(f"unknown --launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    return ex


def submit(
    launcher: str,
    study_dir: Path,
    tasks: int,
    params: Mapping[str, Any] | None,
    task_args: dict[str, Any],
) -> list[Any]:
    """Submit ``tasks`` tasks of :func:`run_task` (shard i/tasks each); returns the submitit jobs."""
    folder = Path(study_dir) / "submitit"
    folder.mkdir(parents=True, exist_ok=True)
    ex = _executor(launcher, folder, dict(params or {}), tasks)
    try:
        with ex.batch():
            jobs = [ex.submit(run_task, str(study_dir), i, tasks, **task_args) for i in range(tasks)]
    except Exception as e:  # noqa: BLE001 - sbatch errors come in many classes; say what failed, in one line
        raise PoolstrideError(f"submitting to {launcher} failed: {first_line(e)}") from None
    record = {"launcher": launcher, "tasks": tasks, "params": dict(params or {}),
              "jobs": [str(j.job_id) for j in jobs]}  # fmt: skip
    tio.write_json(folder / "last-submission.json", record)
    return jobs


def run_task(
    study_dir: str,
    index: int,
    count: int,
    dataset: Any,
    data_dir: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """One array task: train this task's shard of the study in ``study_dir`` (rebuilt from study.json); the task
    that completes the study writes the summary and the report. Returns :func:`status`."""
    sd = Path(study_dir)
    study = read_study(sd)
    add_study_import_path(study)
    set_threads(threads)
    rec = Recipe.from_dict(study["recipe"])
    variants = [Variant.from_dict(v) for v in study["variants"]]
    ds = load_dataset(dataset, data_dir, download=download)
    dev = resolve_device(device)
    order = [(v, s) for s in study["seeds"] for v in variants]
    todo = [(k, v, s) for k, (v, s) in enumerate(order)
            if k % count == index and read_result(run_dir_of(sd, v, s)) is None]  # fmt: skip
    data = DeviceData(ds, dev, rec.train_subset, rec.test_subset, rec.channels_last)
    run_todo(todo, sd, study, ds, rec, dev, study["dataset"], lambda event, **kw: None, data)
    st = status(sd)
    if st["complete"]:
        write_summary(sd, study)
        write_report_safely(sd)
    return st


__all__ = ["LAUNCHERS", "parse_params", "run_task", "submit"]
