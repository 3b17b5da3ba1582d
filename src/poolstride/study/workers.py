"""Local parallel runs (``compare --jobs N``): N worker processes take runs from the study's order.

Each worker is a fresh (spawned) process that walks the same list of runs and claims each with the run's lock
file, exactly as two unsharded ``poolstride compare`` processes sharing a directory do; results are written
atomically by the worker that trained the run. Every run keeps its own seed and torch thread count, so on a CPU
its metrics are bit-identical to ``--jobs 1``. The dataset's uint8 tensors are moved to shared memory once and
handed to the workers by handle (no copy per worker where the platform allows it). Workers send their events
(tagged with the run they belong to) to the parent, which renders one progress view; Ctrl-C in the parent stops
every worker, and whatever was interrupted resumes from its last checkpoint next time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue as _queue
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.multiprocessing as mp

from ..errors import PoolstrideError
from ..extras import first_line
from ..train.engine import set_threads
from .runner import run_todo

Callback = Callable[..., None]
Todo = list[tuple[int, Any, int]]


def cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


#: below this many training steps in all, ``auto`` keeps one process: starting a worker (a fresh interpreter that
#: imports torch) costs a few seconds, more than a tiny study gains
MIN_STEPS_PER_WORKER = 250


def resolve_jobs(
    jobs: int | str | None,
    n_todo: int,
    threads: int | None,
    python_object: bool,
    total_steps: int | None = None,
    devices: list[torch.device] | None = None,
) -> tuple[int, str]:
    """(worker count, why) for ``--jobs`` (an int, ``auto`` or None = auto). On CUDA, ``auto`` is one worker per
    listed device (``--jobs N`` packs N runs onto the devices, round robin)."""
    requested = parse_jobs(jobs)
    if requested is None:
        gpus = [d for d in devices or [] if d.type == "cuda"]
        if gpus:
            n = max(1, min(len(devices or []), n_todo))
            return n, f"auto: {n} worker(s), one per device ({', '.join(map(str, devices or []))})"
        if python_object:
            return 1, "auto: 1 worker (a Python object may not exist in a fresh process; pass jobs=N to try)"
        if total_steps is not None and total_steps < 2 * MIN_STEPS_PER_WORKER:
            return 1, f"auto: 1 worker ({total_steps} steps in all: too few to pay for starting workers)"
        t = max(1, int(threads or 1))
        n = max(1, min(cores() // t, n_todo))
        if total_steps is not None:
            n = max(1, min(n, total_steps // MIN_STEPS_PER_WORKER))
        return n, f"auto: {n} worker(s) ({cores()} cores, {t} thread(s) per run)"
    return max(1, min(requested, n_todo)), f"{requested} worker(s) requested"


def parse_jobs(jobs: int | str | None) -> int | None:
    """``--jobs``: a positive integer, or None for ``auto`` (also None or an empty string)."""
    if jobs is None or str(jobs).strip().lower() in ("auto", "none", ""):
        return None
    try:
        n = int(jobs)
    except (TypeError, ValueError):
        raise PoolstrideError(f"bad --jobs {jobs!r}; expected a positive integer or auto") from None
    if n < 1:
        raise PoolstrideError(f"bad --jobs {n}; expected a positive integer or auto")
    return n


def _share(ds: Any) -> Any:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        t = getattr(ds, name, None)
        if isinstance(t, torch.Tensor) and not t.is_shared():
            t.share_memory_()
    return ds


def _worker(wid: int, payload: bytes, events: Any) -> None:
    """One worker: claim and train runs until none is left; report events and errors on ``events``."""
    current: dict[str, Any] = {}

    def cb(event: str, **kw: Any) -> None:
        if event == "run_start":
            current["run"] = (kw["variant"], kw["seed"])
        if event == "run_busy":  # a sibling worker holds it: not news
            return
        kw.pop("spec", None)  # not needed by the parent, and may be large
        kw.setdefault("run", current.get("run"))
        events.put((wid, event, kw))

    try:
        args = pickle.loads(payload)
        set_threads(args.pop("threads"))
        devices = args.pop("devices")
        args["dev"] = devices[wid % len(devices)]  # round robin over --device cuda:0,cuda:1,...
        run_todo(callback=cb, **args)
        events.put((wid, "_done", {}))
    except KeyboardInterrupt:  # pragma: no cover - the parent stops us
        events.put((wid, "_done", {}))
    except BaseException as e:  # noqa: BLE001 - every failure goes to the parent, in one line
        msg = first_line(e, limit=None)  # the whole line: the parent re-raises it
        kind = "user" if isinstance(e, PoolstrideError) else "internal"
        events.put((wid, "_error", {"kind": kind, "message": msg, "type": type(e).__name__}))


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start spawned workers without re-running the caller's ``__main__``: a user's script that calls
    ``compare()`` at top level (no ``if __name__ == "__main__":`` guard) would otherwise run again in every
    worker. The workers need nothing from it (they import poolstride and unpickle the runs)."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            setattr(main, k, None) if k == "__spec__" else delattr(main, k)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def run_parallel(n: int, threads: int, callback: Callback, devices: list[torch.device], **args: Any) -> None:
    """Run :func:`~poolstride.study.runner.run_todo` with ``args`` in ``n`` spawned workers (worker i on
    ``devices[i % len(devices)]``); relay their events to ``callback``."""
    _share(args["ds"])
    payload = pickle.dumps({**args, "threads": threads, "devices": devices})
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(i, payload, events), daemon=True) for i in range(n)]
    with _main_not_reimported():
        for p in procs:
            p.start()
    alive = set(range(n))
    error: dict[str, Any] | None = None
    try:
        while alive:
            try:
                wid, event, kw = events.get(timeout=0.5)
            except _queue.Empty:
                dead = {i for i in alive if not procs[i].is_alive() and procs[i].exitcode not in (0, None)}
                for i in dead:
                    alive.discard(i)
                    error = error or {"kind": "internal", "message": f"worker {i} died (exit code {procs[i].exitcode})"}
                continue
            if event == "_done":
                alive.discard(wid)
            elif event == "_error":
                alive.discard(wid)
                error = error or kw
                for p in procs:  # one worker's user error (a bad run directory...) stops the study
                    if p.is_alive():
                        p.terminate()
                alive.clear()
            else:
                callback(event, worker=wid, **kw)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
    if error is not None:
        if error.get("kind") == "user":
            raise PoolstrideError(error["message"])
        raise RuntimeError(f"a study worker failed: {error.get('type', '')}: {error['message']}")


__all__ = ["cores", "parse_jobs", "resolve_jobs", "run_parallel"]
