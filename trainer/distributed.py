"""Data-parallel training under `torchrun`: every rank holds the whole model, steps on its shard of each batch,
and DistributedDataParallel averages the gradients, so the parameters stay identical on every rank.

One rank (0) is the trainer the rest of the farm sees: it alone reads the rollout store's next batch (then
sends it to the others, so one data cursor advances), writes the trainer state and publishes versions. The
global batch is split by whole groups (a group-relative step normalises within a task's samples), and each
rank's loss is weighted by its share of the batch's target tokens: the averaged gradient is then the gradient
of the token mean over the whole batch, the same as one process stepping on that batch. (A Mixture-of-Experts
load-balancing term is the one part that is not a token mean: each rank balances its own shard, as data-parallel
MoE training does.)

Launch: `torchrun --nproc-per-node N -m verifarm.cli train run ...` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# How long `close` waits for the other ranks: as long as any collective of the group waits by default (rank 0 may
# still be publishing and evaluating a version); a rank that failed never comes, and torchrun then stops them all.
CLOSE_WAIT = timedelta(minutes=30)


@dataclass(frozen=True)
class DataParallel:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> DataParallel | None:
        """The process group `torchrun` describes in the environment (joined here), or None outside torchrun."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dist.get_backend() == "nccl":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model under DDP; `config` stays readable, as the losses read it (MoE or not, aux coefficients)."""
        from torch.nn.parallel import DistributedDataParallel

        model.to(self.device)
        # Experts no token of a shard was routed to get no gradient on that rank: DDP must not wait for them.
        wrapped = DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
        wrapped.config = model.config
        return wrapped

    def shard(self, groups: Sequence[Hashable]) -> list[int]:
        """This rank's rows of a batch whose row i belongs to group `groups[i]`: whole groups, dealt round-robin
        in order of first appearance, so that every rank gets a share and no group is split."""
        order: dict[Hashable, int] = {}
        for group in groups:
            order.setdefault(group, len(order))
        return [i for i, group in enumerate(groups) if order[group] % self.world_size == self.rank]

    def share_of(self, local: float) -> float:
        """This rank's `local` over the mean of it across ranks (the factor that turns DDP's average of the
        ranks' gradients into the gradient of the whole batch's token mean)."""
        total = torch.tensor([float(local)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        mean = float(total) / self.world_size
        return local / mean if mean > 0 else 0.0

    def sum(self, value: float) -> float:
        total = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is on any (a stop asked of one rank stops them all at the same step)."""
        return self.sum(1.0 if flag else 0.0) > 0

    def from_primary(self, value: Any) -> Any:
        """Rank 0's `value`, on every rank."""
        box = [value if self.is_primary else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def check_in_sync(self, model: torch.nn.Module) -> None:
        """Refuse to go on if the ranks' parameters differ: identical gradients and optimizers keep them equal,
        and a publish checks it (one small all-reduce per parameter tensor's sum)."""
        sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(self.device)
        low, high = sums.clone(), sums.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        spread = float((high - low).abs().max())
        if spread > 1e-6 * max(1.0, float(sums.abs().max())):
            raise RuntimeError(f"data-parallel ranks hold different parameters (largest spread {spread:.3g})")

    def close(self) -> None:
        """Leave the process group, once every rank's collectives are done.

        A gloo worker thread frees a finished collective's tensors after waking the caller, and freeing a tensor
        that Python made (the all-reduces above) takes the GIL. The group's destructor, which runs when the last
        reference to it goes (DDP's reducer, when the trainer is dropped), joins those threads while holding the
        GIL: if one is still waiting for it, both wait for ever (seen at the end of `train run` under torchrun).
        A barrier waits with the GIL released, so such a thread gets it and finishes; the barrier's own tensors
        are not Python's."""
        if not dist.is_initialized():
            return
        if dist.get_backend() == "gloo":
            try:
                dist.monitored_barrier(timeout=CLOSE_WAIT)
            except RuntimeError:
                pass  # a rank that failed never arrives: leave anyway, its error is the one to report
        dist.destroy_process_group()
