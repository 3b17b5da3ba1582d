"""Evaluation: top-1 accuracy and loss, and shift-consistency (Zhang 2019).

Shift-consistency is the percentage of test images whose top-1 class is the same for two independent random
translations of the image. Each translation moves the image by (dy, dx), each uniform in
{-max_shift, ..., max_shift}, drawn independently per image; the border that shifts in is filled by the
stated ``padding`` (``reflect`` by default; ``zeros``; ``replicate``), and the ``circular`` variant wraps the
image around instead (no new content enters, so a perfectly shift-equivariant net scores 100 %). The value is
averaged over ``pairs`` passes. The shifts come from a fixed generator (seed 0), so every variant of a study
sees exactly the same shifts and differences between variants are paired.

(Zhang's ImageNet protocol takes two 224 crops of a 256 centre crop, with one offset pair per mini-batch;
on 32x32 images there is no margin to crop from, hence the padding.)
"""

from __future__ import annotations

import functools
import math
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .data import DeviceData, shift_images


@functools.cache  # a hardware fact, asked once per training step by autocast_ctx
def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype a recipe's ``amp`` mode uses on ``device`` (None = fp32).

    ``auto``: bf16 where the hardware does it natively (CUDA with bf16 support, CPUs with AVX512-BF16/AMX), fp16
    with a gradient scaler on older CUDA devices (pre-Ampere: bf16 is missing or emulated there), fp32 elsewhere.
    ``bf16`` / ``fp16`` force that dtype; ``off`` is fp32."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        try:  # without CUDA here the device is not usable anyway: keep the CUDA default, bf16
            native = not torch.cuda.is_available() or torch.cuda.is_bf16_supported(including_emulation=False)
        except (RuntimeError, AssertionError, TypeError):
            native = True
        return torch.bfloat16 if native else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def uses_bf16(device: torch.device, amp: str) -> bool:
    """Whether a recipe's ``amp`` mode runs bf16 autocast on ``device``."""
    return amp_dtype(device, amp) == torch.bfloat16


def precision_name(device: torch.device, amp: str) -> str:
    """``bf16-autocast``, ``fp16-autocast`` or ``fp32``: what a run records as its precision."""
    dt = amp_dtype(device, amp)
    return "fp32" if dt is None else f"{'bf16' if dt == torch.bfloat16 else 'fp16'}-autocast"


def autocast_ctx(device: torch.device, amp: str) -> AbstractContextManager:
    dt = amp_dtype(device, amp)
    if dt is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dt)


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch: int = 512, amp: str = "auto") -> dict[str, float]:
    """Top-1 accuracy (percent) and mean cross-entropy on the test split."""
    was = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.device, dtype=torch.long)
    n = 0
    for xb, yb in data.test_batches(batch):
        with autocast_ctx(data.device, amp):
            out = model(data.normalize(xb))
        out = out.float()
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
        n += len(yb)
    model.train(was)
    loss = float(loss_sum) / max(n, 1)
    return {"acc": 100.0 * int(correct) / max(n, 1), "loss": loss if math.isfinite(loss) else float("nan")}


@torch.no_grad()
def shift_consistency(
    model: nn.Module,
    data: DeviceData,
    max_shift: int = 4,
    padding: str = "reflect",
    pairs: int = 2,
    limit: int | None = 2000,
    batch: int = 512,
    amp: str = "auto",
    seed: int = 0,
) -> float:
    """Percent of images whose top-1 prediction agrees under two random shifts (see the module doc)."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    agree, total = 0, 0
    for _ in range(pairs):
        for xb, _yb in data.test_batches(batch, limit):
            b = len(xb)
            preds = []
            for _k in range(2):
                d = torch.randint(-max_shift, max_shift + 1, (2, b), generator=g)
                xs = shift_images(xb.float(), d[0], d[1], padding)  # float: reflect pad needs it
                with autocast_ctx(data.device, amp):
                    preds.append(model(data.normalize(xs)).argmax(1))
            agree += int((preds[0] == preds[1]).sum())
            total += b
    model.train(was)
    return 100.0 * agree / max(total, 1)
