"""Data that cannot support a study is refused before any run starts: one line, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from poolstride.cli import main


def _npz(path, x_train, y_train, x_test, y_test, classes=None):
    kw = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    if classes is not None:
        kw["classes"] = np.array(classes)
    np.savez(path, **kw)
    return f"npz:{path}"


def _imgs(n, c=3, s=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, c), dtype=np.uint8)


CASES = {
    "one class": (lambda: (_imgs(64), np.zeros(64, int), _imgs(16), np.zeros(16, int)), "at least 2 classes"),
    "class without test images": (
        lambda: (_imgs(64), np.arange(64) % 3, _imgs(16), np.arange(16) % 2),
        "have no test images",
    ),
    "labels out of range": (
        lambda: (_imgs(64), np.arange(64) % 3, _imgs(16), np.arange(16) % 3, ["a", "b"]),
        "valid labels 0..1",
    ),
    "train/test sizes differ": (
        lambda: (_imgs(64), np.arange(64) % 3, _imgs(16, s=8), np.arange(16) % 3),
        "both splits must match",
    ),
    "train/test channels differ": (
        lambda: (_imgs(64), np.arange(64) % 3, _imgs(16, c=1), np.arange(16) % 3),
        "both splits must match",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_data_is_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    make, match = CASES[case]
    ds = _npz(tmp_path / "d.npz", *make())
    assert main(["compare", "--dataset", ds, "--out", str(tmp_path / "s"), "--epochs", "1", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "s").exists()


def test_fewer_images_than_one_batch_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    ds = _npz(tmp_path / "d.npz", _imgs(40), np.arange(40) % 2, _imgs(8), np.arange(8) % 2)
    for cmd in ("compare", "train"):
        argv = [cmd, "--dataset", ds, "--out", str(tmp_path / cmd), "--epochs", "1", "--batch-size", "64"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "40 training images are fewer than one batch of 64" in err and err.count("\n") == 1, err
        assert not (tmp_path / cmd).exists()


def test_python_datasets_get_the_same_checks():
    import torch

    from poolstride.errors import DataError
    from poolstride.train import SimpleDataset
    from poolstride.train.data import load_dataset

    x = torch.zeros(8, 3, 8, 8, dtype=torch.uint8)
    y = torch.tensor([0, 1] * 4)

    def ds(y_train=y, y_test=y, classes=("a", "b"), x_test=x):
        return SimpleDataset("toy", x, y_train, x_test, y_test, list(classes), [0.5] * 3, [0.25] * 3)

    load_dataset(ds())
    for bad, match in (
        (ds(classes=("a",), y_train=y * 0, y_test=y * 0), "at least 2 classes"),
        (ds(y_test=y * 0), "no test images"),
        (ds(y_train=y * 5), "outside 0..1"),
        (ds(x_test=torch.zeros(8, 1, 8, 8, dtype=torch.uint8)), "both splits need one size"),
    ):
        with pytest.raises(DataError, match=match):
            load_dataset(bad)


def test_one_class_image_folder_and_the_torchvision_spelling(tmp_path, capsys, monkeypatch):
    from skimage import io

    from poolstride.data import load

    monkeypatch.setenv("POOLSTRIDE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "folder"
    for split, n in (("train", 6), ("test", 2)):
        (root / split / "cat").mkdir(parents=True)
        for i in range(n):
            io.imsave(root / split / "cat" / f"{i}.png", _imgs(1, s=8, seed=i)[0], check_contrast=False)
    argv = ["compare", "--dataset", "imagefolder", "--data-dir", str(root), "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 class; a classifier study needs at least 2 classes" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()
    for split, n in (("train", 6), ("test", 2)):  # a second class: now it loads, spelled either way
        (root / split / "dog").mkdir()
        for i in range(n):
            io.imsave(root / split / "dog" / f"{i}.png", _imgs(1, s=8, seed=10 + i)[0], check_contrast=False)
    a, b = load("imagefolder", data_dir=root), load(f"imagefolder:{root}")
    assert a.classes == b.classes == ["cat", "dog"] and len(a.x_train) == 12
    assert main(["compare", "--dataset", "imagefolder", "--out", str(tmp_path / "t")]) == 2
    assert "needs --data-dir" in capsys.readouterr().err
