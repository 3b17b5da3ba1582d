"""``imagefolder:PATH``: class subfolders of image files (read with Pillow).

Layouts: ``PATH/train/<class>/*`` + ``PATH/test/<class>/*`` (``val`` is accepted for ``test``), or
``PATH/<class>/*``, split at random per class (option ``test_fraction``, default 0.2, ``seed`` 0).
Classes are the sorted subfolder names (the union over train and test). Images are converted to RGB, or
kept greyscale when every image is greyscale (option ``channels=1|3`` forces one). All images must have
the same size unless ``size`` (``32`` or ``"32x48"``, H x W) is given, in which case each is resized
(bilinear, Pillow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .core import Dataset, make_dataset

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
OPTIONS = ("size", "channels", "test_fraction", "seed")
DESCRIPTION = "imagefolder:PATH - PATH/{train,test}/<class>/*.png|jpg or PATH/<class>/* (random split)"


def _parse_size(v: Any, name: str) -> tuple[int, int] | None:
    if v is None:
        return None
    try:
        if isinstance(v, str):
            parts = [int(p) for p in v.lower().replace(",", "x").split("x")]
        elif isinstance(v, (tuple, list)):
            parts = [int(p) for p in v]
        else:
            parts = [int(v)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise DataError(f"{name}: size must be a positive integer or HxW such as 32x48, got {v!r}")
    return parts[0], parts[1]


def _class_files(folder: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
        out[d.name] = files
    return out


def _read(files: list[Path], size: tuple[int, int] | None, mode: str, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    arrs = []
    first: tuple[Path, tuple[int, int]] | None = None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if size is not None and (im.height, im.width) != size:
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"{name}: cannot read image {f} ({type(e).__name__}: {e})") from None
        hw = (a.shape[0], a.shape[1])
        if first is None:
            first = (f, hw)
        elif hw != first[1]:
            raise DataError(
                f"{name}: images differ in size ({first[0]} is {first[1][0]}x{first[1][1]}, {f} is {hw[0]}x{hw[1]}, "
                "HxW); pass size=H or size=HxW to resize them all"
            )
        arrs.append(a)
    return np.stack(arrs)


def _mode_of(files: list[Path], channels: Any, name: str) -> str:
    if channels is not None:
        try:
            c = int(channels)
        except (TypeError, ValueError):
            c = -1
        if c not in (1, 3):
            raise DataError(f"{name}: channels must be 1 or 3, got {channels!r}")
        return "L" if c == 1 else "RGB"
    from PIL import Image, UnidentifiedImageError

    for f in files:
        try:
            with Image.open(f) as im:
                if im.mode not in ("L", "1", "I;16", "I", "F", "LA"):
                    return "RGB"
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{name}: cannot read image {f} ({type(e).__name__}: {e})") from None
    return "L"


def load(path: str, **opts: Any) -> Dataset:
    name = f"imagefolder:{path}"
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise DataError(f"imagefolder: unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    if not path:
        raise DataError("imagefolder: give a path, as in imagefolder:/data/my_images")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a directory; expected class subfolders of images")
    size = _parse_size(opts.get("size"), name)
    try:
        frac = float(opts.get("test_fraction", 0.2))
        seed = int(opts.get("seed", 0))
    except (TypeError, ValueError):
        raise DataError(f"{name}: test_fraction must be a number in (0, 1) and seed an integer") from None
    if not 0.0 < frac < 1.0:
        raise DataError(f"{name}: test_fraction must be in (0, 1), got {frac}")

    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        tr, te = _class_files(root / "train"), _class_files(test_dir)
        classes = sorted(set(tr) | set(te))
        train_items = [(f, classes.index(c)) for c, fs in tr.items() for f in fs]
        test_items = [(f, classes.index(c)) for c, fs in te.items() for f in fs]
        split = f"train/ and {test_dir.name}/ folders"
    else:
        per = _class_files(root)
        classes = sorted(per)
        if not classes:
            raise DataError(f"{name}: {root} has no class subfolders (expected {root}/<class>/<image files>)")
        g = np.random.default_rng(seed)
        train_items, test_items = [], []
        for ci, c in enumerate(classes):
            fs = per[c]
            perm = g.permutation(len(fs))
            n_test = int(round(len(fs) * frac)) if len(fs) > 1 else 0
            n_test = min(max(n_test, 1), len(fs) - 1) if len(fs) > 1 else 0
            test_items += [(fs[i], ci) for i in sorted(perm[:n_test])]
            train_items += [(fs[i], ci) for i in sorted(perm[n_test:])]
        split = f"random per-class split of {root}, test_fraction {frac}, seed {seed}"
    if not train_items:
        raise DataError(f"{name}: no training images found (extensions {', '.join(sorted(EXTENSIONS))})")
    if not test_items:
        raise DataError(f"{name}: no test images found; add more images per class or a test/ folder")
    files = [f for f, _ in train_items + test_items]
    mode = _mode_of(files, opts.get("channels"), name)
    x = _read(files, size, mode, name)
    y = np.array([c for _, c in train_items + test_items], dtype=np.int64)
    n = len(train_items)
    meta = {"source": str(root.resolve()), "split": split, "notes": f"Pillow, mode {mode}, size {x.shape[1:3]}"}
    return make_dataset(name, x[:n], y[:n], x[n:], y[n:], classes=classes, meta=meta)
