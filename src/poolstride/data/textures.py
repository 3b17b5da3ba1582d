"""``textures``: the embedded default dataset, built offline from photographs bundled with scikit-image.

Each class is one photograph that ships inside the scikit-image wheel (no download, no network).
Every image is converted to greyscale (so colour is never a shortcut) and replicated to 3 channels
(``channels=1`` keeps one). A sample is a random square crop, resampled to ``size`` x ``size``:

* **classes** (10): ``brick``, ``grass``, ``gravel``, ``moon`` (lunar surface), ``coins``,
  ``camera`` (the cameraman), ``text`` (characters on a page), ``cells`` (a stained-tissue micrograph),
  ``chelsea`` (a cat), ``motorcycle`` (in a garage). All are PNG files (exact decoding everywhere).
* **split**: in every photograph the column strip from 50% to 75% of the width is the test region; the
  train region is the rest, left and right of it, minus a gap of one maximal crop width on each side.
  Every crop lies entirely inside one region, so no train pixel is ever seen at test time (and no train
  pixel is within a crop width of a test pixel). Train crops come from both sides of the test strip, so
  the photographs' test strips are not a region the model never saw anything like.
* **jitter** (both splits, independently drawn): crop scale uniform in [0.8, 1.25] x ``size`` (bilinear
  resampling), one of the 8 rotations/flips by multiples of 90 degrees, contrast x[0.7, 1.3] around
  mid-grey, brightness +-30 levels and additive noise uniform in +-8 levels.
* **counts**: ``n_train`` (5000) and ``n_test`` (1000) patches, balanced over the classes, shuffled.
* **determinism**: fixed ``seed`` (0); only exact arithmetic is used (no transcendental functions, no
  platform-dependent resampling), so every install produces the same bytes. Built in well under a second
  and cached in memory per process.

Options: ``size`` (8..72, default 32), ``n_train``, ``n_test``, ``seed``, ``channels`` (1 or 3),
``jitter`` (True/False: False turns off scale, rotation and photometric jitter; for debugging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .core import Dataset, make_dataset

# (class name, file bundled in skimage/data, what it shows)
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("brick", "brick.png", "a brick wall"),
    ("grass", "grass.png", "grass"),
    ("gravel", "gravel.png", "gravel"),
    ("moon", "moon.png", "the lunar surface"),
    ("coins", "coins.png", "Greek coins on a plain background"),
    ("camera", "camera.png", "the cameraman (man, tripod, lawn, sky)"),
    ("text", "text.png", "hand-written and printed characters on a page"),
    ("cells", "ihc.png", "immunohistochemistry micrograph of stained tissue"),
    ("chelsea", "chelsea.png", "Chelsea the cat"),
    ("motorcycle", "motorcycle_left.png", "a motorcycle in a cluttered garage"),
)
TEST_STRIP = (0.5, 0.75)  # fractions of the width
SCALE = (0.8, 1.25)
CONTRAST = (0.7, 1.3)
BRIGHTNESS = 30.0
NOISE = 8
DEFAULTS: dict[str, Any] = {"size": 32, "n_train": 5000, "n_test": 1000, "seed": 0, "channels": 3, "jitter": True}
DESCRIPTION = "embedded default: 10 texture/photo classes from scikit-image's bundled images, 3x32x32, 5000/1000"

_CACHE: dict[tuple[Any, ...], tuple[Dataset, dict[str, np.ndarray]]] = {}
_IMAGES: dict[str, np.ndarray] = {}


def _image_dir() -> Path:
    try:
        import skimage.data
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise DataError("textures needs scikit-image (pip install scikit-image)") from e
    return Path(skimage.data.__file__).parent


def _grey(fname: str) -> np.ndarray:
    """The bundled image as greyscale uint8 (H, W); RGB -> Y with integer BT.601 weights."""
    if fname in _IMAGES:
        return _IMAGES[fname]
    from PIL import Image

    path = _image_dir() / fname
    if not path.is_file():
        raise DataError(
            f"textures: scikit-image's bundled image {path} is missing; reinstall scikit-image (pip install "
            "--force-reinstall scikit-image) or pick another dataset"
        )
    with Image.open(path) as im:
        a = np.asarray(im)
    if a.ndim == 3:
        rgb = a[..., :3].astype(np.int64)
        a = ((299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    a = np.ascontiguousarray(a, dtype=np.uint8)
    _IMAGES[fname] = a
    return a


@dataclass(frozen=True)
class Region:
    """A union of column intervals ``[c0, c1)`` (over all rows) of a class image."""

    cols: tuple[tuple[int, int], ...]

    def as_list(self) -> list[list[int]]:
        return [[a, b] for a, b in self.cols]


def regions(width: int, size: int) -> tuple[Region, Region, int]:
    """(train region, test region, gap) of an image ``width`` columns wide, for patch ``size``.

    Train intervals narrower than one maximal crop are dropped.
    """
    crop_max = math.ceil(size * SCALE[1])
    t0, t1 = round(width * TEST_STRIP[0]), round(width * TEST_STRIP[1])
    train = tuple((a, b) for a, b in ((0, t0 - crop_max), (t1 + crop_max, width)) if b - a >= crop_max)
    return Region(train), Region(((t0, t1),)), crop_max


def _patches(
    img: np.ndarray, region: Region, n: int, size: int, rng: np.random.Generator, jitter: bool
) -> tuple[np.ndarray, np.ndarray]:
    """n patches (n, size, size) uint8 and their source boxes (n, 4) = (row0, col0, height, width)."""
    h = img.shape[0]
    s = SCALE[0] + (SCALE[1] - SCALE[0]) * rng.random(n) if jitter else np.ones(n)
    ext = np.ceil(s * size - 1e-9).astype(np.int64)  # box side in source pixels
    r0 = (rng.random(n) * (h - ext + 1)).astype(np.int64)
    # a start column uniform over every valid position of every interval of the region
    counts = np.stack([np.maximum(b - a - ext + 1, 0) for a, b in region.cols], axis=1)  # (n, intervals)
    u = (rng.random(n) * counts.sum(axis=1)).astype(np.int64)
    c0 = np.zeros(n, dtype=np.int64)
    before = np.zeros(n, dtype=np.int64)
    for j, (a, _b) in enumerate(region.cols):
        inside = (u >= before) & (u < before + counts[:, j])
        c0[inside] = a + u[inside] - before[inside]
        before = before + counts[:, j]
    # bilinear sampling at pixel centres; coordinates clipped to the box so no pixel outside it is read
    t = np.arange(size, dtype=np.float64) + 0.5
    ry = np.clip(t[None, :] * s[:, None] - 0.5, 0.0, (ext - 1)[:, None].astype(np.float64))
    fy = np.floor(ry)
    wy = ry - fy
    y0 = fy.astype(np.int64)
    y1 = np.minimum(y0 + 1, (ext - 1)[:, None])
    y0, y1 = y0 + r0[:, None], y1 + r0[:, None]
    x0, x1 = y0 - r0[:, None] + c0[:, None], y1 - r0[:, None] + c0[:, None]
    wx = wy
    f = img.astype(np.float64)
    a = f[y0[:, :, None], x0[:, None, :]]
    b = f[y0[:, :, None], x1[:, None, :]]
    c = f[y1[:, :, None], x0[:, None, :]]
    d = f[y1[:, :, None], x1[:, None, :]]
    wyy, wxx = wy[:, :, None], wx[:, None, :]
    out = (a * (1 - wxx) + b * wxx) * (1 - wyy) + (c * (1 - wxx) + d * wxx) * wyy
    if jitter:
        k = rng.integers(0, 8, n)
        for m in range(8):
            sel = k == m
            if sel.any():
                p = np.rot90(out[sel], m % 4, axes=(1, 2))
                out[sel] = p[:, :, ::-1] if m >= 4 else p
        con = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * rng.random(n)
        bri = BRIGHTNESS * (2 * rng.random(n) - 1)
        out = (out - 128.0) * con[:, None, None] + 128.0 + bri[:, None, None]
        out = out + rng.integers(-NOISE, NOISE + 1, out.shape)
    patches = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    boxes = np.stack([r0, c0, ext, ext], axis=1)
    return patches, boxes


def _split_counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def build(
    size: int = 32, n_train: int = 5000, n_test: int = 1000, seed: int = 0, channels: int = 3, jitter: bool = True
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Build the textures dataset; also return the source boxes of every patch.

    The second value maps ``"train"``/``"test"`` to int64 arrays ``(N, 5)`` = (class, row0, col0, height,
    width): the pixel box of the class image that each sample was cut from (same order as the samples).
    """
    _check_opts(size, n_train, n_test, seed, channels)
    key = (size, n_train, n_test, seed, channels, bool(jitter))
    if key in _CACHE:
        return _CACHE[key]
    k = len(CLASSES)
    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    bx: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    region_info = []
    for ci, (cname, fname, _what) in enumerate(CLASSES):
        img = _grey(fname)
        h, w = img.shape
        tr, te, gap = regions(w, size)
        crop_max = math.ceil(size * SCALE[1])
        if te.cols[0][1] - te.cols[0][0] < crop_max + 4 or h < crop_max or not tr.cols:
            raise DataError(f"textures: size={size} is too large for class {cname!r} ({h}x{w} image); use size <= 72")
        region_info.append(
            {"class": cname, "image": fname, "height": h, "width": w, "train_cols": tr.as_list(),
             "test_cols": te.as_list(), "gap": gap}
        )  # fmt: skip
        for split, reg, n in (
            ("train", tr, _split_counts(n_train, k)[ci]),
            ("test", te, _split_counts(n_test, k)[ci]),
        ):
            if n == 0:
                continue
            rng = np.random.default_rng([seed, ci, 0 if split == "train" else 1])
            p, b = _patches(img, reg, n, size, rng, jitter)
            xs[split].append(p)
            ys[split].append(np.full(n, ci, dtype=np.int64))
            bx[split].append(np.concatenate([np.full((n, 1), ci, dtype=np.int64), b], axis=1))
    arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        x = np.concatenate(xs[split])
        y = np.concatenate(ys[split])
        b = np.concatenate(bx[split])
        order = np.random.default_rng([seed, 1000, 0 if split == "train" else 1]).permutation(len(y))
        x, y, b = x[order], y[order], b[order]
        x = np.repeat(x[:, :, :, None], channels, axis=3)
        arrays[split] = (x, y, b)
    meta = {
        "source": "scikit-image bundled sample images (skimage/data), greyscale, no download",
        "split": (
            f"per class image: test = columns {TEST_STRIP[0]:.0%}-{TEST_STRIP[1]:.0%} of the width; train = the "
            "columns left and right of it minus a gap of one maximal crop width; every crop lies inside one "
            "region, so train and test "
            "pixels are disjoint"
        ),
        "notes": (
            f"random crops of {SCALE[0]}-{SCALE[1]} x size resampled bilinearly to {size}x{size}, random "
            f"90-degree rotations/flips, contrast {CONTRAST[0]}-{CONTRAST[1]}, brightness +-{BRIGHTNESS:g}, "
            f"noise +-{NOISE}; seed {seed}"
        ),
        "options": {"size": size, "n_train": n_train, "n_test": n_test, "seed": seed, "channels": channels,
                    "jitter": bool(jitter)},
        "regions": region_info,
    }  # fmt: skip
    ds = make_dataset(
        "textures",
        arrays["train"][0],
        arrays["train"][1],
        arrays["test"][0],
        arrays["test"][1],
        classes=[c[0] for c in CLASSES],
        meta=meta,
    )
    boxes = {"train": arrays["train"][2], "test": arrays["test"][2]}
    _CACHE[key] = (ds, boxes)
    return ds, boxes


def _check_opts(size: Any, n_train: Any, n_test: Any, seed: Any, channels: Any) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(size) or not 8 <= size <= 72:
        raise DataError(f"textures: size must be an integer in 8..72, got {size!r}")
    for nm, v in (("n_train", n_train), ("n_test", n_test)):
        if not is_int(v) or v < 1:
            raise DataError(f"textures: {nm} must be a positive integer, got {v!r}")
    if not is_int(seed) or seed < 0:
        raise DataError(f"textures: seed must be a non-negative integer, got {seed!r}")
    if channels not in (1, 3):
        raise DataError(f"textures: channels must be 1 or 3, got {channels!r}")


def load(**opts: Any) -> Dataset:
    """Load ``textures`` (see the module docstring). Returns a fresh copy of the cached tensors."""
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise DataError(f"textures: unknown option(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    kw = {**DEFAULTS, **opts}
    kw = {k: _coerce(k, v) for k, v in kw.items()}
    ds, _ = build(**kw)
    return _copy(ds)


def _coerce(k: str, v: Any) -> Any:
    """Options may come from the CLI as strings."""
    if isinstance(v, str):
        if k == "jitter":
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise DataError(f"textures: jitter must be true or false, got {v!r}")
        try:
            return int(v)
        except ValueError:
            raise DataError(f"textures: option {k} must be an integer, got {v!r}") from None
    return v


def _copy(ds: Dataset) -> Dataset:
    import copy

    return Dataset(
        name=ds.name,
        x_train=ds.x_train.clone(),
        y_train=ds.y_train.clone(),
        x_test=ds.x_test.clone(),
        y_test=ds.y_test.clone(),
        classes=list(ds.classes),
        mean=ds.mean,
        std=ds.std,
        meta=copy.deepcopy(ds.meta),
    )
