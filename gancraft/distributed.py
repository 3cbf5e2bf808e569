"""torchrun support: the same command line runs on one process or N.

Gradients are averaged with an explicit all-reduce after each backward pass instead of wrapping
the networks in DistributedDataParallel: R1 needs a double backward through D, and Freeze-D
and domain-vector training leave most parameters without gradients, both of which DDP handles
poorly. Every rank starts from identical weights and applies identical averaged updates, so
replicas stay equal without further communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from .errors import GancraftError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    """Rank and world size as torchrun sets them (a single process when unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank, world, local)


def init(device: torch.device) -> DistInfo:
    """Join the process group torchrun prepared (nccl for CUDA, gloo otherwise); no-op for one process."""
    info = from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
    return info


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """The device this process computes on; a CUDA device always gets an index (set_device needs one).

    Under torchrun each rank takes GPU LOCAL_RANK of plain 'cuda'; a given index would put every
    rank on the same GPU, so it is refused. One process takes 'cuda' as the current GPU.
    """
    if device.type != "cuda":
        return device
    if info.enabled:
        if device.index is not None:
            raise GancraftError(
                f"--device {device}: under torchrun every process would use that one GPU; "
                "give --device cuda (process k uses GPU k) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        return torch.device("cuda", info.local_rank)
    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def average_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo) -> None:
    """Mean of each gradient over ranks, in one flat all-reduce to keep the message count low."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_tensor(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place mean over ranks (used for losses to log and for G's running w_avg)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world
    return t


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers everywhere, so replicas start bit-identical."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when the flag is set on any rank (so all ranks stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
