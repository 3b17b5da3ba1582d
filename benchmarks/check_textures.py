"""Sanity check of the embedded ``textures`` dataset: is it learnable but not trivial?

Trains a tiny CNN (3 conv layers, 2 max-pools, ~25k parameters) with plain PyTorch for a few epochs and
prints build time, per-epoch test accuracy and a per-class test accuracy. Target: roughly 60-90% test
accuracy after ~5 epochs (a dataset on which everything scores 100% cannot rank downsampling operators).

    python benchmarks/check_textures.py [--epochs 5] [--seeds 0 1] [--size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

from poolstride import data


def tiny_cnn(in_ch: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def normalise(x: torch.Tensor, ds: data.Dataset) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[float, list[float]]:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    model.train()
    per = [float((pred[y == c] == c).float().mean()) for c in range(k)]
    return float((pred == y).float().mean()), per


def run(ds: data.Dataset, epochs: int, seed: int, batch: int = 64, lr: float = 1e-3) -> tuple[list[float], list[float]]:
    torch.manual_seed(seed)
    model = tiny_cnn(ds.in_channels, ds.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xtr, ytr = normalise(ds.x_train, ds), ds.y_train
    xte, yte = normalise(ds.x_test, ds), ds.y_test
    g = torch.Generator().manual_seed(seed)
    accs = []
    per: list[float] = []
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(perm), batch):
            ix = perm[i : i + batch]
            loss = F.cross_entropy(model(xtr[ix]), ytr[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        acc, per = evaluate(model, xte, yte, ds.num_classes)
        accs.append(acc)
    return accs, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    ds = data.load("textures", size=args.size)
    t1 = time.perf_counter()
    data.load("textures", size=args.size)
    t2 = time.perf_counter()
    print(f"{ds}  build {t1 - t0:.2f}s, cached reload {t2 - t1:.3f}s, fingerprint {ds.fingerprint()[:16]}")
    print(f"mean {ds.mean}  std {ds.std}")
    for seed in args.seeds:
        t = time.perf_counter()
        accs, per = run(ds, args.epochs, seed)
        curve = " ".join(f"{a:.3f}" for a in accs)
        print(f"seed {seed}: test acc per epoch {curve}  ({time.perf_counter() - t:.1f}s)")
        print("  per class: " + ", ".join(f"{c} {p:.2f}" for c, p in zip(ds.classes, per, strict=True)))


if __name__ == "__main__":
    main()
