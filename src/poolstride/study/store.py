"""A study directory as the study engine keeps it: ``study.json`` (created once, checked on resume), the run
locks, the progress (:func:`status`) and the summary rebuilt from the result files.

The lowest module of :mod:`poolstride.study`: the runner, the ``--jobs`` workers, the cluster tasks and
:func:`~poolstride.study.core.compare` all build on it, and it imports none of them.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ..errors import PoolstrideError
from ..results import io as tio
from ..results import schema, stats
from ..results.study import StudyFileError, StudySummary, read_result, read_study, run_dir_of


class StudyError(PoolstrideError):
    """A study that cannot run: different definition in the directory, bad shard, unwritable output..."""


# ---- study.json ------------------------------------------------------------------------------------------------

#: the entries of study.json that define a study: a directory is resumed only by the same definition
DEFINITION_KEYS = ("model", "dataset", "recipe", "variants", "seeds")


def definition_entry(defn: dict[str, Any], k: str) -> Any:
    """A definition entry as compared on resume (the recipe's free-text ``notes`` do not count)."""
    v = defn.get(k)
    if k == "recipe" and isinstance(v, dict):
        return {a: b for a, b in v.items() if a != "notes"}
    return v


def create_or_check_study(out: Path, study: dict[str, Any]) -> dict[str, Any]:
    """Write study.json exclusively (first process wins) or check that the existing one matches."""
    path = out / "study.json"
    if not path.exists() and ((out / "config.json").exists() or (out / "result.json").exists()):
        raise StudyError(f"{out} is a single-run directory (poolstride train), not a study; use another --out")
    if not path.exists():
        tio.create_exclusive(path, json.dumps(study, indent=2) + "\n")
    try:
        old = read_study(out)
    except StudyFileError as e:
        if e.kind == "schema":
            raise StudyError(
                f"{out} holds something else than a poolstride study ({path.name}); use another --out"
            ) from None
        raise StudyError(f"{path} is unreadable or corrupted ({e.detail}); use another --out") from None
    diff = [k for k in DEFINITION_KEYS if definition_entry(old, k) != definition_entry(study, k)]
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


def read_existing_study(study_dir: str | Path, what: str | None = None) -> dict[str, Any]:
    """study.json of an existing study, for :func:`status` and the replays (``what``: the option that named the
    directory, e.g. ``--from``); a missing, unreadable or foreign one is a :class:`StudyError`."""
    sd = Path(study_dir)
    try:
        return read_study(sd)
    except StudyFileError as e:
        if e.kind == "schema":
            raise StudyError(f"{what}: {e}" if what else str(e)) from None
        if what is None and e.missing:
            raise StudyError(f"{sd} is not a study directory (no study.json)") from None
        if what is None:
            raise StudyError(f"{sd / 'study.json'} is unreadable ({e.detail})") from None
        if e.missing:
            raise StudyError(f"{what} {study_dir}: not a study directory (no study.json)") from None
        raise StudyError(f"{what} {study_dir}: study.json is unreadable ({e.detail})") from None


# ---- run locks -------------------------------------------------------------------------------------------------

STALE_LOCK_S = 6 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_lock(lock: Path) -> tuple[dict[str, Any], float]:
    """(holder record, age in seconds) of a lock file; raises OSError or ValueError when it cannot be read."""
    return json.loads(lock.read_text() or "{}"), time.time() - lock.stat().st_mtime


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
                held, age = _read_lock(lock)
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


def _lock_live(rd: Path) -> bool:
    try:
        held, age = _read_lock(rd / ".lock")
    except (OSError, ValueError):
        return False
    if held.get("host") == socket.gethostname():
        return isinstance(held.get("pid"), int) and _pid_alive(held["pid"])
    return age <= STALE_LOCK_S


def _lock_info(rd: Path) -> dict[str, Any]:
    try:
        held, _ = _read_lock(rd / ".lock")
    except (OSError, ValueError):
        return {}
    info: dict[str, Any] = {k: held.get(k) for k in ("host", "pid")}
    try:
        with open(rd / "metrics.jsonl") as f:
            info["epochs_done"] = sum(1 for _ in f)
    except OSError:
        info["epochs_done"] = 0
    return info


# ---- progress --------------------------------------------------------------------------------------------------


def _run_state(rd: Path) -> str:
    try:
        res = read_result(rd)
    except PoolstrideError:
        return "failed"
    if res is not None:
        return "done" if res.get("status") == "ok" else "failed"
    return "running" if _lock_live(rd) else "pending"


def status(study_dir: str | Path) -> dict[str, Any]:
    """Runs done / failed / running / pending of a study directory (local or on shared storage), per variant.

    ``running``: a run whose ``.lock`` is held by a live process on this host, or by a process on another host
    within the last 6 h (its lock is refreshed when it is created; a longer run on another host is still counted).
    A lock of a dead process on this host counts as ``pending`` (it will be taken over)."""
    sd = Path(study_dir)
    study = read_existing_study(sd)
    rows, running = [], []
    totals = {"done": 0, "failed": 0, "running": 0, "pending": 0}
    for v in study["variants"]:
        row = {"variant": v["name"], "done": 0, "failed": 0, "running": 0, "pending": 0}
        for seed in study["seeds"]:
            rd = run_dir_of(sd, v, seed)
            key = _run_state(rd)
            if key == "running":
                running.append({"variant": v["name"], "seed": seed, **_lock_info(rd)})
            row[key] += 1
            totals[key] += 1
        rows.append(row)
    total = len(study["variants"]) * len(study["seeds"])
    complete = totals["done"] + totals["failed"] == total
    return {"study_dir": str(sd), "name": study.get("name"), "runs_total": total, **totals, "complete": complete,
            "variants": rows, "running_runs": running}  # fmt: skip


# ---- summary ---------------------------------------------------------------------------------------------------


def ci95(values: Sequence[float]) -> tuple[float, float | None, tuple[float, float] | None]:
    """Mean, sample std and the 95 % t-interval of the mean (None for fewer than 2 values), as
    :func:`poolstride.results.stats.summarize` computes them."""
    s = stats.summarize(values)
    return s["mean"], s["std"], (s["ci"][0], s["ci"][1]) if s["ci"] else None


SUMMARY_COLUMNS = [
    "variant", "seed", "status", "acc", "loss", "shift_consistency", "shift_consistency_circular", "params",
    "macs", "other_ops", "latency_ms", "train_time_s", "images_per_s", "achieved_gflops", "peak_rss_mb", "reason",
]  # fmt: skip

#: the per-run numbers a variant's row averages over its finished runs (``<key>_mean``)
MEAN_KEYS = ("loss", "shift_consistency", "shift_consistency_circular", "train_time_s", "images_per_s",
             "latency_ms", "achieved_gflops")  # fmt: skip


def _variant_row(v: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's row of the summary: accuracy mean, std and 95 % t-interval (:mod:`poolstride.results.stats`),
    means of :data:`MEAN_KEYS`, costs, and the reasons of its failed runs."""
    ok = [r for r in results if r.get("status") == "ok" and r.get("acc") is not None]
    row: dict[str, Any] = {"name": v["name"], "model": v["model"], "downsample": v["downsample"],
                           "n": len(ok), "failed": len(results) - len(ok)}  # fmt: skip
    if ok:
        acc = stats.summarize([r["acc"] for r in ok])
        row.update(acc_mean=acc["mean"], acc_std=acc["std"], acc_ci95=acc["ci"])
        for key in MEAN_KEYS:
            row[f"{key}_mean"] = stats.summarize([r[key] for r in ok if r.get(key) is not None])["mean"]
        rss = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None]
        row["peak_rss_mb_max"] = max(rss) if rss else None
        row["shift_consistency_std"] = stats.summarize([r["shift_consistency"] for r in ok
                                                        if r.get("shift_consistency") is not None])["std"]  # fmt: skip
        for key in ("params", "macs", "other_ops", "activation_bytes"):
            row[key] = ok[0].get(key)
    else:
        row.update(acc_mean=None, acc_std=None, acc_ci95=None)
        if results:
            row["params"] = results[0].get("params")
            row["macs"] = results[0].get("macs")
    row["reasons"] = sorted({r.get("reason") for r in results if r.get("status") != "ok" and r.get("reason")})
    return row


def summarize_study(study_dir: str | Path, study: dict[str, Any] | None = None) -> StudySummary:
    """The study summary (``poolstride.summary/1``) from the result files on disk."""
    sd = Path(study_dir)
    if study is None:
        study = read_study(sd)
    runs: list[dict[str, Any]] = []
    variants_out = []
    for v in study["variants"]:
        results = []
        for s in study["seeds"]:
            try:
                r = read_result(run_dir_of(sd, v, s))
            except PoolstrideError:
                r = None
            if r is not None:
                results.append(r)
        runs.extend(results)
        variants_out.append(_variant_row(v, results))
    total = len(study["variants"]) * len(study["seeds"])
    summary: StudySummary = {
        "schema": schema.SUMMARY,
        "study": study,
        "complete": len(runs) == total,
        "runs_done": len(runs),
        "runs_total": total,
        # the largest resident memory any run's process reached (each --jobs worker is its own process)
        "peak_rss_mb_max": max((r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None), default=None),
        "variants": variants_out,
        "runs": runs,
        "updated": tio.utc_now(),
    }
    return cast(StudySummary, tio.clean_json(summary))


def write_summary(study_dir: str | Path, study: dict[str, Any] | None = None) -> StudySummary:
    """Rebuild ``summary.json`` and ``summary.csv`` (one row a run) from the result files; returns the summary."""
    sd = Path(study_dir)
    summ = summarize_study(sd, study)
    tio.write_json(sd / "summary.json", summ)
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUMMARY_COLUMNS)
    for r in summ["runs"]:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in SUMMARY_COLUMNS])
    tio.write_text(sd / "summary.csv", buf.getvalue())
    return summ
