"""The loop every study worker runs (in the calling process, in a ``--jobs`` worker or in a cluster task): claim
each run of its list by lock file, train it, record a failure as a failed result, and keep the summary current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import PoolstrideError
from ..report import write_report
from ..results import io as tio
from ..results import schema
from ..results.study import read_result, run_dir_of, write_result
from ..train.data import DeviceData
from ..train.engine import RunSpec, train_run
from ..train.recipe import Recipe
from ..variants import Variant
from .store import acquire_lock, release_lock, write_summary

Callback = Callable[..., None]
Todo = list[tuple[int, Variant, int]]


def run_todo(
    todo: Todo,
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
                write_result(rd, failed_result(v, s, rec, ds_name, dev, f"{type(e).__name__}: {e}"))
            write_summary(out_dir, study)
        finally:
            release_lock(rd)
    return busy


def failed_result(v: Variant, seed: int, rec: Recipe, ds_name: str, dev: torch.device, reason: str) -> dict[str, Any]:
    """The result record of a run that raised before it could write its own."""
    return {
        "schema": schema.RUN, "variant": v.name, "seed": seed, "status": "failed", "reason": reason[:500],
        "model": v.model, "downsample": v.downsample, "dataset": ds_name, "epochs": rec.epochs, "recipe": rec.name,
        "acc": None, "loss": None, "shift_consistency": None, "shift_consistency_circular": None,
        "device": str(dev), "finished": tio.utc_now(), "poolstride": __version__,
    }  # fmt: skip


def write_report_safely(out_dir: Path) -> str | None:
    """Write the study's report; its path, or a one-line reason when it failed (the study is done either way)."""
    try:
        return str(write_report(out_dir))
    except Exception as e:  # noqa: BLE001 - the study is done; a report problem must not hide it
        return f"report failed: {type(e).__name__}: {e}"
