"""DDP under ``torchrun``: one run, N processes (gloo on CPU, nccl on CUDA).

Each process takes its slice of every global batch (see :meth:`DeviceData.train_batches`); gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel`, so N processes with a global batch B follow the
same trajectory as one process with batch B, up to floating-point reduction order. Batch norm is synchronised
across processes (``SyncBatchNorm`` on CUDA; on CPU, where PyTorch's SyncBatchNorm refuses to run, a small
all-reduce batch norm, :class:`CpuSyncBatchNorm`), so the batch statistics are those of the global batch.
Rank 0 writes the run directory; every rank evaluates the full test set (the models are identical).
Dropout masks are drawn per rank and so differ from a 1-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Rank/world from the torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK); 1 process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
    return t


def any_flag(flag: bool, info: DistInfo) -> bool:
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are all-reduced over the process group (autograd-aware)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        xf = x.float()
        n_local = torch.tensor([x.numel() / c], dtype=xf.dtype, device=x.device)
        stats = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), n_local])
        stats = all_reduce(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                mom = 0.1 if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - mom).add_(mean.detach(), alpha=mom)
                self.running_var.mul_(1 - mom).add_(var.detach() * (n / (n - 1)).clamp_min(0), alpha=mom)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (xf - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = CpuSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_sync_bn(child, device)
    return model
