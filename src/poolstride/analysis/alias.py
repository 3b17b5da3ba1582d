"""Aliasing analysis: the signal-processing answer to "pool or stride?".

Every operator is probed with 2-D sinusoids over the whole grid of frequencies and orientations of an
``n x n`` input (``n = size``, default 32, one channel) and the energy of its output is read at the frequency the
sinusoid should become (below the output's Nyquist limit) or at its *alias* (above it: the frequency it folds onto).
One number summarises it, the **alias ratio** (docs/alias.md, docs/conventions.md "Alias ratio"):

    alias_ratio = mean over the stopband grid of g(k)^2  /  mean over the passband grid of g(k)^2

where ``g(k)`` is the amplitude of the output at the folded frequency of input frequency ``k`` divided by the
input amplitude. Plain subsampling passes and folds every frequency with gain 1: ratio 1. An ideal low-pass
(``spectral``) folds nothing: ratio 0.

* The operator is probed on the *periodic extension* of its input: a local operator runs on a larger canvas that
  continues the sinusoid and the ``n/s x n/s`` output window whose inputs all lie inside the canvas is analysed
  (so no border effect enters); a global or circular operator (``spectral``, ``diffstride``, ``aps``, ``lps``)
  runs on the ``n x n`` map itself. Sinusoids are on the DFT grid, so no leakage either.
* Linear operators also get their **exact** response from their effective filter: the weights of output pixel
  (0, 0) on the input pixels, read by polyphase analysis from the responses to one unit impulse per polyphase
  class, after checking that structure (output pixel ``t`` has the filter of pixel 0 moved by ``s*t``, tested on
  moved impulses). Measured and exact figures agree.
* Non-linear operators depend on the input's amplitude and offset: the default probe is ``0.5 + 0.5 cos(...)``
  (values in [0, 1], like post-ReLU activations), averaged over 4 phases. Linear ones do not depend on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import PoolstrideError
from ..ops import Downsample, names
from ..ops import build as build_operator
from ..spec import parse, split_list
from .rf import chain

SUBSAMPLE = "subsample"
DEFAULT_FREQS: tuple[float, ...] = (0.1, 0.2, 0.3)
#: blur filter sizes shown beside the registered operators (base=avg: the binomial filter alone, a linear op)
BLUR_SIZES = (2, 3, 4, 5, 6, 7)
_CHUNK_ELEMS = 1 << 22  # input elements per forward batch


class Subsample(nn.Module):
    """Plain subsampling ``x[..., ::s, ::s]``: the reference row (not a registered operator)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.stride, :: self.stride]


# -- the frequency grid --------------------------------------------------------------------------------------------
def fold(a: np.ndarray, m: int) -> np.ndarray:
    """The output bin (in ``[-(m//2), m - m//2 - 1]``) that input bin ``a`` lands on after subsampling to ``m``."""
    return (np.asarray(a) + m // 2) % m - m // 2


@dataclass(frozen=True)
class Grid:
    """The probe frequencies of an ``n``-pixel input subsampled to ``m = n/s``: integer DFT bins ``(a, b)`` (input
    frequency ``(a/n, b/n)`` cycles/px, one of each +-pair), their folded output bins ``(la, lb)``, and which lie
    in the passband (both components below the output Nyquist limit ``m/2`` bins = ``1/(2s)`` cycles/px)."""

    n: int
    stride: int
    m: int
    a: np.ndarray
    b: np.ndarray
    la: np.ndarray
    lb: np.ndarray
    passband: np.ndarray

    @property
    def stopband(self) -> np.ndarray:
        return ~self.passband

    @property
    def nyquist(self) -> float:
        """The output Nyquist limit in cycles per input pixel."""
        return 1.0 / (2 * self.stride)

    def __len__(self) -> int:
        return len(self.a)


def frequency_grid(n: int, stride: int) -> Grid:
    """Every integer frequency ``(a, b)`` with ``|a|, |b| < n/2`` (one of each +-pair), except: DC; a component on
    the input Nyquist ``n/2``; a component whose folded bin is the output Nyquist ``m/2`` (the frequency is then its
    own alias and the real part of a sinusoid there depends on its phase); a frequency that folds onto DC (an offset,
    which a non-linear operator also produces). ``n`` must be a multiple of ``stride``."""
    if stride < 1 or n % stride:
        raise PoolstrideError(f"alias analysis: the size {n} must be a multiple of the stride {stride}")
    m = n // stride
    if m < 4:
        raise PoolstrideError(f"alias analysis: a {n}x{n} input at stride {stride} leaves {m}x{m}; need >= 4x4")
    r = (n - 1) // 2
    vals = np.arange(-r, r + 1)
    aa, bb = (g.ravel() for g in np.meshgrid(vals, vals, indexing="ij"))
    keep = (aa > 0) | ((aa == 0) & (bb > 0))
    la, lb = fold(aa, m), fold(bb, m)
    if m % 2 == 0:
        keep &= (la != -(m // 2)) & (lb != -(m // 2))
    keep &= (la != 0) | (lb != 0)
    aa, bb, la, lb = aa[keep], bb[keep], la[keep], lb[keep]
    passband = (np.abs(aa) < m / 2) & (np.abs(bb) < m / 2)
    return Grid(n, stride, m, aa, bb, la, lb, passband)


# -- running an operator on a periodic input ---------------------------------------------------------------------
def periodic_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """The periodic extension of an (N, C, n, n) map by ``p`` pixels on every side (any ``p``, also ``p > n``)."""
    if p == 0:
        return x
    n_h, n_w = int(x.shape[-2]), int(x.shape[-1])
    rh, rw = -(-p // n_h), -(-p // n_w)
    xt = x.repeat(1, 1, 2 * rh + 1, 2 * rw + 1)
    sh, sw = rh * n_h - p, rw * n_w - p
    return xt[..., sh : sh + n_h + 2 * p, sw : sw + n_w + 2 * p]


def _module_reach(module: nn.Module) -> int:
    """A generous bound on how far (in input pixels) an output pixel of ``module`` may look."""
    if isinstance(module, Downsample):
        return int(math.ceil(chain([(g.kernel or 1, g.stride, g.padding) for g in module.geometry()]).r))
    reach = 1
    for m in module.modules():
        k = getattr(m, "kernel_size", None)
        if k is None:
            continue
        k0 = int(k[0] if isinstance(k, (tuple, list)) else k)
        d = getattr(m, "dilation", 1)
        d0 = int(d[0] if isinstance(d, (tuple, list)) else d)
        s = getattr(m, "stride", 1)
        s0 = int(s[0] if isinstance(s, (tuple, list)) else (s or 1))
        reach += (k0 - 1) * d0 * max(1, s0)
    return reach


def is_circular(module: nn.Module) -> bool:
    """Whether ``module`` is run on the ``n x n`` map itself: a global operator (a geometry stage with no kernel:
    ``spectral``, ``diffstride``) or one that pads circularly (``aps``, ``lps``: ``circular = True``)."""
    if getattr(module, "circular", False):
        return True
    return isinstance(module, Downsample) and any(g.kernel is None for g in module.geometry())


@dataclass
class Runner:
    """``module`` applied to periodic ``n x n`` inputs, returning the ``m x m`` output window (``m = n/s``)."""

    module: nn.Module
    n: int
    stride: int
    channels: int
    direct: bool
    margin: int
    dtype: torch.dtype = torch.float64

    @property
    def m(self) -> int:
        return self.n // self.stride

    @classmethod
    def make(
        cls, module: nn.Module, n: int, stride: int, channels: int = 1, dtype: torch.dtype = torch.float64
    ) -> Runner:
        direct = is_circular(module)
        margin = 0 if direct else stride * (-(-(_module_reach(module) + 2 * stride) // stride))
        return cls(module, n, stride, channels, direct, margin, dtype)

    def label(self) -> str:
        return "on the n x n map (circular/global)" if self.direct else f"periodic extension by {self.margin} px"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        with torch.no_grad():
            if self.direct:
                y = self.module(x)
                if tuple(y.shape[-2:]) != (m, m):
                    raise PoolstrideError(
                        f"alias analysis: the operator maps {self.n}x{self.n} to {tuple(y.shape[-2:])}, not {m}x{m} "
                        f"(stride {self.stride}); give the operator's stride (--stride) and a size it divides"
                    )
                return y
            y = self.module(periodic_pad(x, self.margin))
            o = self.margin // self.stride
            want = (self.n + 2 * self.margin) / self.stride
            if abs(int(y.shape[-1]) - want) > self.margin / self.stride or int(y.shape[-1]) < o + m:
                raise PoolstrideError(
                    f"alias analysis: the operator maps a {self.n + 2 * self.margin}-pixel input to "
                    f"{int(y.shape[-1])} pixels, not about {want:g}: its stride is not {self.stride} (use --stride)"
                )
            return y[..., o : o + m, o : o + m]


# -- measurement ---------------------------------------------------------------------------------------------------
def sinusoids(
    grid_a: np.ndarray,
    grid_b: np.ndarray,
    n: int,
    channels: int,
    offset: float,
    amplitude: float,
    phases: Sequence[float],
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``offset + amplitude * cos(2 pi (a i + b j) / n + phi)`` for every (frequency, phase), the same in every
    channel: (F * P, C, n, n), frequency-major."""
    i = torch.arange(n, dtype=torch.float64)
    a = torch.as_tensor(np.asarray(grid_a), dtype=torch.float64)[:, None, None, None]
    b = torch.as_tensor(np.asarray(grid_b), dtype=torch.float64)[:, None, None, None]
    ph = torch.as_tensor(list(phases), dtype=torch.float64)[None, :, None, None]
    arg = 2 * math.pi * (a * i[None, None, :, None] + b * i[None, None, None, :]) / n + ph
    x = offset + amplitude * torch.cos(arg)
    x = x.reshape(-1, 1, n, n).expand(-1, channels, n, n)
    return x.to(dtype).contiguous()


@dataclass
class Measured:
    """Per-frequency measurement: ``g2`` the output energy at the target bin over the input energy (mean over
    phases and output channels), ``other`` and ``total`` the AC energy elsewhere and in all (for distortion)."""

    g2: np.ndarray
    other: np.ndarray
    total: np.ndarray


def measure(
    run: Runner,
    a: np.ndarray,
    b: np.ndarray,
    la: np.ndarray,
    lb: np.ndarray,
    *,
    offset: float = 0.5,
    amplitude: float = 0.5,
    phases: int = 4,
) -> Measured:
    """Feed the sinusoids of bins ``(a, b)`` and read the output at bins ``(la, lb)`` (see :class:`Measured`)."""
    if amplitude <= 0:
        raise PoolstrideError(f"alias analysis: the amplitude must be > 0 (got {amplitude})")
    n, m = run.n, run.m
    phis = [math.pi * j / phases for j in range(phases)]
    nf = len(a)
    g2 = np.zeros(nf)
    other = np.zeros(nf)
    total = np.zeros(nf)
    per = max(1, _CHUNK_ELEMS // (run.channels * (n + 2 * run.margin) ** 2 * phases))
    for s in range(0, nf, per):
        e = min(nf, s + per)
        x = sinusoids(a[s:e], b[s:e], n, run.channels, offset, amplitude, phis, run.dtype)
        y = run(x).to(torch.float64)
        pw = torch.fft.fft2(y).abs().square()  # (F*P, Cout, m, m)
        rows = torch.arange(pw.shape[0])
        fa = torch.as_tensor(np.repeat(la[s:e] % m, phases))
        fb = torch.as_tensor(np.repeat(lb[s:e] % m, phases))
        tgt = pw[rows, :, fa, fb]  # (F*P, Cout)
        mir = pw[rows, :, (-fa) % m, (-fb) % m]
        ac = pw.sum((-2, -1)) - pw[..., 0, 0]
        amp2 = 4 * tgt / float(m) ** 4  # (2 |Y| / m^2)^2: the squared amplitude of the output sinusoid
        k = e - s
        g2[s:e] = (amp2 / amplitude**2).reshape(k, phases, -1).mean((1, 2)).numpy()
        other[s:e] = (ac - tgt - mir).clamp_min(0).reshape(k, phases, -1).sum((1, 2)).numpy()
        total[s:e] = ac.reshape(k, phases, -1).sum((1, 2)).numpy()
    return Measured(g2, other, total)


def is_linear(run: Runner, seed: int = 0) -> bool:
    """Whether the operator is affine in its input: ``f(x) = run(x) - run(0)`` satisfies ``f(x + 2y) = f(x) +
    2 f(y)`` and ``f(-x/2) = -f(x)/2`` on random inputs (to 1e-9 in float64, 1e-4 otherwise)."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, run.channels, run.n, run.n)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    batch = torch.cat([x, y, x + 2 * y, -0.5 * x, torch.zeros_like(x)]).to(run.dtype)
    out = run(batch).to(torch.float64)
    z = out[4]
    fx, fy, fxy, fh = out[0] - z, out[1] - z, out[2] - z, out[3] - z
    scale = max(float(fx.abs().max()), float(fy.abs().max()), 1e-30)
    err = max(float((fxy - fx - 2 * fy).abs().max()), float((fh + 0.5 * fx).abs().max()))
    tol = 1e-9 if run.dtype == torch.float64 else 1e-4
    return err <= tol * scale


@dataclass
class Filter:
    """The effective filter of a linear operator on periodic ``n x n`` inputs: ``h[c]`` (n x n) is the weight of
    every input pixel in output pixel (0, 0) of output channel ``c`` (the same signal in every input channel);
    ``polyphase_error`` is the largest deviation, relative to ``max |h|``, of any other output pixel ``t`` from the
    filter of pixel 0 moved by ``s * t`` (0 for a linear, periodically shift-invariant operator)."""

    h: np.ndarray
    polyphase_error: float

    def response(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The exact energy gain ``mean_c |H_c(a, b)|^2`` at integer bins,
        ``H_c(k) = sum_u h_c(u) e^{2 pi i k.u/n}``."""
        n = self.h.shape[-1]
        spec = np.abs(np.fft.fft2(self.h)) ** 2  # |conj(H)| = |H| for a real filter
        return spec[:, np.asarray(a) % n, np.asarray(b) % n].mean(0)


def effective_filter(run: Runner) -> Filter:
    """:class:`Filter` of the (affine) operator behind ``run``, by polyphase analysis.

    For an operator that commutes with shifts by ``s`` (input) / 1 (output), output pixel ``t`` weighs input pixel
    ``u`` by ``h(u - s t)``, so the response to one unit impulse at ``p`` in each of the ``s^2`` polyphase classes
    gives ``h`` everywhere: ``h(p - s t) = y_p(t)``. Impulses moved by ``s d`` for a few ``d`` must give the same
    responses moved by ``d``; the largest deviation is ``polyphase_error`` (relative to ``max |h|``)."""
    n, s, m = run.n, run.stride, run.m
    zero = run(torch.zeros(1, run.channels, n, n, dtype=run.dtype)).to(torch.float64)
    phases = [(i, j) for i in range(s) for j in range(s)]
    moves = list(dict.fromkeys([(0, 0), (1, 0), (0, 1), (m // 2, (m + 1) // 3), (m - 1, m - 1)]))
    x = torch.zeros(len(phases) * len(moves), run.channels, n, n, dtype=run.dtype)
    for k, ((pa, pb), (da, db)) in enumerate((p, d) for p in phases for d in moves):
        x[k, :, (pa + s * da) % n, (pb + s * db) % n] = 1.0
    y = (run(x).to(torch.float64) - zero).numpy().reshape(len(phases), len(moves), -1, m, m)
    h = np.zeros((y.shape[2], n, n))
    ta, tb = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    for i, (pa, pb) in enumerate(phases):
        h[:, (pa - s * ta) % n, (pb - s * tb) % n] = y[i, 0]
    scale = max(float(np.abs(h).max()), 1e-30)
    err = 0.0
    for i in range(len(phases)):
        for j, d in enumerate(moves[1:], start=1):
            err = max(err, float(np.abs(y[i, j] - np.roll(y[i, 0], d, axis=(-2, -1))).max()))
    return Filter(h, err / scale)


def shift_sensitivity(run: Runner, seed: int = 0) -> float:
    """The relative std of the output over the ``s^2`` circular input shifts ``(0..s-1, 0..s-1)`` of a fixed
    random image (uniform in [0, 1), seed ``seed``), each output first moved by the whole-pixel circular shift
    (within +-1 output pixel) that brings it closest to the unshifted output: ``sqrt(mean_pixels var_shifts) /
    std_pixels(unshifted output)``. 0 = the same output up to a whole-pixel shift (APS); about 0.87 =
    sqrt(3/4) for plain subsampling of white noise."""
    g = torch.Generator().manual_seed(seed)
    s, n = run.stride, run.n
    x = torch.rand(1, run.channels, n, n, generator=g, dtype=torch.float64)
    shifts = [(i, j) for i in range(s) for j in range(s)]
    xs = torch.cat([torch.roll(x, sh, dims=(-2, -1)) for sh in shifts]).to(run.dtype)
    y = run(xs).to(torch.float64)
    ref = y[0]
    aligned = [ref]
    for k in range(1, len(shifts)):
        cands = [torch.roll(y[k], (da, db), dims=(-2, -1)) for da in (-1, 0, 1) for db in (-1, 0, 1)]
        aligned.append(min(cands, key=lambda c: float((c - ref).square().sum())))
    stack = torch.stack(aligned)
    spread = float(ref.std(unbiased=False))
    if spread <= 1e-12:
        return 0.0
    return float(stack.var(0, unbiased=False).mean().sqrt()) / spread


# -- results ---------------------------------------------------------------------------------------------------------
@dataclass
class AliasResult:
    """The aliasing figures of one operator (or model site). See the module docstring and docs/alias.md."""

    spec: str
    linear: bool
    alias_ratio: float | None
    exact_alias_ratio: float | None
    passband_gain: float | None  # sqrt(mean passband g^2)
    gains: dict[str, float | None]
    exact_gains: dict[str, float | None] | None
    shift_std: float
    distortion: float
    size: int
    stride: int
    in_channels: int
    out_channels: int
    method: str
    init: str
    offset: float
    amplitude: float
    phases: int
    max_gain_error: float | None = None
    polyphase_error: float | None = None
    notes: list[str] = field(default_factory=list)
    grid: Grid | None = field(default=None, repr=False)
    g2: np.ndarray | None = field(default=None, repr=False)
    g2_exact: np.ndarray | None = field(default=None, repr=False)

    @property
    def out_size(self) -> int:
        return self.size // self.stride

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(round(v, 8))

        return {
            "spec": self.spec,
            "linear": self.linear,
            "alias_ratio": r(self.alias_ratio),
            "exact_alias_ratio": r(self.exact_alias_ratio),
            "passband_gain": r(self.passband_gain),
            "gains": {k: r(v) for k, v in self.gains.items()},
            "exact_gains": None if self.exact_gains is None else {k: r(v) for k, v in self.exact_gains.items()},
            "shift_std": r(self.shift_std),
            "distortion": r(self.distortion),
            "max_gain_error": r(self.max_gain_error),
            "polyphase_error": r(self.polyphase_error),
            "size": self.size,
            "out_size": self.out_size,
            "stride": self.stride,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input": {"offset": self.offset, "amplitude": self.amplitude, "phases": self.phases},
            "method": self.method,
            "init": self.init,
            "notes": list(self.notes),
        }


def ratio(g2: np.ndarray, grid: Grid) -> float | None:
    """The alias ratio: mean stopband ``g^2`` over mean passband ``g^2`` (None without passband energy)."""
    p = float(np.mean(g2[grid.passband])) if grid.passband.any() else 0.0
    if p <= 1e-24:
        return None
    return float(np.mean(g2[grid.stopband])) / p


def _canvas(n: int, stride: int, freqs: Sequence[float]) -> int:
    """The smallest multiple of ``lcm(stride, denominators of freqs)`` that is >= ``n`` (every f on the DFT grid)."""
    q = stride
    for f in freqs:
        q = math.lcm(q, Fraction(f).limit_denominator(1000).denominator)
    return q * max(1, -(-n // q))


def _gain_bins(nf: int, stride: int, freqs: Sequence[float]) -> list[tuple[float, int | None, int | None]]:
    """(f, input bin, folded bin) of horizontal frequencies f on an ``nf`` canvas; bins None where excluded."""
    m = nf // stride
    out: list[tuple[float, int | None, int | None]] = []
    for f in freqs:
        b = round(f * nf)
        lb = int(fold(np.array([b]), m)[0])
        bad = not 0 < b < nf / 2 or lb == 0 or (m % 2 == 0 and lb == -(m // 2))
        out.append((f, None, None) if bad else (f, b, lb))
    return out


def _fkey(f: float) -> str:
    return f"{f:g}"


_Bin = tuple[float, int, int]  # (frequency, input bin, folded bin)


def _gains(
    run_f: Runner, freqs: Sequence[float], notes: list[str], *, offset: float, amplitude: float, phases: int
) -> tuple[dict[str, float | None], list[_Bin]]:
    """Measured gains at the horizontal frequencies ``freqs`` on ``run_f``'s canvas, and the bins measured."""
    bins = _gain_bins(run_f.n, run_f.stride, freqs)
    ok = [(f, b, lb) for f, b, lb in bins if b is not None and lb is not None]
    gains: dict[str, float | None] = {_fkey(f): None for f in freqs}
    if ok:
        za = np.zeros(len(ok), dtype=np.int64)
        bb = np.array([b for _, b, _ in ok])
        lbb = np.array([lb for _, _, lb in ok])
        mg = measure(run_f, za, bb, za, lbb, offset=offset, amplitude=amplitude, phases=phases)
        for (f, _, _), g in zip(ok, mg.g2, strict=True):
            gains[_fkey(f)] = float(math.sqrt(max(g, 0.0)))
    skipped = [f for f, b, _ in bins if b is None]
    if skipped:
        notes.append(f"no gain at {', '.join(map(_fkey, skipped))} cycles/px: on a Nyquist limit or out of range")
    return gains, ok


@dataclass
class _Exact:
    """The exact response of a linear module (all None when not computed)."""

    g2: np.ndarray | None = None
    ratio: float | None = None
    gains: dict[str, float | None] | None = None
    max_error: float | None = None
    polyphase_error: float | None = None


def _exact(
    run: Runner, run_f: Runner, ok: list[_Bin], grid: Grid, meas: Measured, freqs: Sequence[float], notes: list[str]
) -> _Exact:
    """The exact response of a linear module from its effective filter (none when it is not periodically
    shift-invariant: a note says so)."""
    filt = effective_filter(run)
    ex = _Exact(polyphase_error=filt.polyphase_error)
    if filt.polyphase_error > 1e-6:
        notes.append(
            f"linear but not periodically shift-invariant (polyphase error {filt.polyphase_error:.2g}): "
            "no exact response"
        )
        return ex
    ex.g2 = filt.response(grid.a, grid.b)
    ex.ratio = ratio(ex.g2, grid)
    ex.max_error = float(np.max(np.abs(np.sqrt(meas.g2) - np.sqrt(ex.g2))))
    ex.gains = {_fkey(f): None for f in freqs}
    if ok:
        ff = effective_filter(run_f)
        eg = ff.response(np.zeros(len(ok), dtype=np.int64), np.array([b for _, b, _ in ok]))
        for (f, _, _), g in zip(ok, eg, strict=True):
            ex.gains[_fkey(f)] = float(math.sqrt(g))
    return ex


def analyze_module(
    module: nn.Module,
    size: int = 32,
    stride: int = 2,
    *,
    channels: int = 1,
    label: str = "",
    offset: float = 0.5,
    amplitude: float = 0.5,
    phases: int = 4,
    freqs: Sequence[float] = DEFAULT_FREQS,
    exact: bool = True,
    dtype: torch.dtype = torch.float64,
    init: str = "",
    seed: int = 0,
) -> AliasResult:
    """The aliasing figures of ``module`` (in eval mode, as given) on ``size x size`` inputs of ``channels``
    channels at ``stride``. ``exact``: also the exact response of a linear module (:func:`effective_filter`).
    A linear module is probed at one phase (its response does not depend on it), a non-linear one at ``phases``."""
    grid = frequency_grid(size, stride)
    run = Runner.make(module, size, stride, channels, dtype)
    linear = is_linear(run, seed)
    if linear:  # the response of a linear operator does not depend on the phase (docs/alias.md)
        phases = 1
    meas = measure(run, grid.a, grid.b, grid.la, grid.lb, offset=offset, amplitude=amplitude, phases=phases)
    tot = float(meas.total.sum())
    distortion = float(meas.other.sum()) / tot if tot > 1e-24 else 0.0
    out_ch = int(run(torch.zeros(1, channels, size, size, dtype=dtype)).shape[1])
    notes: list[str] = []
    # gains at the requested frequencies (horizontal), on a canvas where each is a whole number of cycles
    nf = _canvas(size, stride, freqs)
    run_f = Runner.make(module, nf, stride, channels, dtype)
    gains, ok = _gains(run_f, freqs, notes, offset=offset, amplitude=amplitude, phases=phases)
    ex = _Exact()
    if linear and exact:
        ex = _exact(run, run_f, ok, grid, meas, freqs, notes)
    pg = float(np.mean(meas.g2[grid.passband])) if grid.passband.any() else 0.0
    return AliasResult(
        spec=label or type(module).__name__,
        linear=linear,
        alias_ratio=ratio(meas.g2, grid),
        exact_alias_ratio=ex.ratio,
        passband_gain=math.sqrt(pg),
        gains=gains,
        exact_gains=ex.gains,
        shift_std=shift_sensitivity(run, seed),
        distortion=distortion,
        size=size,
        stride=stride,
        in_channels=channels,
        out_channels=out_ch,
        method=run.label(),
        init=init,
        offset=offset,
        amplitude=amplitude,
        phases=phases,
        max_gain_error=ex.max_error,
        polyphase_error=ex.polyphase_error,
        notes=notes,
        grid=grid,
        g2=meas.g2,
        g2_exact=ex.g2,
    )


# -- operators -------------------------------------------------------------------------------------------------------
def split_specs(text: str | Sequence[str]) -> list[str]:
    """``"max,blur(base=avg,size=3),subsample"`` -> its entries (commas inside brackets do not split)."""
    if not isinstance(text, str):
        return [str(t).strip() for t in text]
    return split_list(text)


def canonical(spec: str) -> str:
    """The canonical spec (``subsample`` or the registry's form); raises :class:`SpecError` for a bad one."""
    if spec.strip().lower() == SUBSAMPLE:
        return SUBSAMPLE
    return str(parse(spec))


def default_specs() -> list[str]:
    """``subsample``, then every registered operator at its defaults, with ``blur(base=avg,size=s)`` (the binomial
    filter alone, linear) for every ``s`` in :data:`BLUR_SIZES` after ``blur``."""
    out = [SUBSAMPLE]
    for name in names():
        out.append(name)
        if name == "blur":
            out += [f"blur(base=avg,size={s})" for s in BLUR_SIZES]
    return out


def build_op(spec: str, stride: int = 2, seed: int = 0) -> tuple[nn.Module, str]:
    """(module in float64 eval mode, init description) for ``spec`` with one channel (``subsample`` too)."""
    if spec == SUBSAMPLE:
        return Subsample(stride).double().eval(), "-"
    s = parse(spec)
    torch.manual_seed(seed)
    op = build_operator(s, 1, 1, stride=stride)
    op = op.double().eval()
    if any(True for _ in op.parameters()):
        init = f"torch.manual_seed({seed}), the operator's own init"
        if any(isinstance(m, nn.Conv2d) for m in op.modules()):
            init += " (nn.Conv2d: PyTorch's default kaiming-uniform weights and bias)"
    else:
        init = "-"
    return op, init


def analyze_op(
    spec: str,
    size: int = 32,
    stride: int = 2,
    *,
    offset: float = 0.5,
    amplitude: float = 0.5,
    phases: int = 4,
    freqs: Sequence[float] = DEFAULT_FREQS,
    exact: bool = True,
    seed: int = 0,
    label: str | None = None,
) -> AliasResult:
    """:func:`analyze_module` of one operator spec (or ``subsample``) with one channel, in eval mode (stochastic:
    its evaluation rule; lps: the arg-max), learnable operators at a fixed init (seed ``seed``). ``label``: the
    name shown (default: the canonical spec)."""
    name = canonical(spec)
    op, init = build_op(name, stride, seed)
    return analyze_module(
        op, size, stride, channels=1, label=label or name, offset=offset, amplitude=amplitude, phases=phases,
        freqs=freqs, exact=exact, init=init, seed=seed,
    )  # fmt: skip


def analyze(
    specs: str | Sequence[str] | None = None,
    size: int = 32,
    stride: int = 2,
    **kw: Any,
) -> list[AliasResult]:
    """:func:`analyze_op` of each spec (default: :func:`default_specs`), labelled as written (blanks removed).
    Every spec is checked before any runs."""
    entries = split_specs(specs) if specs else default_specs()
    for e in entries:
        canonical(e)
    frequency_grid(size, stride)  # size errors before any work
    return [analyze_op(e, size, stride, label="".join(e.split()).lower(), **kw) for e in entries]


#: the definition printed beside every alias table and stored in every alias document
DEFINITION = (
    "alias ratio = mean over the stopband (input frequencies above the output Nyquist limit, 1/(2*stride) "
    "cycles/px) of g^2 at the folded frequency / mean over the passband of g^2; g = output amplitude / input "
    "amplitude. 1 = plain subsampling, 0 = nothing folds."
)


def operators_document(
    results: Sequence[AliasResult], size: int, stride: int, offset: float, amplitude: float
) -> dict[str, Any]:
    """The alias document (``alias.json``, ``poolstride alias --json``) of :func:`analyze`'s results."""
    return {
        "schema": 1,
        "size": size,
        "stride": stride,
        "output_nyquist": 1 / (2 * stride),
        "input": {"offset": offset, "amplitude": amplitude, "phases": 4},
        "definition": DEFINITION,
        "operators": [r.to_dict() for r in results],
    }


__all__ = [
    "BLUR_SIZES",
    "DEFAULT_FREQS",
    "DEFINITION",
    "SUBSAMPLE",
    "AliasResult",
    "Filter",
    "Grid",
    "Measured",
    "Runner",
    "Subsample",
    "analyze",
    "analyze_module",
    "analyze_op",
    "build_op",
    "canonical",
    "default_specs",
    "effective_filter",
    "fold",
    "frequency_grid",
    "is_circular",
    "is_linear",
    "measure",
    "operators_document",
    "periodic_pad",
    "ratio",
    "shift_sensitivity",
    "sinusoids",
    "split_specs",
]
