"""Device-resident data: the whole dataset lives on the device as uint8; batches are gathered by index,
augmented in one batched op (random crop with padding, horizontal flip) and normalised to float there.

No DataLoader, no per-sample Python. Randomness comes from explicit generators, so a run is a pure function
of its seed and resumes exactly from an epoch boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .. import data as data_mod
from ..errors import DataError


@dataclass
class SimpleDataset:
    """The ``poolstride.data.Dataset`` shape (uint8 NCHW images, int64 labels, 0-1 per-channel mean/std).
    Used for synthetic data and tests; any object with these fields works."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: Sequence[str]
    mean: Sequence[float]
    std: Sequence[float]
    meta: dict[str, Any] = field(default_factory=dict)


def synthetic(
    n_train: int = 512, n_test: int = 256, num_classes: int = 4, size: int = 16, channels: int = 3, seed: int = 0
) -> SimpleDataset:
    """A small learnable dataset of oriented stripe textures (one orientation/frequency per class) with noise
    and random phase. Deterministic for a given seed."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        angle = y.float() * math.pi / num_classes
        freq = 0.6 + 0.15 * (y % 3).float()
        phase = torch.rand(n, generator=g) * 2 * math.pi
        yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        proj = torch.cos(angle)[:, None, None] * xx + torch.sin(angle)[:, None, None] * yy
        img = torch.sin(freq[:, None, None] * proj + phase[:, None, None])
        img = img[:, None].expand(n, channels, size, size)
        tint = torch.rand(n, channels, 1, 1, generator=g) * 0.5 + 0.5
        noise = torch.randn(n, channels, size, size, generator=g) * 0.35
        x = ((img * tint + noise) * 0.35 + 0.5).clamp(0, 1)
        return (x * 255).round().to(torch.uint8), y.long()

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return SimpleDataset(
        name=f"synthetic{num_classes}x{size}",
        x_train=xtr,
        y_train=ytr,
        x_test=xte,
        y_test=yte,
        classes=[f"c{i}" for i in range(num_classes)],
        mean=[0.5] * channels,
        std=[0.25] * channels,
        meta={"synthetic": True, "seed": seed},
    )


def load_dataset(dataset: Any, data_dir: str | None = None, download: bool = False, **opts: Any) -> Any:
    """A dataset object from a name (via ``poolstride.data.load``) or an already-loaded dataset."""
    if not isinstance(dataset, str):
        check_dataset(dataset)
        return dataset
    ds = data_mod.load(dataset, data_dir=data_dir, download=download, **opts)
    check_dataset(ds)
    return ds


def check_dataset(ds: Any) -> None:
    need = ("x_train", "y_train", "x_test", "y_test", "classes", "mean", "std")
    missing = [f for f in need if not hasattr(ds, f)]
    if missing:
        raise DataError(f"not a dataset: missing field(s) {', '.join(missing)}")
    name = getattr(ds, "name", "dataset")
    for split in ("train", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise DataError(f"{name}: x_{split} must be a uint8 NCHW tensor")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
            raise DataError(f"{name}: y_{split} must be a 1-D label tensor as long as x_{split}")
        if len(x) == 0:
            raise DataError(f"{name}: the {split} split is empty")
    if len(ds.mean) != ds.x_train.shape[1] or len(ds.std) != ds.x_train.shape[1]:
        raise DataError(f"{name}: mean/std must have one value per channel")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        a, b = ds.x_train.shape[1:], ds.x_test.shape[1:]
        raise DataError(
            f"{name}: train images are {'x'.join(map(str, a))} but test images {'x'.join(map(str, b))} (CxHxW); "
            "both splits need one size and channel count"
        )
    k = len(ds.classes)
    if k < 2:
        raise DataError(f"{name}: {k} class; a classifier study needs at least 2 classes")
    for split in ("train", "test"):
        y = getattr(ds, f"y_{split}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= k:
            raise DataError(f"{name}: {split} labels range over {lo}..{hi}, outside 0..{k - 1} ({k} classes)")
    missing = [c for i, c in enumerate(ds.classes) if not bool((ds.y_test == i).any())]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{name}: {len(missing)} class(es) have no test images ({shown}); accuracy would be biased")


def check_fits(ds: Any, train_subset: int | None, batch_size: int) -> None:
    """Refuse, in one line, a training set smaller than one batch after subsetting."""
    n = len(ds.x_train) if train_subset is None else min(int(train_subset), len(ds.x_train))
    if n < batch_size:
        name = getattr(ds, "name", "dataset")
        raise DataError(
            f"{name}: {n} training images" + (" after subsetting" if n < len(ds.x_train) else "")
            + f" are fewer than one batch of {batch_size}; lower --batch-size or use more images"
        )  # fmt: skip


def subset_indices(n: int, k: int | None, seed: int = 0) -> torch.Tensor | None:
    """A fixed random subset of ``k`` of ``n`` indices (sorted), independent of the run's seed."""
    if k is None or k >= n:
        return None
    g = torch.Generator().manual_seed(12345 + seed)
    return torch.randperm(n, generator=g)[:k].sort().values


def crop_at(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-image crops ``x[i, :, oy[i]:oy[i]+h, ox[i]:ox[i]+w]`` in one gather."""
    b, c = x.shape[:2]
    dev = x.device
    rows = oy.to(dev)[:, None] + torch.arange(h, device=dev)
    cols = ox.to(dev)[:, None] + torch.arange(w, device=dev)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, padding: str) -> torch.Tensor:
    """Translate each image by (dy[i], dx[i]) pixels; the shifted-in border is filled per ``padding``
    (``reflect``, ``zeros``, ``replicate``) or wraps around (``circular``). Shape is kept."""
    b, c, h, w = x.shape
    if padding == "circular":
        dev = x.device
        rows = (torch.arange(h, device=dev)[None, :] - dy.to(dev)[:, None]) % h
        cols = (torch.arange(w, device=dev)[None, :] - dx.to(dev)[:, None]) % w
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
    s = int(max(dy.abs().max().item(), dx.abs().max().item())) if b else 0
    if s == 0:
        return x
    mode = "constant" if padding == "zeros" else padding
    xp = F.pad(x, (s, s, s, s), mode=mode)
    return crop_at(xp, s - dy, s - dx, h, w)


class DeviceData:
    """A dataset resident on ``device`` as uint8, with batched augmentation and normalisation.

    With ``channels_last`` the images are stored NHWC, so a gathered batch is already in the channels-last
    layout the convolutions want; the crop, the flip and the batch gather are one indexing op on a copy of
    the training images padded once.
    """

    def __init__(
        self,
        ds: Any,
        device: torch.device,
        train_subset: int | None = None,
        test_subset: int | None = None,
        channels_last: bool = True,
    ) -> None:
        check_dataset(ds)
        self.device = device
        self.channels_last = channels_last
        xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
        itr, ite = subset_indices(len(xtr), train_subset), subset_indices(len(xte), test_subset, seed=1)
        if itr is not None:
            xtr, ytr = xtr[itr], ytr[itr]
        if ite is not None:
            xte, yte = xte[ite], yte[ite]
        self.x_train = self._store(xtr.to(device))
        self.y_train = ytr.to(device=device, dtype=torch.long)
        self.x_test = self._store(xte.to(device))
        self.y_test = yte.to(device=device, dtype=torch.long)
        self.num_classes = len(ds.classes)
        self.input_size = tuple(int(s) for s in xtr.shape[1:])
        mean = torch.tensor([float(m) for m in ds.mean], device=device).view(1, -1, 1, 1)
        std = torch.tensor([float(s) for s in ds.std], device=device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std
        self._padded: tuple[int, torch.Tensor] | None = None

    def _store(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW logical shape; NHWC memory when channels_last."""
        if self.channels_last:
            return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
        return x.contiguous()

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    def normalize(self, xu8: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0-255 float) images -> normalised float32, channels-last when configured."""
        x = torch.addcmul(self._shift, xu8.float(), self._scale)
        if self.channels_last and not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _padded_train(self, padding: int) -> torch.Tensor:
        if self._padded is None or self._padded[0] != padding:
            self._padded = (padding, self._store(F.pad(self.x_train, (padding,) * 4)))
        return self._padded[1]

    def gather_augmented(
        self, idx: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor | None, padding: int
    ) -> torch.Tensor:
        """Images ``idx`` cropped at offsets (oy, ox) of the padded image, mirrored where ``flip``."""
        x = self._padded_train(padding) if padding > 0 else self.x_train
        _, c, h, w = self.x_train.shape
        dev = self.device
        rows = oy[:, None] + torch.arange(h, device=dev)
        cols = ox[:, None] + torch.arange(w, device=dev)
        if flip is not None:
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        ii = idx[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        if self.channels_last:  # gather in NHWC order so the result is channels-last in memory
            xn = x.permute(0, 2, 3, 1)
            out = xn[idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
            return out.permute(0, 3, 1, 2)
        return x[ii, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def steps_per_epoch(self, global_batch: int) -> int:
        return max(1, self.n_train // global_batch)

    def train_batches(
        self,
        epoch_seed: int,
        global_batch: int,
        augment: bool,
        padding: int = 4,
        flip: bool = True,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (x float normalised, y) batches. The permutation and augmentation are drawn for the
        *global* batch and each rank takes its slice, so N processes see exactly the batches 1 process
        would. The last incomplete batch is dropped."""
        n = self.n_train
        gb = min(global_batch, n)
        if gb % world:
            raise ValueError(f"global batch {gb} is not divisible by the world size {world}")
        local = gb // world
        g = torch.Generator().manual_seed(epoch_seed)
        perm = torch.randperm(n, generator=g).to(self.device)
        gaug = torch.Generator().manual_seed(epoch_seed + 1)  # CPU draws: identical on every device
        sl = slice(rank * local, (rank + 1) * local)
        for s in range(self.steps_per_epoch(gb)):
            idx = perm[s * gb : (s + 1) * gb]
            if augment and (padding > 0 or flip):
                o = torch.randint(0, 2 * padding + 1, (2, gb), generator=gaug)
                f = torch.rand(gb, generator=gaug) < 0.5 if flip else None
                o = o[:, sl].to(self.device)
                f = f[sl].to(self.device) if f is not None else None
                xb = self.gather_augmented(idx[sl], o[0], o[1], f, padding)
            else:
                xb = self.x_train[idx[sl]]
            yield self.normalize(xb), self.y_train[idx[sl]]

    def test_batches(self, batch: int, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x_test) if limit is None else min(limit, len(self.x_test))
        for i in range(0, n, batch):
            yield self.x_test[i : min(i + batch, n)], self.y_test[i : min(i + batch, n)]
