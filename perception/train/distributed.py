"""Data parallelism under torchrun: process-group setup and gathers that keep InfoNCE global.

Every rank computes the same global loss over the negatives of all ranks: embeddings are gathered with
`GatherRows`, whose backward sums the gradients of every rank's copy of the loss (an all_reduce) and
keeps the rows this rank owns; DDP then averages parameter gradients over ranks, which gives exactly the
gradient of the global loss. The gathers run on their own process group so that they never interleave
with DDP's asynchronous gradient all_reduces (gloo runs a group's collectives strictly in issue order).
gloo on CPU, nccl on GPU; one process = plain single-rank code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_GATHER_GROUP: list = []  # the side group used by gather_rows (created once per process)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the torchrun process group when WORLD_SIZE > 1 (env:// rendezvous), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    _GATHER_GROUP[:] = [dist.new_group(backend="nccl" if device.type == "cuda" else "gloo")]
    return DistEnv(rank=rank, world=world, local_rank=local)


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        _GATHER_GROUP.clear()
        dist.destroy_process_group()


class GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns this rank's slice of the rank-summed gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:  # x [B, ...] -> [world*B, ...]
        world = dist.get_world_size(group)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rows, ctx.rank = group, x.shape[0], dist.get_rank(group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)  # every rank's loss depends on every row
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows], None


def gather_rows(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """[B, ...] per rank -> [world*B, ...] in rank order, differentiable (equal B on every rank)."""
    if not env.enabled:
        return x
    return GatherRows.apply(x, _GATHER_GROUP[0] if _GATHER_GROUP else None)


def gather_objects(items: list, env: DistEnv) -> list:
    """Concatenate a picklable list from every rank, in rank order (group keys of the rows)."""
    if not env.enabled:
        return list(items)
    out: list = [None] * env.world
    dist.all_gather_object(out, list(items))
    return [x for part in out for x in part]


def mean_over_ranks(value: float, env: DistEnv) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / env.world


def max_over_ranks(value: float, env: DistEnv) -> float:
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())
