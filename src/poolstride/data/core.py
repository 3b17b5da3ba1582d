"""The :class:`Dataset` container, its validation, statistics and :func:`subset`.

Every loader ends in :func:`make_dataset`, which checks what it got (shapes, dtype, label range, lengths)
and raises :class:`~poolstride.errors.DataError` with one clear line when something is wrong.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

Array = np.ndarray


@dataclass
class Dataset:
    """A classification dataset held entirely in memory as uint8 tensors.

    ``x_train``/``x_test`` are ``torch.uint8`` of shape ``(N, C, H, W)``, contiguous, on the CPU;
    ``y_train``/``y_test`` are ``torch.int64`` of shape ``(N,)`` with values in ``[0, len(classes))``.
    ``mean``/``std`` are per-channel statistics of the *training* images on the 0-1 scale
    (population std over all pixels), ready for ``(x / 255 - mean) / std``.
    ``meta`` is a JSON-serialisable dict: at least ``source`` (where the data came from), ``split``
    (how train and test were obtained) and ``notes``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)``, the shape a model sees per sample."""
        return self.in_channels, *self.image_size

    def fingerprint(self) -> str:
        """sha256 over the four tensors (and the class names): equal iff the data are equal."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update("\n".join(self.classes).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        c, h, w = self.input_size
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"{c}x{h}x{w}, classes={self.num_classes})"
        )


# ----------------------------------------------------------------------------------------------------------
# validation


def _check_images(x: Array, what: str, name: str) -> Array:
    """Images as numpy: uint8, (N,H,W) or (N,H,W,C) channels-last. Returns (N,H,W,C)."""
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name}: {what} is not an array (got {type(x).__name__})")
    if x.dtype != np.uint8:
        raise DataError(
            f"{name}: {what} has dtype {x.dtype}, but images must be uint8 (0-255); "
            "convert with (x * 255).round().clip(0, 255).astype('uint8') if they are floats in 0-1"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(
            f"{name}: {what} has shape {tuple(x.shape)}; expected (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
        )
    if x.shape[-1] not in (1, 3, 4):
        if x.shape[1] in (1, 3, 4):
            raise DataError(
                f"{name}: {what} has shape {tuple(x.shape)}, which looks channels-first (N, C, H, W); "
                "store images channels-last as (N, H, W, C) or (N, H, W)"
            )
        raise DataError(
            f"{name}: {what} has shape {tuple(x.shape)}; the last axis must be channels (1, 3 or 4) "
            "in channels-last (N, H, W, C) layout"
        )
    if min(x.shape[1:3]) < 1:
        raise DataError(f"{name}: {what} has empty images, shape {tuple(x.shape)}")
    return x


def _check_labels(y: Array, what: str, name: str) -> Array:
    if not isinstance(y, np.ndarray):
        raise DataError(f"{name}: {what} is not an array (got {type(y).__name__})")
    y = np.squeeze(y) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim == 0:
        y = y.reshape(1)
    if y.ndim != 1:
        raise DataError(f"{name}: {what} has shape {tuple(y.shape)}; expected a 1-D vector of class indices")
    if y.dtype.kind == "b" or y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{name}: {what} has dtype {y.dtype}; labels must be integer class indices")
    return y.astype(np.int64, copy=False)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of uint8 images ``(N,C,H,W)`` on the 0-1 scale.

    Computed from a 256-bin histogram per channel, so the result is exact and independent of order.
    """
    means, stds = [], []
    levels = np.arange(256, dtype=np.float64)
    arr = x.numpy()
    for c in range(arr.shape[1]):
        counts = np.bincount(arr[:, c].reshape(-1), minlength=256).astype(np.float64)
        n = counts.sum()
        if n == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        m = float((counts * levels).sum() / n)
        var = float((counts * (levels - m) ** 2).sum() / n)
        means.append(round(m / 255.0, 6))
        stds.append(round(max(var, 0.0) ** 0.5 / 255.0, 6) or 1.0)
    return tuple(means), tuple(stds)


def make_dataset(
    name: str,
    x_train: Array,
    y_train: Array,
    x_test: Array,
    y_test: Array,
    classes: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    layout: str = "NHWC",
) -> Dataset:
    """Validate numpy arrays and build a :class:`Dataset`.

    ``layout`` is ``"NHWC"`` (channels-last or no channel axis, the usual on-disk form) or ``"NCHW"``.
    ``classes`` may be omitted: then the names are ``"0".."K-1"`` with K = largest label + 1.
    """
    if layout == "NCHW":
        for what, x in (("x_train", x_train), ("x_test", x_test)):
            if not isinstance(x, np.ndarray) or x.ndim != 4:
                raise DataError(f"{name}: {what} must be a 4-D (N, C, H, W) array")
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    xtr = _check_images(x_train, "x_train", name)
    xte = _check_images(x_test, "x_test", name)
    ytr = _check_labels(y_train, "y_train", name)
    yte = _check_labels(y_test, "y_test", name)
    if len(xtr) != len(ytr):
        raise DataError(f"{name}: x_train has {len(xtr)} images but y_train has {len(ytr)} labels")
    if len(xte) != len(yte):
        raise DataError(f"{name}: x_test has {len(xte)} images but y_test has {len(yte)} labels")
    if len(xtr) == 0:
        raise DataError(f"{name}: the training set is empty")
    if len(xte) == 0:
        raise DataError(f"{name}: the test set is empty")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(f"{name}: train images are {_hwc(xtr)} but test images are {_hwc(xte)}; both splits must match")
    lo = int(min(ytr.min(), yte.min()))
    hi = int(max(ytr.max(), yte.max()))
    if lo < 0:
        raise DataError(f"{name}: labels must be >= 0, found {lo}")
    if classes is None:
        classes = [str(i) for i in range(hi + 1)]
    classes = [str(c) for c in classes]
    if hi >= len(classes):
        raise DataError(
            f"{name}: label {hi} is out of range for {len(classes)} classes (valid labels 0..{len(classes) - 1})"
        )
    to_t = _to_tensor
    xt = to_t(xtr)
    mean, std = channel_stats(xt)
    info: dict[str, Any] = {"source": "", "split": "", "notes": ""}
    info.update(meta or {})
    return Dataset(
        name=name,
        x_train=xt,
        y_train=torch.from_numpy(np.ascontiguousarray(ytr)),
        x_test=to_t(xte),
        y_test=torch.from_numpy(np.ascontiguousarray(yte)),
        classes=list(classes),
        mean=mean,
        std=std,
        meta=info,
    )


def _hwc(x: Array) -> str:
    return f"{x.shape[1]}x{x.shape[2]}x{x.shape[3]} (HxWxC)"


def _to_tensor(x: Array) -> torch.Tensor:
    """(N,H,W,C) uint8 numpy -> contiguous (N,C,H,W) uint8 tensor (one copy)."""
    out = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if not out.flags.writeable:
        out = out.copy()
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------------
# subsets


def subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A random, class-stratified subset for quick runs.

    Each class keeps (about) its share of the split; the picked samples keep their original order.
    ``None`` keeps a split whole. ``mean``/``std`` stay those of the full training set, so a model trained
    on a subset normalises the same way as one trained on everything.
    """
    g = np.random.default_rng(seed)
    ix_tr = _stratified(ds.y_train.numpy(), n_train, g, "n_train", ds.name)
    ix_te = _stratified(ds.y_test.numpy(), n_test, g, "n_test", ds.name)
    meta = dict(ds.meta)
    meta["subset"] = {"n_train": n_train, "n_test": n_test, "seed": seed, "of": [len(ds.y_train), len(ds.y_test)]}

    def pick(t: torch.Tensor, ix: Array | None) -> torch.Tensor:
        return t if ix is None else t[torch.from_numpy(ix)].contiguous()

    return replace(
        ds,
        x_train=pick(ds.x_train, ix_tr),
        y_train=pick(ds.y_train, ix_tr),
        x_test=pick(ds.x_test, ix_te),
        y_test=pick(ds.y_test, ix_te),
        meta=meta,
    )


def _stratified(y: Array, n: int | None, g: np.random.Generator, what: str, name: str) -> Array | None:
    if n is None:
        return None
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise DataError(f"{name}: {what} must be a positive integer, got {n!r}")
    if n >= len(y):
        return None
    perm = g.permutation(len(y))
    ys = y[perm]
    # rank of each sample within its class (in the shuffled order), scaled by the class size:
    # taking the smallest keys picks every class in proportion to its size.
    order = np.argsort(ys, kind="stable")
    counts = np.bincount(ys)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ys), dtype=np.int64)
    rank[order] = np.arange(len(ys)) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[ys]
    chosen = perm[np.argsort(key, kind="stable")[:n]]
    return np.sort(chosen)


# ----------------------------------------------------------------------------------------------------------
# paths


def cache_dir() -> Path:
    """``$POOLSTRIDE_CACHE_DIR`` or ``~/.cache/poolstride``."""
    env = os.environ.get("POOLSTRIDE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "poolstride"


def default_data_dir() -> Path:
    """``$POOLSTRIDE_DATA_DIR`` or ``~/.cache/poolstride/data`` (where downloads go by default)."""
    env = os.environ.get("POOLSTRIDE_DATA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "data"
