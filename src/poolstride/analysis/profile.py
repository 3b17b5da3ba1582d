"""Measured cost: forward and forward+backward latency (median and IQR over repeats) and peak memory.

Peak memory is the largest amount of tensor memory allocated *above the level before the step*:

* ``cuda-allocator`` - on CUDA, from the caching allocator's statistics (``max_memory_allocated``);
* ``cpu-profiler`` - on CPU, from the autograd profiler with ``profile_memory=True``: every allocation and
  free of PyTorch's CPU allocator, accumulated in time order at operator granularity (``tracemalloc``
  cannot see PyTorch tensors; it only tracks Python objects);
* ``rss-sampled`` - fallback when the profiler is unavailable: the process's resident set size sampled every
  millisecond minus the RSS before the step (includes allocator overhead; approximate, since the C
  allocator reuses memory it already holds).
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import PoolstrideError


@dataclass
class Timing:
    median_ms: float
    iqr_ms: float
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchProfile:
    batch: int
    forward: Timing
    train_step: Timing | None
    peak_memory_bytes: int | None  # forward + backward, above the level before the step
    forward_peak_memory_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "forward": self.forward.to_dict(),
            "train_step": self.train_step.to_dict() if self.train_step else None,
            "peak_memory_bytes": self.peak_memory_bytes,
            "forward_peak_memory_bytes": self.forward_peak_memory_bytes,
        }


@dataclass
class Profile:
    device: str
    memory_method: str  # cuda-allocator | rss-sampled | unavailable
    input_size: tuple[int, int, int]
    warmup: int
    repeats: int
    batches: list[BatchProfile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "memory_method": self.memory_method,
            "input_size": list(self.input_size),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "batches": [b.to_dict() for b in self.batches],
            "notes": list(self.notes),
        }


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _RssSampler:
    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            r = _rss() or 0
            self.peak = max(self.peak, r)
            time.sleep(self.period)

    def __enter__(self) -> _RssSampler:
        self.start = _rss() or 0
        self.peak = self.start
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss() or 0)

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.start)


def _timeit(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int) -> Timing:
    for _ in range(warmup):
        fn()
    sync()
    ts: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    if len(ts) >= 4:
        q = statistics.quantiles(ts, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = max(ts) - min(ts)
    return Timing(statistics.median(ts), iqr, repeats)


def profile(
    model: nn.Module,
    input_size: Sequence[int],
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 2,
    repeats: int = 10,
    train: bool = True,
    memory: bool = True,
) -> Profile:
    """Measure latency and peak memory of ``model`` for inputs ``(B, *input_size)``, B in ``batch_sizes``.

    * forward: ``model.eval()`` under ``torch.no_grad()``;
    * train step: forward + ``loss.backward()`` with ``loss = output.float().sum()``, in eval mode (so
      batch norm uses running statistics and batch 1 works; the cost is the same as in train mode up to
      the statistics update), gradients set to ``None`` between repeats;
    * ``warmup`` untimed runs, then ``repeats`` timed runs: the median and the interquartile range (ms).

    The model is moved to ``device`` (and stays there); its gradients are cleared afterwards.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PoolstrideError("device cuda requested but CUDA is not available")
    was = model.training
    model.to(dev).eval()
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    method = "cuda-allocator" if cuda else ("cpu-profiler" if _profiler_ok() else "rss-sampled")
    if method == "rss-sampled" and _rss() is None:
        method = "unavailable"
    c, h, w = (int(v) for v in input_size)
    prof = Profile(str(dev), method if memory else "off", (c, h, w), warmup, repeats)
    try:
        for b in batch_sizes:
            x = torch.randn(b, c, h, w, device=dev)

            def fwd(x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    model(x)

            def step(x: torch.Tensor = x) -> None:
                model.zero_grad(set_to_none=True)
                out = model(x)
                out = out if isinstance(out, torch.Tensor) else out[0]
                out.float().sum().backward()

            peak = fpeak = None
            if memory and method != "unavailable":
                peak = _peak(step, method, dev, sync) if train else None
                fpeak = _peak(fwd, method, dev, sync)
            fwd_t = _timeit(fwd, sync, warmup, repeats)
            tr_t = _timeit(step, sync, warmup, repeats) if train else None
            model.zero_grad(set_to_none=True)
            prof.batches.append(BatchProfile(b, fwd_t, tr_t, peak, fpeak))
    finally:
        model.train(was)
    return prof


def _peak(fn: Callable[[], Any], method: str, dev: torch.device, sync: Callable[[], None]) -> int:
    if method == "cuda-allocator":
        gc.collect()
        sync()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        sync()
        return int(torch.cuda.max_memory_allocated(dev) - base)
    if method == "cpu-profiler":
        return _profiler_peak(fn)
    with _RssSampler() as s:
        fn()
    return s.delta


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side logs start/stop lines on file descriptor 2; keep them off the user's screen."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


def _profiler_ok() -> bool:
    return hasattr(torch.autograd, "profiler") and hasattr(torch.autograd.profiler, "profile")


def _profiler_peak(fn: Callable[[], Any]) -> int:
    # the autograd profiler: the same allocator events as torch.profiler, without its start-up cost
    with _quiet_stderr(), torch.autograd.profiler.profile(profile_memory=True) as p:
        fn()
    cur = peak = 0
    for e in sorted(p.function_events, key=lambda e: e.time_range.start):
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return int(peak)


__all__ = ["BatchProfile", "Profile", "Timing", "profile"]
