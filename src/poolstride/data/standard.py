"""CIFAR-10/100, MNIST, Fashion-MNIST and SVHN in the on-disk formats torchvision writes.

Under ``data_dir`` (default ``$POOLSTRIDE_DATA_DIR`` or ``~/.cache/poolstride/data``):

==============  ===========================================================================================
cifar10         ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (pickles)
cifar100        ``cifar-100-python/{train, test, meta}`` (pickles; option ``label=fine|coarse``)
mnist           ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
fashion-mnist   ``FashionMNIST/raw/`` (same file names as MNIST)
svhn            ``train_32x32.mat``, ``test_32x32.mat`` (option ``extra=True`` adds ``extra_32x32.mat``)
==============  ===========================================================================================

``data_dir`` may also point at the inner folder itself (``.../cifar-10-batches-py``), or at a directory in
the ``npz`` layout (``train*.npz`` + ``test.npz``), directly or as ``data_dir/<name>`` - as in
``shared/data/cifar10``. ``download=True`` fetches missing files from the canonical URLs (md5-checked).
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from . import download as dl
from . import npz
from .core import Dataset, default_data_dir, make_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]  # fmt: skip
SVHN_CLASSES = [str(i) for i in range(10)]

MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# name -> (mirror base URLs, {file: md5})
RESOURCES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "cifar10": (("https://www.cs.toronto.edu/~kriz/",), {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "cifar100": (
        ("https://www.cs.toronto.edu/~kriz/",),
        {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
    ),
    "mnist": (("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"), MNIST_FILES),
    "fashion-mnist": (("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), FASHION_FILES),
    "svhn": (
        ("http://ufldl.stanford.edu/housenumbers/",),
        {
            "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
            "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
            "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
        },
    ),
}


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    options: tuple[str, ...] = field(default_factory=tuple)


ENTRIES = {
    "cifar10": Entry("cifar10", "CIFAR-10: 10 classes, 3x32x32, 50000/10000 (torchvision files or npz layout)",
                     ("cache",)),
    "cifar100": Entry("cifar100", "CIFAR-100: 100 fine (or 20 coarse) classes, 3x32x32, 50000/10000",
                      ("label", "cache")),
    "mnist": Entry("mnist", "MNIST digits: 10 classes, 1x28x28, 60000/10000 (torchvision files or npz layout)",
                   ("cache",)),
    "fashion-mnist": Entry("fashion-mnist", "Fashion-MNIST: 10 clothing classes, 1x28x28, 60000/10000",
                           ("cache",)),
    "svhn": Entry("svhn", "SVHN house numbers: 10 digits, 3x32x32, 73257/26032 (+ extra=True: 531131 more)",
                  ("extra", "cache")),
}  # fmt: skip
ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
}


def _bool(v: Any, what: str) -> bool:
    if isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off"):
            return False
        raise DataError(f"{what} must be true or false, got {v!r}")
    return bool(v)


# ----------------------------------------------------------------------------------------------------------
# CIFAR pickles


class _SafeUnpickler(pickle.Unpickler):
    """Only what CIFAR's pickles contain: builtins and numpy arrays. Anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path, name: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, ImportError, IndexError) as e:
        raise DataError(f"{name}: {path} is truncated or not a CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{name}: {path} does not hold a dict (got {type(obj).__name__}); not a CIFAR pickle")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path, name)
    if "data" not in d or label_key not in d:
        raise DataError(f"{name}: {path} lacks 'data' or {label_key!r} (has {', '.join(sorted(d))})")
    x = np.asarray(d["data"])
    if x.dtype != np.uint8:
        raise DataError(f"{name}: {path} 'data' has dtype {x.dtype}, expected uint8")
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{name}: {path} 'data' has shape {x.shape}, expected (N, 3072)")
    y = np.asarray(d[label_key])
    return x.reshape(-1, 3, 32, 32), y


def _names(d: dict[str, Any], key: str) -> list[str] | None:
    v = d.get(key)
    if v is None:
        return None
    return [s.decode("latin1") if isinstance(s, bytes) else str(s) for s in v]


def _read_cifar10(folder: Path, name: str) -> Dataset:
    parts = [_cifar_batch(folder / f"data_batch_{i}", "labels", name) for i in range(1, 6)]
    xte, yte = _cifar_batch(folder / "test_batch", "labels", name)
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        classes = _names(_unpickle(folder / "batches.meta", name), "label_names") or classes
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([np.asarray(p[1]) for p in parts])
    meta = {"source": str(folder), "split": "official: data_batch_1..5 / test_batch", "notes": ""}
    return _nchw(name, xtr, ytr, xte, yte, classes, meta)


def _nchw(name: str, xtr: Any, ytr: Any, xte: Any, yte: Any, classes: list[str], meta: dict[str, Any]) -> Dataset:
    return make_dataset(name, xtr, ytr, xte, yte, classes=classes, meta=meta, layout="NCHW")


def _read_cifar100(folder: Path, name: str, label: str) -> Dataset:
    key = f"{label}_labels"
    xtr, ytr = _cifar_batch(folder / "train", key, name)
    xte, yte = _cifar_batch(folder / "test", key, name)
    classes = None
    if (folder / "meta").is_file():
        classes = _names(_unpickle(folder / "meta", name), f"{label}_label_names")
    if classes is None:
        n = 100 if label == "fine" else 20
        classes = [str(i) for i in range(n)]
    meta = {"source": str(folder), "split": "official: train / test", "notes": f"{label} labels"}
    return _nchw(name, xtr, ytr, xte, yte, classes, meta)


# ----------------------------------------------------------------------------------------------------------
# MNIST idx

_IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, name: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed), checking magic and length."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{name}: cannot read {path}: truncated or corrupted gzip ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DataError(f"{name}: {path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: {path} is truncated (header incomplete)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(_IDX_DTYPES[raw[2]])
    need = int(np.prod(dims)) * dt.itemsize
    if len(raw) - header != need:
        raise DataError(
            f"{name}: {path} is truncated or corrupted: header says {dims} ({need} bytes), file has "
            f"{len(raw) - header} data bytes"
        )
    return np.frombuffer(raw, dtype=dt, count=int(np.prod(dims)), offset=header).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _mnist_folder(root: Path, sub: str) -> Path | None:
    for cand in (root / sub / "raw", root / "raw", root):
        if _idx_file(cand, "train-images-idx3-ubyte") is not None:
            return cand
    return None


def _read_mnist(folder: Path, name: str, classes: list[str]) -> Dataset:
    arrays = {}
    for split in ("train", "t10k"):
        for kind, nd in (("images-idx3", 3), ("labels-idx1", 1)):
            stem = f"{split}-{kind}-ubyte"
            f = _idx_file(folder, stem)
            if f is None:
                raise DataError(f"{name}: {folder} has train-images but lacks {stem}[.gz]")
            a = read_idx(f, name)
            if a.ndim != nd:
                raise DataError(f"{name}: {f} has {a.ndim} dimensions, expected {nd}")
            arrays[(split, kind)] = a
    meta = {"source": str(folder), "split": "official: train / t10k", "notes": ""}
    return make_dataset(
        name,
        arrays[("train", "images-idx3")],
        arrays[("train", "labels-idx1")],
        arrays[("t10k", "images-idx3")],
        arrays[("t10k", "labels-idx1")],
        classes=classes,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------------------
# SVHN .mat


def read_svhn_mat(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (32,32,3,N) and ``y`` (N,1) with label 10 meaning digit 0 -> (N,32,32,3), (N,) in 0..9."""
    import scipy.io

    try:
        m = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, OSError... on bad files
        raise DataError(f"{name}: cannot read {path}: truncated or not a MATLAB file ({type(e).__name__})") from None
    if "X" not in m or "y" not in m:
        raise DataError(f"{name}: {path} lacks 'X' or 'y' (has {', '.join(k for k in m if not k.startswith('__'))})")
    x, y = np.asarray(m["X"]), np.asarray(m["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"{name}: {path} 'X' has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DataError(f"{name}: {path} 'X' has dtype {x.dtype}, expected uint8")
    y = y.astype(np.int64)
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y


def _svhn_folder(root: Path) -> Path | None:
    for cand in (root, root / "svhn", root / "SVHN"):
        if (cand / "train_32x32.mat").is_file():
            return cand
    return None


def _read_svhn(folder: Path, name: str, extra: bool) -> Dataset:
    test = folder / "test_32x32.mat"
    if not test.is_file():
        raise DataError(f"{name}: {folder} has train_32x32.mat but lacks test_32x32.mat")
    xtr, ytr = read_svhn_mat(folder / "train_32x32.mat", name)
    split = "official: train_32x32 / test_32x32"
    if extra:
        f = folder / "extra_32x32.mat"
        if not f.is_file():
            raise DataError(f"{name}: extra=True needs {f} (http://ufldl.stanford.edu/housenumbers/extra_32x32.mat)")
        xe, ye = read_svhn_mat(f, name)
        xtr, ytr = np.concatenate([xtr, xe]), np.concatenate([ytr, ye])
        split = "official: train_32x32 + extra_32x32 / test_32x32"
    xte, yte = read_svhn_mat(test, name)
    meta = {"source": str(folder), "split": split, "notes": "label 10 in the .mat files is digit 0"}
    return make_dataset(name, xtr, ytr, xte, yte, classes=SVHN_CLASSES, meta=meta)


# ----------------------------------------------------------------------------------------------------------
# dispatch


def _npz_dir(root: Path, key: str) -> Path | None:
    subs = {"cifar10": ("cifar10", "cifar-10"), "cifar100": ("cifar100", "cifar-100"), "mnist": ("mnist",),
            "fashion-mnist": ("fashion-mnist", "fashion_mnist", "fashionmnist"), "svhn": ("svhn",)}[key]  # fmt: skip
    for cand in (root, *(root / s for s in subs)):
        if npz.layout_files(cand) is not None:
            return cand
    return None


def _expected(key: str, root: Path) -> str:
    """The one-line 'put these files there' instruction."""
    return {
        "cifar10": f"put cifar-10-batches-py/{{data_batch_1..5,test_batch,batches.meta}} (unpacked from "
        f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) under {root}",
        "cifar100": f"put cifar-100-python/{{train,test,meta}} (unpacked from "
        f"https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz) under {root}",
        "mnist": f"put MNIST/raw/{{train-images-idx3-ubyte,train-labels-idx1-ubyte,t10k-images-idx3-ubyte,"
        f"t10k-labels-idx1-ubyte}}[.gz] (from https://ossci-datasets.s3.amazonaws.com/mnist/) under {root}",
        "fashion-mnist": f"put FashionMNIST/raw/{{train-images-idx3-ubyte,train-labels-idx1-ubyte,"
        f"t10k-images-idx3-ubyte,t10k-labels-idx1-ubyte}}[.gz] (from "
        f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/) under {root}",
        "svhn": f"put train_32x32.mat and test_32x32.mat (from http://ufldl.stanford.edu/housenumbers/) in {root}",
    }[key]


def _download(key: str, root: Path, extra: bool = False) -> None:
    bases, files = RESOURCES[key]
    hint = _expected(key, root)
    if key in ("cifar10", "cifar100"):
        ((fname, md5),) = files.items()
        archive = dl.fetch([b + fname for b in bases], root / fname, md5, key, hint)
        dl.extract_tar(archive, root, key)
    elif key in ("mnist", "fashion-mnist"):
        sub = root / ("MNIST" if key == "mnist" else "FashionMNIST") / "raw"
        for fname, md5 in files.items():
            if _idx_file(sub, fname[:-3]) is None:
                dl.fetch([b + fname for b in bases], sub / fname, md5, key, hint)
    else:
        want = ["train_32x32.mat", "test_32x32.mat"] + (["extra_32x32.mat"] if extra else [])
        for fname in want:
            if not (root / fname).is_file():
                dl.fetch([b + fname for b in bases], root / fname, files[fname], key, hint)


def _find(key: str, root: Path, label: str) -> Callable[[], Dataset] | None:
    name = key
    if key == "cifar10":
        for cand in (root / "cifar-10-batches-py", root):
            if (cand / "data_batch_1").is_file():
                return lambda c=cand: _read_cifar10(c, name)  # type: ignore[misc]
    elif key == "cifar100":
        for cand in (root / "cifar-100-python", root):
            if (cand / "train").is_file():
                return lambda c=cand: _read_cifar100(c, name, label)  # type: ignore[misc]
    elif key in ("mnist", "fashion-mnist"):
        folder = _mnist_folder(root, "MNIST" if key == "mnist" else "FashionMNIST")
        classes = MNIST_CLASSES if key == "mnist" else FASHION_CLASSES
        if folder is not None:
            return lambda: _read_mnist(folder, name, classes)
    return None


def load(key: str, data_dir: str | Path | None, download: bool, **opts: Any) -> Dataset:
    entry = ENTRIES[key]
    unknown = sorted(set(opts) - set(entry.options))
    if unknown:
        valid = ", ".join(entry.options) or "none"
        raise DataError(f"{key}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    label = str(opts.get("label", "fine")).lower()
    if label not in ("fine", "coarse"):
        raise DataError(f"{key}: label must be 'fine' or 'coarse', got {opts.get('label')!r}")
    extra = _bool(opts.get("extra", False), f"{key}: extra")
    cache = _bool(opts.get("cache", True), f"{key}: cache")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and not root.exists() and not download:
        raise DataError(
            f"{key}: data directory {root} does not exist; {_expected(key, root)}"
            ", or pass download=True (CLI: --download)"
        )

    reader = _find(key, root, label)
    if reader is None and key == "svhn":
        folder = _svhn_folder(root)
        if folder is not None:
            reader = lambda: _read_svhn(folder, key, extra)  # noqa: E731
    if reader is None:
        nd = _npz_dir(root, key)
        if nd is not None and key != "cifar100":
            classes = {"cifar10": CIFAR10_CLASSES, "mnist": MNIST_CLASSES, "fashion-mnist": FASHION_CLASSES,
                       "svhn": SVHN_CLASSES}[key]  # fmt: skip
            meta = {"notes": f"{key} read from the npz layout in {nd}"}
            return npz.load_path(nd, name=key, classes=classes, cache=cache, meta=meta)
        if nd is not None:
            return npz.load_path(nd, name=key, cache=cache, meta={"notes": f"{key} read from the npz layout"})
    if reader is None:
        if not download:
            raise DataError(
                f"{key}: no dataset files found in {root}; {_expected(key, root)}"
                ", or pass download=True (CLI: --download)"
            )
        _download(key, root, extra)
        reader = _find(key, root, label)
        if reader is None and key == "svhn":
            reader = lambda: _read_svhn(root, key, extra)  # noqa: E731
        if reader is None:
            raise DataError(f"{key}: downloaded, but the expected files are still missing; {_expected(key, root)}")
    return reader()
