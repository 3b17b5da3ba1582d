"""Training throughput: poolstride's trainer vs a plain PyTorch loop, same process, same model/batch/optimizer.

    python benchmarks/bench_train.py                    # tiny demo net and All-CNN-C, 32x32 input, CPU
    python benchmarks/bench_train.py --models tiny --rounds 5 --device cuda

Plain loop = what a tutorial writes: ``DataLoader(TensorDataset(x, y), batch_size=B, shuffle=True)`` over
pre-normalised float32 NCHW tensors, the model in NCHW float32, ``torch.optim.SGD`` with its default
implementation, ``zero_grad()``, cross-entropy with the same label smoothing. poolstride = ``train_run`` with
its defaults: uint8 data resident on the device, batches gathered by index and normalised per batch,
channels_last, fused SGD, ``set_to_none`` grads, bf16 autocast where the hardware has native bf16 (CUDA; CPUs
with AVX512-BF16/AMX; ``--fp32`` also times poolstride with ``amp=off``). No augmentation on either side.

Images/s are timed over the training steps only (warm-up steps excluded). On a shared machine the numbers
are noisy, so the two loops are interleaved for ``--rounds`` rounds and the best round of each is reported
(plus the median). Output: one line per model with both throughputs and the ratio, and a second line that sets
each loop's achieved training GFLOP/s (poolstride's train-step MACs per image x 2 x images/s) against the
roofline: the GFLOP/s of a large 3x3 conv forward at the same dtype, threads and memory format.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import poolstride  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
from poolstride import models
from poolstride.train import RunSpec, SimpleDataset, get_recipe, resolve_device, set_threads, train_run
from poolstride.train.evaluate import uses_bf16

SIZES = {  # model: (batch, timed steps, warm-up steps)
    "tiny": (128, 24, 3),
    "allcnn-c": (64, 3, 1),
}


def make_data(n: int, classes: int = 10, size: int = 32, seed: int = 0) -> SimpleDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n,), generator=g)
    return SimpleDataset("bench", x, y, x[:64], y[:64], [str(i) for i in range(classes)], [0.5] * 3, [0.25] * 3)


def plain_loop(
    model_name: str, ds: SimpleDataset, batch: int, steps: int, warm: int, dev: torch.device
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = models.build(model_name, num_classes=len(ds.classes)).to(dev)
    rec = get_recipe("fast")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=rec.momentum, nesterov=True,
                          weight_decay=rec.weight_decay)  # fmt: skip
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    xf = (ds.x_train.float() / 255 - mean) / std
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xf, ds.y_train), batch_size=batch, shuffle=True, drop_last=True
    )
    model.train()
    t0, c0, n = 0.0, 0.0, 0
    for i, (xb, yb) in enumerate(loader):
        if i == warm:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
        xb, yb = xb.to(dev), yb.to(dev)
        loss = F.cross_entropy(model(xb), yb, label_smoothing=rec.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warm:
            n += len(xb)
        if i + 1 == warm + steps:
            break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def poolstride_loop(model_name: str, ds: SimpleDataset, batch: int, steps: int, warm: int, dev: torch.device,
                    **recipe: object) -> tuple[float, float]:  # fmt: skip
    stamps: list[tuple[float, float]] = []

    def cb(event: str, **kw: object) -> None:
        if event == "step":
            if dev.type == "cuda":
                torch.cuda.synchronize()
            stamps.append((time.perf_counter(), time.process_time()))

    rec = get_recipe("fast", epochs=1, batch_size=batch, augment=False, lr=0.01, schedule="constant",
                     shift_images=16, shift_pairs=1, **recipe)  # fmt: skip
    train_run(RunSpec.of(model_name, "default", 0), ds, rec, dev, callback=cb)
    (t1, c1), (t0, c0) = stamps[warm + steps - 1], stamps[warm - 1]
    return batch * steps / (t1 - t0), batch * steps / (c1 - c0)


def roofline(dev: torch.device, dtype: torch.dtype, reps: int = 8) -> float:
    """The practical peak of this device at ``dtype``: GFLOP/s of a large 3x3 conv forward (256 -> 256 channels,
    8x256x32x32, channels_last), best of ``reps``, at the current thread count."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dev, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(8, 256, 32, 32, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
    macs = 8 * 256 * 256 * 9 * 32 * 32
    best = float("inf")
    with torch.no_grad():
        for i in range(reps + 2):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            conv(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                best = min(best, time.perf_counter() - t)
    return 2 * macs / best / 1e9


def train_roofline(dev: torch.device, dtype: torch.dtype, reps: int = 5) -> float:
    """GFLOP/s of the same conv's forward + backward (grad input and grad weight: 3x the forward MACs): the
    ceiling a training step can reach, usually below the forward-only roofline."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dev, dtype).to(memory_format=torch.channels_last)
    x = torch.randn(8, 256, 32, 32, device=dev, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    macs = 3 * 8 * 256 * 256 * 9 * 32 * 32
    best = float("inf")
    for i in range(reps + 2):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        conv(x).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            best = min(best, time.perf_counter() - t)
    return 2 * macs / best / 1e9


def train_step_macs(name: str, size: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Forward + backward MACs per image, from poolstride's own analysis (docs/conventions.md)."""
    from poolstride.analysis import inspect

    rep = inspect(models.build(name, num_classes=10), size, batch=1)
    return int(rep.totals["train_step"]["macs"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tiny,allcnn-c")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="default: poolstride's auto_threads()")
    ap.add_argument("--fp32", action="store_true", help="also time poolstride in fp32 (amp=off)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    set_threads(args.threads)
    dev = resolve_device(args.device)
    out = []
    peak32 = roofline(dev, torch.float32)
    ceil32 = train_roofline(dev, torch.float32)
    peak16 = roofline(dev, torch.bfloat16) if uses_bf16(dev, "auto") else None
    if not args.json:
        print(
            f"roofline ({torch.get_num_threads()} threads, 3x3 conv forward, channels_last): fp32 {peak32:.0f} GFLOP/s"
            + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else ", no native bf16")
            + f"; the same conv forward+backward (a training step's ceiling): fp32 {ceil32:.0f} GFLOP/s"
            f" = {ceil32 / peak32:.0%} of the forward roofline",
            flush=True,
        )
    for name in args.models.split(","):
        batch, steps, warm = SIZES.get(name, (64, 5, 2))
        if dev.type == "cuda":
            batch, steps, warm = 512, 40, 5
        ds = make_data(batch * (steps + warm))
        plain, ours, ours_fp32 = [], [], []
        for _ in range(args.rounds):
            plain.append(plain_loop(name, ds, batch, steps, warm, dev))
            ours.append(poolstride_loop(name, ds, batch, steps, warm, dev))
            if args.fp32:
                ours_fp32.append(poolstride_loop(name, ds, batch, steps, warm, dev, amp="off"))
        pw, pc = max(w for w, _ in plain), max(c for _, c in plain)
        ow, oc = max(w for w, _ in ours), max(c for _, c in ours)
        row = {
            "model": name, "device": str(dev), "threads": torch.get_num_threads(), "batch": batch,
            "precision": "bf16-autocast" if uses_bf16(dev, "auto") else "fp32",
            "plain_img_s": pw, "poolstride_img_s": ow, "ratio_best": ow / pw,
            "ratio_median": statistics.median(w for w, _ in ours) / statistics.median(w for w, _ in plain),
            "plain_img_per_cpu_s": pc, "poolstride_img_per_cpu_s": oc, "ratio_cpu_time": oc / pc,
            "plain_rounds": [round(w, 1) for w, _ in plain], "poolstride_rounds": [round(w, 1) for w, _ in ours],
        }  # fmt: skip
        if ours_fp32:
            row["poolstride_fp32_img_s"] = max(w for w, _ in ours_fp32)
            row["ratio_fp32_best"] = row["poolstride_fp32_img_s"] / pw
        flop = 2 * train_step_macs(name)  # per image, forward + backward
        ours_peak = peak16 if peak16 and row["precision"] != "fp32" else peak32
        row["roofline_gflops"] = {"fp32": peak32, "bf16": peak16, "fp32_train_step_ceiling": ceil32}
        row["achieved_gflops"] = {"plain_fp32": flop * pw / 1e9, "poolstride": flop * ow / 1e9}
        row["fraction_of_roofline"] = {
            "plain_fp32": flop * pw / 1e9 / peak32,
            "poolstride": flop * ow / 1e9 / ours_peak,
        }
        if ours_fp32:
            row["achieved_gflops"]["poolstride_fp32"] = flop * row["poolstride_fp32_img_s"] / 1e9
            row["fraction_of_roofline"]["poolstride_fp32"] = row["achieved_gflops"]["poolstride_fp32"] / peak32
        out.append(row)
        if not args.json:
            extra = (
                f"; poolstride fp32 {row['poolstride_fp32_img_s']:.0f} img/s ({row['ratio_fp32_best']:.2f}x)"
                if ours_fp32
                else ""
            )
            print(
                f"{name:9s} batch {batch:4d} on {dev} ({row['threads']} threads): plain {pw:8.1f} img/s, "
                f"poolstride {ow:8.1f} img/s -> {row['ratio_best']:.2f}x wall-clock (best of {args.rounds}; "
                f"median {row['ratio_median']:.2f}x); per CPU-second {pc:.1f} vs {oc:.1f} -> "
                f"{row['ratio_cpu_time']:.2f}x{extra}",
                flush=True,
            )
            fr, ag = row["fraction_of_roofline"], row["achieved_gflops"]
            print(
                f"{'':9s} of the roofline: plain fp32 {ag['plain_fp32']:.0f} GFLOP/s = {fr['plain_fp32']:.0%}; "
                f"poolstride ({row['precision']}) {ag['poolstride']:.0f} GFLOP/s = {fr['poolstride']:.0%}"
                + (
                    f"; poolstride fp32 {ag['poolstride_fp32']:.0f} GFLOP/s = {fr['poolstride_fp32']:.0%}"
                    if "poolstride_fp32" in fr
                    else ""
                ),
                flush=True,
            )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
