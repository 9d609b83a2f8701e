"""Distributed scoring on ``torch.distributed``: each rank scores a shard of the batches.

Under ``torchrun --nproc-per-node N`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) the scorer joins the process group (gloo on CPU, NCCL
on CUDA, one GPU per local rank), takes batches ``rank, rank + N, rank + 2N, ...`` of the
data, and all-reduces its running sums before the averages are taken. Every statistic
:class:`~ranp_onnx.scoring.statistics.GradientStatistics` holds is a sum over batches divided by the
batch count (``|g * w|``, ``g * w``, the per-batch Taylor term, the loss) and the count is
itself a sum, so a SUM all-reduce of the sums and the count gives what one process gets
over all the batches, to float rounding. The maxima and means the criteria take later are
taken on those averages, after the reduction. Only rank 0 writes outputs.

Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing here touches torch.distributed.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import DataError, first_line

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """The processes scoring together.

    Attributes:
        rank: This process's rank, 0 to ``size - 1``.
        size: Number of processes.
        local_rank: Rank on this machine (the CUDA device index under NCCL).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True if more than one process scores."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes outputs."""
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """Read the world torchrun describes in ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``.

    Args:
        environ: The environment; defaults to ``os.environ``.

    Raises:
        DataError: The variables are not integers or out of range.
    """
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise DataError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers ({error})") from error
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise DataError(f"RANK {rank} and WORLD_SIZE {size}: need 0 <= RANK < WORLD_SIZE")
    return World(rank=rank, size=size, local_rank=local_rank)


def is_main_process() -> bool:
    """True unless this process is a rank other than 0 of a torchrun job."""
    return world_from_env().is_main


def join(world: World, device: torch.device) -> None:
    """Join the process group of ``world`` (once per process): NCCL on CUDA, else gloo.

    The group is destroyed when the process exits. Does nothing for a world of one.

    Raises:
        DataError: The rendezvous failed (``MASTER_ADDR`` / ``MASTER_PORT`` unset or
            unreachable).
    """
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
    except (ValueError, RuntimeError) as error:
        message = first_line(error)
        raise DataError(
            f"rank {world.rank} of {world.size}: cannot join the {backend} process group "
            f"(run under torchrun, which sets MASTER_ADDR and MASTER_PORT): {message}"
        ) from error
    atexit.register(_leave)


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def scoring_device(world: World, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` where several ranks share CUDA."""
    import torch

    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank % max(torch.cuda.device_count(), 1))
    return device


def shard(items: Iterable[T], world: World) -> Iterator[T]:
    """Yield the items of this rank: positions ``rank, rank + size, ...`` (all for one rank)."""
    for position, item in enumerate(items):
        if position % world.size == world.rank:
            yield item


def all_reduce_sums(tensors: Sequence[torch.Tensor], world: World) -> None:
    """Sum every tensor over the ranks, in place (nothing to do for a world of one)."""
    import torch.distributed as dist

    if not world.distributed:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
