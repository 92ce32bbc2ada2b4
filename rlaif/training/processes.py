"""One process among several: the accelerator, each process's share of a step, and values
shared between processes.

Under `accelerate launch` every process runs the whole loop; these keep them in step. With one
process each is a no-op (no collective is called).
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object


def make_accelerator(device: torch.device) -> Accelerator:
    """One Accelerator per process. `cpu=True` keeps it off a GPU the user did not ask for; under
    `accelerate launch` the process's own device (cuda:<local rank>, or cpu) comes from the
    launcher. Mixed precision is ours (the trainer's autocast), not Accelerate's: Accelerate's
    would wrap the model's forward, and generation through that wrapper would recast every
    weight at every decoded token."""
    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")


def process_share(items: list, accelerator: Accelerator) -> tuple[list, int]:
    """This process's contiguous share of `items` and the index of its first item.

    The caller passes whole tasks, so a task's group is never split across processes. Shares
    differ by at most one item when `len(items)` is not a multiple of the process count (the
    step's batch is a multiple, checked in the pipeline; replacement batches need not be).
    """
    first, end = share_bounds(len(items), accelerator.num_processes, accelerator.process_index)
    return items[first:end], first


def share_bounds(n: int, processes: int, index: int) -> tuple[int, int]:
    """[first, end) of process `index`'s contiguous share of `n` items."""
    return n * index // processes, n * (index + 1) // processes


def gather_lists(items: list, accelerator: Accelerator) -> list:
    """Every process's `items`, concatenated in process order, on every process."""
    if accelerator.num_processes == 1:
        return list(items)
    return gather_object(list(items))


def from_main(value, accelerator: Accelerator):
    """The main process's `value`, on every process (e.g. the run directory's name)."""
    if accelerator.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
