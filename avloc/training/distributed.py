"""Process-group setup for torchrun / DDP, and the collectives the trainer needs.

A process is distributed when torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) is present and WORLD_SIZE > 1. Backend: NCCL when training on CUDA, gloo
on CPU.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclasses.dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when absent."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistContext:
    rank, world, local = env_world()
    if world <= 1:
        return DistContext()
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device("cuda", local)
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, backend=backend)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def gather_with_grad(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 (rank order), differentiable w.r.t. the local ``x``.

    The backward pass sums, over all ranks, the gradient each rank's loss sends to this rank's
    rows (torch.distributed.nn's all_gather: reduce-scatter on NCCL, all-to-all on gloo).
    """
    if not ctx.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in torch 2.14, its backward sums over ranks (tested on gloo)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


def any_rank(flag: bool, ctx: DistContext, device) -> bool:
    """True when ``flag`` is true on at least one rank (all ranks get the same answer)."""
    if not ctx.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's picklable ``obj``, in rank order (on every rank)."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out

