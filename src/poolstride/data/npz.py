"""``npz:PATH``: numpy archives.

Two layouts:

* **one file** holding ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``classes``, an
  array of strings);
* **a directory** of ``train*.npz`` files (concatenated in natural order: ``train_2`` before
  ``train_10``) and one ``test.npz``, each holding ``x`` and ``y`` (and optionally ``classes``).
  This is the layout of ``shared/data/cifar10`` and ``shared/data/mnist``.

Images are ``uint8`` ``(N, H, W)`` (greyscale) or ``(N, H, W, C)`` (channels-last); labels any integer
dtype. Members may be deflate- or LZMA-compressed (``np.load`` handles both). Decompressing LZMA is slow
(CIFAR-10: ~13 s), so by default the validated arrays are cached uncompressed under
``~/.cache/poolstride/npz/`` (``$POOLSTRIDE_CACHE_DIR``), keyed by path, size and mtime of every source
file; option ``cache=False`` turns that off.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..results.io import make_temp_dir, replace_dir
from .core import Dataset, cache_dir, make_dataset

OPTIONS = ("classes", "cache")
DESCRIPTION = "npz:PATH - one .npz (x_train,y_train,x_test,y_test) or a dir of train*.npz + test.npz (x, y)"
_CACHE_VERSION = 1
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, lzma.LZMAError)


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def layout_files(path: Path) -> tuple[list[Path], Path] | None:
    """``(train files, test file)`` if ``path`` is a directory in the npz layout, else None."""
    if not path.is_dir():
        return None
    train = sorted((p for p in path.glob("train*.npz") if p.is_file()), key=_natural_key)
    test = path / "test.npz"
    if not train or not test.is_file():
        return None
    return train, test


def _open(path: Path, name: str) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise DataError(f"{name}: cannot read {path}: not a valid .npz archive ({_why(e)})") from None


def _why(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _member(z: Any, key: str, path: Path, name: str) -> np.ndarray:
    if key not in z.files:
        raise DataError(f"{name}: {path} has no array {key!r} (it has {', '.join(z.files) or 'none'})")
    try:
        return np.asarray(z[key])
    except _READ_ERRORS as e:
        raise DataError(f"{name}: {path} is truncated or corrupted: reading {key!r} failed ({_why(e)})") from None


def _classes(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        out = [c.strip() for c in value.split(",")]
    elif isinstance(value, np.ndarray):
        out = [str(c) for c in value.reshape(-1).tolist()]
    elif isinstance(value, Sequence):
        out = [str(c) for c in value]
    else:
        raise DataError(f"{name}: classes must be a list of names or a comma-separated string")
    if not out or any(not c for c in out):
        raise DataError(f"{name}: classes must be non-empty names, got {value!r}")
    return out


def _read_xy(f: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with _open(f, name) as z:
        classes = _member(z, "classes", f, name) if "classes" in z.files else None
        return _member(z, "x", f, name), _member(z, "y", f, name), classes


def read_arrays(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str] | None, str]:
    """Read either layout. Returns (x_train, y_train, x_test, y_test, classes or None, description)."""
    if not path.exists():
        raise DataError(
            f"{name}: {path} does not exist; expected a .npz file with x_train, y_train, x_test, y_test "
            "or a directory with train*.npz and test.npz (each with x and y)"
        )
    if path.is_dir():
        files = layout_files(path)
        if files is None:
            have = sorted(p.name for p in path.iterdir())[:8]
            raise DataError(
                f"{name}: directory {path} needs train*.npz files and a test.npz (each with arrays x and y); "
                f"found {', '.join(have) or 'nothing'}"
            )
        train_files, test_file = files
        # LZMA/deflate decompression releases the GIL: read the files in parallel threads
        with ThreadPoolExecutor(max_workers=max(1, min(len(train_files) + 1, os.cpu_count() or 1, 8))) as pool:
            parts = list(pool.map(lambda f: _read_xy(f, name), [*train_files, test_file]))
        xs = [p[0] for p in parts[:-1]]
        ys = [p[1] for p in parts[:-1]]
        xte, yte, test_classes = parts[-1]
        classes = next((p[2] for p in parts[:-1] if p[2] is not None), test_classes)
        shapes = {x.shape[1:] for x in xs}
        if len(shapes) > 1:
            raise DataError(f"{name}: the train*.npz files hold images of different shapes {sorted(shapes)}")
        dtypes = {x.dtype for x in xs}
        if len(dtypes) > 1:
            raise DataError(f"{name}: the train*.npz files hold images of different dtypes {sorted(map(str, dtypes))}")
        for f, x, y in zip(train_files, xs, ys, strict=True):
            if len(x) != len(y):
                raise DataError(f"{name}: {f} has {len(x)} images in x but {len(y)} labels in y")
        xtr = xs[0] if len(xs) == 1 else np.concatenate(xs)
        ytr = ys[0] if len(ys) == 1 else np.concatenate(ys)
        desc = f"train = {' + '.join(f.name for f in train_files)}; test = test.npz"
    else:
        with _open(path, name) as z:
            xtr, ytr = _member(z, "x_train", path, name), _member(z, "y_train", path, name)
            xte, yte = _member(z, "x_test", path, name), _member(z, "y_test", path, name)
            classes = _member(z, "classes", path, name) if "classes" in z.files else None
        desc = f"x_train/y_train and x_test/y_test of {path.name}"
    return xtr, ytr, xte, yte, _classes(classes, name), desc


def _cache_key(path: Path) -> str:
    files = [path] if path.is_file() else sorted(path.glob("*.npz"))
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{path.resolve()}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


_TENSORS = ("x_train", "y_train", "x_test", "y_test")


def _cache_read(d: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    try:
        info = json.loads((d / "dataset.json").read_text())
        arrs = {k: np.load(d / f"{k}.npy", allow_pickle=False) for k in _TENSORS}
    except (OSError, ValueError, KeyError):
        return None
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrs.items()}, info


def _cache_write(d: Path, ds: Dataset, stored: list[str] | None, desc: str) -> None:
    """Atomic: written to a temporary sibling, then swapped in. A failure is a warning (the cache is optional)."""
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(d, prefix=d.name + ".")
        try:
            for k in _TENSORS:
                np.save(tmp / f"{k}.npy", getattr(ds, k).numpy())
            info = {"classes": stored, "mean": ds.mean, "std": ds.std, "split": desc}
            (tmp / "dataset.json").write_text(json.dumps(info))
            if not replace_dir(tmp, d):
                raise OSError(f"another process keeps replacing {d}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        warnings.warn(f"npz cache not written ({e}); the next load decompresses again", RuntimeWarning, stacklevel=2)


def load_path(
    path: str | Path,
    name: str | None = None,
    classes: Any = None,
    cache: bool = True,
    meta: dict[str, Any] | None = None,
) -> Dataset:
    """Load ``path`` in either npz layout. ``name`` defaults to ``npz:PATH``; ``meta`` is merged in.

    With ``cache`` the validated arrays are kept uncompressed under ``cache_dir()/npz/<key>``, where the key
    depends on the resolved path and the name, size and mtime of every ``.npz`` file in it.
    """
    p = Path(path).expanduser()
    name = name or f"npz:{path}"
    cls = _classes(classes, name)
    key_dir = None
    if cache and p.exists():
        try:
            key_dir = cache_dir() / "npz" / _cache_key(p)
        except OSError:
            key_dir = None
        hit = _cache_read(key_dir) if key_dir is not None and key_dir.is_dir() else None
        if hit is not None:
            t, info = hit
            names = cls or info.get("classes")
            hi = int(max(t["y_train"].max(), t["y_test"].max()))
            names = [str(i) for i in range(hi + 1)] if names is None else names
            if hi >= len(names):
                raise DataError(
                    f"{name}: label {hi} is out of range for {len(names)} classes (valid labels 0..{len(names) - 1})"
                )
            m = {"source": str(p.resolve()), "split": info.get("split", ""), "notes": ""}
            m.update(meta or {})
            m["cache"] = str(key_dir)
            return Dataset(name, t["x_train"], t["y_train"], t["x_test"], t["y_test"], list(names),
                           tuple(info["mean"]), tuple(info["std"]), m)  # fmt: skip
    xtr, ytr, xte, yte, stored, desc = read_arrays(p, name)
    m = {"source": str(p.resolve()), "split": desc, "notes": ""}
    m.update(meta or {})
    ds = make_dataset(name, xtr, ytr, xte, yte, classes=cls or stored, meta=m)
    if key_dir is not None:
        _cache_write(key_dir, ds, stored, desc)
    return ds


def load(path: str, **opts: Any) -> Dataset:
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise DataError(f"npz: unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    if not path:
        raise DataError("npz: give a path, as in npz:/data/my_set.npz or npz:/data/my_dir")
    cache = opts.get("cache", True)
    if isinstance(cache, str):
        cache = cache.lower() not in ("0", "false", "no", "off")
    return load_path(path, classes=opts.get("classes"), cache=bool(cache))
