"""poolstride.data: textures, npz, torchvision formats, imagefolder, validation, subset. No network."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from poolstride import data
from poolstride.data import download as dl
from poolstride.data import standard, textures
from poolstride.errors import DataError, PoolstrideError

SHARED = Path(os.environ.get("POOLSTRIDE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's ~/.cache from the tests."""
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("POOLSTRIDE_DATA_DIR", str(tmp_path_factory.mktemp("datadir")))


def _check_dataset(ds: data.Dataset, n_classes: int, chw: tuple[int, int, int]) -> None:
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == torch.uint8 and x.is_contiguous() and tuple(x.shape[1:]) == chw
    for y in (ds.y_train, ds.y_test):
        assert y.dtype == torch.int64 and y.ndim == 1
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)
    assert len(ds.classes) == n_classes == ds.num_classes
    assert len(ds.mean) == len(ds.std) == chw[0]
    assert all(0 <= m <= 1 for m in ds.mean) and all(0 < s <= 1 for s in ds.std)
    assert {"source", "split", "notes"} <= set(ds.meta)
    assert int(ds.y_train.max()) < n_classes and int(ds.y_train.min()) >= 0


# ------------------------------------------------------------------------------------------------ textures


def test_textures_shapes_balance_and_stats():
    ds = data.load("textures")
    _check_dataset(ds, 10, (3, 32, 32))
    assert ds.name == "textures" and ds.input_size == (3, 32, 32)
    assert len(ds.y_train) == 5000 and len(ds.y_test) == 1000
    assert torch.bincount(ds.y_train).tolist() == [500] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert torch.equal(ds.x_train[:, 0], ds.x_train[:, 2])  # greyscale replicated
    # stats are those of the training images
    x = ds.x_train[:, 0].double() / 255
    assert ds.mean[0] == pytest.approx(float(x.mean()), abs=1e-5)
    assert ds.std[0] == pytest.approx(float(x.std(unbiased=False)), abs=1e-5)
    # the samples are shuffled, not sorted by class
    assert len(set(ds.y_train[:20].tolist())) > 3


def test_textures_deterministic_and_seeded():
    a = data.load("textures").fingerprint()
    textures._CACHE.clear()
    textures._IMAGES.clear()
    b = data.load("textures").fingerprint()
    assert a == b
    assert data.load("textures", seed=1).fingerprint() != a


def test_textures_pinned_checksum():
    """Every install must build the same bytes (only exact arithmetic is used)."""
    assert data.load("textures").fingerprint() == TEXTURES_SHA256


TEXTURES_SHA256 = "f90e1ab95edb604089bbd703ab36cfa9db65005f5f0399a6a55bf4c96686e92c"


def test_textures_train_test_regions_disjoint():
    ds, boxes = textures.build()
    regions = {r["class"]: r for r in ds.meta["regions"]}
    for split in ("train", "test"):
        b = boxes[split]
        assert len(b) == len(getattr(ds, f"y_{split}"))
        assert torch.equal(torch.from_numpy(b[:, 0]), getattr(ds, f"y_{split}"))
    for ci, cname in enumerate(ds.classes):
        r = regions[cname]
        tr = boxes["train"][boxes["train"][:, 0] == ci]
        te = boxes["test"][boxes["test"][:, 0] == ci]
        # (class, row0, col0, h, w): inside the image, each box inside one interval of its own region
        for bx, intervals in ((tr, r["train_cols"]), (te, r["test_cols"])):
            assert (bx[:, 1] >= 0).all() and (bx[:, 1] + bx[:, 3] <= r["height"]).all()
            inside = np.zeros(len(bx), bool)
            for c0, c1 in intervals:
                inside |= (bx[:, 2] >= c0) & (bx[:, 2] + bx[:, 4] <= c1)
            assert inside.all()
        # no train crop overlaps, or comes within a patch width of, any test crop
        t0, t1 = te[:, 2].min(), (te[:, 2] + te[:, 4]).max()
        left = tr[:, 2] + tr[:, 4] + 32 <= t0
        right = tr[:, 2] >= t1 + 32
        assert (left | right).all()
        assert left.any() and right.any()  # train crops come from both sides of the test strip


def test_textures_options():
    ds = data.load("textures", size=48, n_train=100, n_test=30, channels=1)
    _check_dataset(ds, 10, (1, 48, 48))
    assert len(ds.y_train) == 100 and len(ds.y_test) == 30
    assert torch.bincount(ds.y_test, minlength=10).tolist() == [3] * 10
    assert data.load("textures", size="40", n_train="20", n_test="10").x_train.shape[-1] == 40  # CLI strings
    with pytest.raises(DataError, match="size must be"):
        data.load("textures", size=4)
    assert data.load("textures", size=72, n_train=10, n_test=10).image_size == (72, 72)
    with pytest.raises(DataError, match="unknown option.*colour.*valid: size"):
        data.load("textures", colour=True)


def test_textures_returns_fresh_tensors():
    a = data.load("textures", n_train=50, n_test=20)
    a.x_train.zero_()
    a.meta["split"] = "changed"
    b = data.load("textures", n_train=50, n_test=20)
    assert b.x_train.any() and b.meta["split"] != "changed"


# ------------------------------------------------------------------------------------------------ npz


def _arrays(n=30, shape=(8, 8, 3), k=4, seed=0):
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = (np.arange(n) % k).astype(np.uint8)
    return x, y


def _save_lzma(path: Path, **arrays: np.ndarray) -> None:
    """An .npz whose members are LZMA-compressed, like shared/data/*."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v, allow_pickle=False)
            z.writestr(k + ".npy", buf.getvalue())


def test_npz_single_file(tmp_path):
    xtr, ytr = _arrays(40)
    xte, yte = _arrays(12, seed=1)
    f = tmp_path / "set.npz"
    np.savez_compressed(f, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, classes=np.array(list("abcd")))
    ds = data.load(f"npz:{f}")
    _check_dataset(ds, 4, (3, 8, 8))
    assert ds.classes == ["a", "b", "c", "d"]
    assert torch.equal(ds.x_train, torch.from_numpy(xtr).permute(0, 3, 1, 2))
    assert torch.equal(ds.y_test, torch.from_numpy(yte.astype(np.int64)))
    assert ds.name == f"npz:{f}"
    # cached copy reads back identical
    again = data.load(f"npz:{f}")
    assert "cache" in again.meta and again.fingerprint() == ds.fingerprint() and again.mean == ds.mean


def test_npz_directory_lzma_greyscale(tmp_path):
    parts = [_arrays(10, (6, 5), seed=s) for s in range(11)]
    for i, (x, y) in enumerate(parts):
        _save_lzma(tmp_path / f"train_{i}.npz", x=x, y=y)
    xte, yte = _arrays(8, (6, 5), seed=99)
    _save_lzma(tmp_path / "test.npz", x=xte, y=yte)
    ds = data.load(f"npz:{tmp_path}", cache=False)
    _check_dataset(ds, 4, (1, 6, 5))
    # natural order: train_2 before train_10
    want = np.concatenate([p[0] for p in parts])
    assert torch.equal(ds.x_train[:, 0], torch.from_numpy(want))
    assert ds.classes == ["0", "1", "2", "3"]
    named = data.load(f"npz:{tmp_path.name}", data_dir=tmp_path.parent, classes="w,x,y,z", cache=False)
    assert named.classes == ["w", "x", "y", "z"]


@pytest.mark.skipif(not (SHARED / "mnist" / "test.npz").is_file(), reason="shared/data/mnist not present")
def test_shared_mnist_npz():
    ds = data.load(f"npz:{SHARED / 'mnist'}")
    _check_dataset(ds, 10, (1, 28, 28))
    assert len(ds.y_train) == 60000 and len(ds.y_test) == 10000
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.mean[0] == pytest.approx(0.13066, abs=1e-4) and ds.std[0] == pytest.approx(0.30811, abs=1e-4)
    # the standard name finds the same npz layout, with class names
    named = data.load("mnist", data_dir=SHARED)  # served from the cache the first load wrote
    assert named.name == "mnist" and named.classes[0] == "0" and torch.equal(named.y_test, ds.y_test)


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_dataset_lists_names():
    with pytest.raises(DataError, match=r"unknown dataset 'cifar11'; valid: textures, cifar10.*npz:PATH"):
        data.load("cifar11")
    assert issubclass(DataError, PoolstrideError)


def test_missing_files_say_where(tmp_path):
    with pytest.raises(DataError, match=r"npz:.*does not exist"):
        data.load(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DataError, match=r"needs train\*\.npz files and a test\.npz"):
        data.load(f"npz:{tmp_path}")
    with pytest.raises(DataError, match=r"cifar10: no dataset files found in .*cifar-10-batches-py/.*download=True"):
        data.load("cifar10", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"MNIST/raw/\{train-images-idx3-ubyte"):
        data.load("mnist", data_dir=tmp_path / "missing")
    with pytest.raises(DataError, match=r"train_32x32\.mat and test_32x32\.mat"):
        data.load("svhn", data_dir=tmp_path)


def test_truncated_npz(tmp_path):
    xtr, ytr = _arrays(200, (16, 16, 3))
    f = tmp_path / "full.npz"
    np.savez_compressed(f, x_train=xtr, y_train=ytr, x_test=xtr, y_test=ytr)
    raw = f.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.npz.*not a valid .npz"):
        data.load(f"npz:{tmp_path / 'cut.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="junk.npz.*not a valid .npz"):
        data.load(f"npz:{tmp_path / 'junk.npz'}")
    # a member whose compressed bytes are damaged (zip directory intact)
    bad = bytearray(raw)
    mid = len(bad) // 3
    bad[mid : mid + 64] = bytes(64)
    (tmp_path / "bad.npz").write_bytes(bytes(bad))
    with pytest.raises(DataError, match="bad.npz"):
        data.load(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_train": np.zeros((10, 8, 8, 3), np.float32)}, r"x_train has dtype float32, but images must be uint8"),
        ({"x_train": np.zeros((10, 3, 8, 8), np.uint8)}, r"looks channels-first"),
        ({"x_train": np.zeros((10, 8), np.uint8)}, r"x_train has shape \(10, 8\); expected \(N, H, W\)"),
        ({"x_test": np.zeros((4, 9, 9, 3), np.uint8)}, r"train images are 8x8x3 .* test images are 9x9x3"),
        ({"y_train": np.arange(9)}, r"x_train has 10 images but y_train has 9 labels"),
        ({"y_test": np.array([0, 1, -1, 2])}, r"labels must be >= 0, found -1"),
        ({"y_train": np.full(10, 7)}, r"label 7 is out of range for 4 classes \(valid labels 0\.\.3\)"),
        ({"y_train": np.full(10, 0.5)}, r"y_train has dtype float64; labels must be integer"),
        ({"x_test": np.zeros((0, 8, 8, 3), np.uint8), "y_test": np.zeros(0, np.int64)}, r"test set is empty"),
    ],
)
def test_bad_arrays(tmp_path, change, message):
    arrays = {
        "x_train": np.zeros((10, 8, 8, 3), np.uint8),
        "y_train": np.arange(10) % 4,
        "x_test": np.zeros((4, 8, 8, 3), np.uint8),
        "y_test": np.arange(4),
        "classes": np.array(["a", "b", "c", "d"]),
    }
    arrays.update(change)
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(DataError, match=message):
        data.load(f"npz:{f}", cache=False)


def test_npz_missing_member(tmp_path):
    f = tmp_path / "m.npz"
    np.savez(f, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"has no array 'x_test' \(it has x_train, y_train\)"):
        data.load(f"npz:{f}")
    with pytest.raises(DataError, match="unknown option"):
        data.load(f"npz:{f}", size=3)


# ------------------------------------------------------------------------------------------------ torchvision formats


def _cifar_pickle(path: Path, n: int, seed: int, label_key: str = "labels", k: int = 10, **extra) -> tuple:
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in g.integers(0, k, n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": x, label_key.encode(): y, **extra}, f, protocol=2)
    return x, y


def test_fake_cifar10(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    xs = [_cifar_pickle(d / f"data_batch_{i}", 6, i) for i in range(1, 6)]
    xte, yte = _cifar_pickle(d / "test_batch", 4, 9)
    names = [f"c{i}".encode() for i in range(10)]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    ds = data.load("cifar10", data_dir=tmp_path)
    _check_dataset(ds, 10, (3, 32, 32))
    assert len(ds.y_train) == 30 and ds.classes[3] == "c3"
    assert torch.equal(ds.x_train[:6].reshape(6, -1), torch.from_numpy(xs[0][0]))  # CHW planes in order
    assert ds.y_test.tolist() == yte
    assert data.load("CIFAR-10", data_dir=d).fingerprint() == ds.fingerprint()  # alias, inner folder


def test_fake_cifar100_and_hostile_pickle(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    g = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        with open(d / split, "wb") as f:
            pickle.dump(
                {"data": g.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(range(n)),
                 "coarse_labels": [i % 20 for i in range(n)]}, f)  # fmt: skip
    ds = data.load("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and len(ds.y_train) == 8
    assert data.load("cifar100", data_dir=tmp_path, label="coarse").num_classes == 20
    with pytest.raises(DataError, match="label must be"):
        data.load("cifar100", data_dir=tmp_path, label="medium")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(d / "train", "wb") as f:
        pickle.dump({"data": Evil()}, f)
    with pytest.raises(DataError, match="not a CIFAR pickle.*refusing to load"):
        data.load("cifar100", data_dir=tmp_path)


def _idx(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write_mnist(raw: Path, n_train=20, n_test=7, gz=True, seed=0) -> dict[str, np.ndarray]:
    raw.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": g.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": g.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, a in arrays.items():
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(_idx(a)))
        else:
            (raw / stem).write_bytes(_idx(a))
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_fake_mnist_idx(tmp_path, gz):
    arrays = _write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    ds = data.load("mnist", data_dir=tmp_path)
    _check_dataset(ds, 10, (1, 28, 28))
    assert torch.equal(ds.x_test[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    _write_mnist(tmp_path / "FashionMNIST" / "raw", gz=gz, seed=1)
    fm = data.load("fashion_mnist", data_dir=tmp_path)
    assert fm.name == "fashion-mnist" and fm.classes[0] == "T-shirt/top" and fm.fingerprint() != ds.fingerprint()


def test_mnist_truncated_and_bad_magic(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    _write_mnist(raw, gz=False)
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"idx3-ubyte is truncated or corrupted: header says \(20, 28, 28\)"):
        data.load("mnist", data_dir=tmp_path)
    f.write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="not an IDX file"):
        data.load("mnist", data_dir=tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    _write_mnist(raw, gz=False)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(gzip.compress(b"abc")[:-5])  # broken gzip
    with pytest.raises(DataError, match="t10k-labels"):
        data.load("mnist", data_dir=tmp_path)


def test_fake_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    g = np.random.default_rng(0)
    for split, n in (("train", 9), ("test", 5)):
        x = g.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4], [5], [6], [7], [8]][:n], dtype=np.uint8)
        scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        if split == "train":
            x_train = x
    ds = data.load("svhn", data_dir=tmp_path)
    _check_dataset(ds, 10, (3, 32, 32))
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]  # label 10 is digit 0
    assert torch.equal(ds.x_train[4], torch.from_numpy(x_train[..., 4]).permute(2, 0, 1))
    with pytest.raises(DataError, match="extra=True needs"):
        data.load("svhn", data_dir=tmp_path, extra=True)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 junk")
    with pytest.raises(DataError, match="test_32x32.mat.*truncated or not a MATLAB file"):
        data.load("svhn", data_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ download


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_download_mnist_with_checksum(tmp_path, monkeypatch):
    src = tmp_path / "server"
    arrays = _write_mnist(src, gz=True)
    files = {f"{k}.gz": dl.md5_file(src / f"{k}.gz") for k in arrays}
    monkeypatch.setitem(standard.RESOURCES, "mnist", (("https://mirror.invalid/mnist/",), files))
    seen = []

    def fake_urlopen(url):
        seen.append(url)
        return _Resp((src / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(dl, "_urlopen", fake_urlopen)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="does not exist; put MNIST/raw"):
        data.load("mnist", data_dir=tmp_path / "server2")
    ds = data.load("mnist", data_dir=root, download=True)
    assert len(seen) == 4 and (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    data.load("mnist", data_dir=root, download=True)  # present: nothing fetched again
    assert len(seen) == 4


def test_download_checksum_mismatch_and_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "_urlopen", lambda url: _Resp(b"not the archive"))
    with pytest.raises(DataError, match=r"cifar10: download failed .*checksum mismatch.*put cifar-10-batches-py"):
        data.load("cifar10", data_dir=tmp_path, download=True)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "cifar-10-python.tar.gz").exists()

    def offline(url):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(dl, "_urlopen", offline)
    with pytest.raises(DataError, match=r"svhn: download failed .*name resolution.*put train_32x32\.mat"):
        data.load("svhn", data_dir=tmp_path, download=True)


def test_download_cifar10_tar(tmp_path, monkeypatch):
    import tarfile

    staging = tmp_path / "stage" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    for i in range(1, 6):
        _cifar_pickle(staging / f"data_batch_{i}", 3, i)
    _cifar_pickle(staging / "test_batch", 2, 0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(staging, arcname="cifar-10-batches-py")
    blob = buf.getvalue()
    import hashlib

    md5 = hashlib.md5(blob).hexdigest()
    monkeypatch.setitem(standard.RESOURCES, "cifar10", (("https://x.invalid/",), {"cifar-10-python.tar.gz": md5}))
    monkeypatch.setattr(dl, "_urlopen", lambda url: _Resp(blob))
    ds = data.load("cifar10", data_dir=tmp_path / "root", download=True)
    assert len(ds.y_train) == 15 and ds.classes[0] == "airplane"


# ------------------------------------------------------------------------------------------------ imagefolder


def _png(path: Path, hw=(8, 8), mode="RGB", value=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    c = 3 if mode == "RGB" else 1
    a = np.full((*hw, c), value, np.uint8).squeeze()
    Image.fromarray(a, mode=None).save(path)


def test_imagefolder_layouts(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for ci, c in enumerate(("cat", "dog")):
            for i in range(n):
                _png(tmp_path / "a" / split / c / f"{i}.png", value=10 * ci + i)
    ds = data.load(f"imagefolder:{tmp_path / 'a'}")
    _check_dataset(ds, 2, (3, 8, 8))
    assert ds.classes == ["cat", "dog"] and len(ds.y_train) == 6 and len(ds.y_test) == 4
    # flat layout, greyscale, random split; mixed sizes need size=
    for ci, c in enumerate(("a", "b", "c")):
        for i in range(5):
            _png(tmp_path / "b" / c / f"{i}.png", hw=(8, 8 + (i == 4)), mode="L", value=ci * 50)
    with pytest.raises(DataError, match=r"images differ in size .*pass size=H or size=HxW"):
        data.load(f"imagefolder:{tmp_path / 'b'}")
    ds = data.load(f"imagefolder:{tmp_path / 'b'}", size="6x7", test_fraction=0.4)
    _check_dataset(ds, 3, (1, 6, 7))
    assert torch.bincount(ds.y_test).tolist() == [2, 2, 2]
    with pytest.raises(DataError, match="not a directory"):
        data.load(f"imagefolder:{tmp_path / 'zzz'}")
    (tmp_path / "b" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        data.load(f"imagefolder:{tmp_path / 'b'}", size=6)


# ------------------------------------------------------------------------------------------------ subset, names


def test_subset_stratified_and_deterministic():
    ds = data.load("textures", n_train=1000, n_test=200)
    s = data.subset(ds, n_train=100, n_test=50, seed=3)
    assert len(s.y_train) == 100 and len(s.y_test) == 50
    assert torch.bincount(s.y_train, minlength=10).tolist() == [10] * 10
    assert torch.bincount(s.y_test, minlength=10).min() >= 4
    assert s.mean == ds.mean and s.meta["subset"]["n_train"] == 100 and s.x_train.is_contiguous()
    assert data.subset(ds, 100, 50, seed=3).fingerprint() == s.fingerprint()
    assert data.subset(ds, 100, 50, seed=4).fingerprint() != s.fingerprint()
    assert data.subset(ds, n_train=None).x_train is ds.x_train  # None keeps the split
    with pytest.raises(DataError, match="n_train must be a positive integer"):
        data.subset(ds, n_train=0)


def test_names_and_descriptions():
    names = data.names()
    assert names[0] == "textures"
    assert {"cifar10", "cifar100", "mnist", "fashion-mnist", "svhn", "npz:PATH", "imagefolder:PATH"} <= set(names)
    desc = data.descriptions()
    assert list(desc) == names and all(isinstance(v, str) and v and "\n" not in v for v in desc.values())
