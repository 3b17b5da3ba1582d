"""Datasets as whole-in-memory uint8 tensors.

>>> from poolstride import data
>>> ds = data.load("textures")                     # embedded default, no files, no network
>>> ds.x_train.shape, ds.x_train.dtype, ds.y_train.dtype
(torch.Size([5000, 3, 32, 32]), torch.uint8, torch.int64)
>>> ds.classes[:3], ds.num_classes
(['brick', 'grass', 'gravel'], 10)

Names (see :func:`names` and :func:`descriptions`):

* ``textures`` - embedded default, built offline from photographs bundled with scikit-image
  (options ``size``, ``n_train``, ``n_test``, ``seed``, ``channels``, ``jitter``).
* ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``svhn`` - the on-disk formats torchvision
  writes under ``data_dir``; ``download=True`` fetches them from the canonical URLs (md5-checked).
  A directory in the ``npz`` layout below is accepted too (e.g. ``data_dir=".../shared/data/cifar10"``).
* ``npz:PATH`` - one ``.npz`` with ``x_train, y_train, x_test, y_test`` (optional ``classes``), or a
  directory of ``train*.npz`` files plus one ``test.npz``, each with ``x`` (N,H,W[,C] uint8) and ``y``.
* ``imagefolder:PATH`` - class subfolders of images (``PATH/train/<class>/`` + ``PATH/test/<class>/``,
  or ``PATH/<class>/`` split randomly); option ``size`` resizes.

Every error a user can cause (unknown name, missing or corrupted files, bad shapes or dtypes, labels out
of range) is a :class:`~poolstride.errors.DataError` with one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from . import imagefolder, npz, standard, textures
from .core import Dataset, cache_dir, channel_stats, default_data_dir, make_dataset, subset

_DESCRIPTIONS: dict[str, str] = {
    "textures": textures.DESCRIPTION,
    **{k: e.description for k, e in standard.ENTRIES.items()},
    "imagefolder:PATH": imagefolder.DESCRIPTION,
    "npz:PATH": npz.DESCRIPTION,
}


def names() -> list[str]:
    """Every dataset name :func:`load` accepts (``npz:PATH`` and ``imagefolder:PATH`` take a path)."""
    return list(_DESCRIPTIONS)


def descriptions() -> dict[str, str]:
    """``{name: one-line description}`` for the CLI, in the order of :func:`names`."""
    return dict(_DESCRIPTIONS)


def load(name: str, data_dir: str | Path | None = None, download: bool = False, **opts: Any) -> Dataset:
    """Load a dataset by name; see the module docstring for the names and their options.

    ``data_dir`` is where the standard datasets live (default ``$POOLSTRIDE_DATA_DIR`` or
    ``~/.cache/poolstride/data``); a relative ``npz:PATH``/``imagefolder:PATH`` is taken relative to it
    when it is given. ``download=True`` lets the standard datasets fetch missing files.
    Raises :class:`DataError` (one clear line) for every problem with the name, the options or the files.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"dataset name must be a non-empty string; valid: {', '.join(names())}")
    key = name.strip()
    if key.lower() in ("imagefolder", "npz"):  # the torchvision habit: --dataset imagefolder --data-dir DIR
        if data_dir is None:
            raise DataError(f"--dataset {key} needs --data-dir DIR (or write {key}:DIR)")
        key = f"{key.lower()}:{Path(data_dir).expanduser()}"
        data_dir = None
    prefix, sep, rest = key.partition(":")
    if sep and prefix.lower() in ("npz", "imagefolder"):
        if rest and data_dir is not None and not Path(rest).expanduser().is_absolute():
            rest = str(Path(data_dir).expanduser() / rest)  # a relative PATH is relative to data_dir
        return npz.load(rest, **opts) if prefix.lower() == "npz" else imagefolder.load(rest, **opts)
    low = standard.ALIASES.get(key.lower(), key.lower())
    if low == "textures":
        return textures.load(**opts)
    if low in standard.ENTRIES:
        return standard.load(low, data_dir, download, **opts)
    raise DataError(f"unknown dataset {name!r}; valid: {', '.join(names())}")


__all__ = [
    "DataError",
    "Dataset",
    "cache_dir",
    "channel_stats",
    "default_data_dir",
    "descriptions",
    "load",
    "make_dataset",
    "names",
    "subset",
]
