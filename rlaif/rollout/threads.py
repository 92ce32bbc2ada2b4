"""Threads that follow the work: how torch and the judges share the CPU.

CPU threads follow the CPU work in flight (`ThreadPolicy`). torch slows down badly when another
busy process wants the same cores (REFERENCE.md, measured on a 2-core machine: 2 torch threads
went from 0.9 s to 7.9 s per step beside one busy process, while 1 thread stayed at 1.1 s). So
before every forward pass of generation (each decoded token), and in the update before every
transformer layer's forward and backward pass (`ThreadPolicy.per_layer`), torch gets the cores
that the rustc and test processes (and a local teacher server while it answers) leave free at
that moment, and every core when none runs. Teacher calls waiting on the network take no core,
so a step whose scoring is mostly waiting on an API keeps both cores busy with generation.

Why per layer and not per micro-batch: a micro-batch of the update takes 10-15 s for
Qwen2.5-Coder-0.5B on 2 cores, and the rustc jobs of the batch just generated start as the update
does and last under a second. Decided once per micro-batch, the update ran mostly on one thread
for jobs long finished, and max_staleness 1 was slower than 0 (bench/RESULTS.md, 2026-12-06).

The price: the thread count now depends on timing, and so do the low bits of floating-point
sums; a run that must repeat bit for bit sets `pipeline.torch_threads` (a fixed count).

Every torch call runs through `in_torch_thread`, which also hands the memory the call freed back
to the system afterwards (`release_free_memory`): glibc would keep it, and the training process
grew by about a GiB a step with it.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import torch

from rlaif.config import Config
from rlaif.judges.rust.jobs import cpu_count

T = TypeVar("T")


class ThreadPolicy:
    """torch's thread count, re-decided before each forward pass from the CPU jobs running now.

    `busy` says how many CPU-bound jobs (rustc, test binaries) are running at this moment; torch
    gets `cores - busy` threads (at least 1), or `fixed` threads when that is set. `use` is
    called from the worker thread that runs torch (the count is per thread) and tallies what it
    chose, per stage, so metrics can report the mean threads generation and the update used.
    """

    def __init__(self, cores: int, busy: Callable[[], int] = lambda: 0, fixed: int = 0):
        self.cores = max(1, cores)
        self.busy = busy
        self.fixed = min(fixed, self.cores) if fixed else 0
        self._tally: dict[str, list[float]] = {}  # stage -> [sum of threads, decisions]

    @classmethod
    def for_config(
        cls, config: Config, busy: Callable[[], int] = lambda: 0, processes: int = 1
    ) -> ThreadPolicy:
        """`processes` on this machine share its cores (`accelerate launch`)."""
        cores = max(1, cpu_count() // processes)
        return cls(cores, busy, config.pipeline.torch_threads)

    def threads(self) -> int:
        """What torch should use now."""
        if self.fixed:
            return self.fixed
        return max(1, self.cores - self.busy())

    def use(self, stage: str) -> None:
        """Set this thread's torch thread count for the next forward pass of `stage`."""
        threads = self.threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        tally = self._tally.setdefault(stage, [0.0, 0])
        tally[0] += threads
        tally[1] += 1

    def hook(self, stage: str) -> Callable[[], None]:
        """`use(stage)` as a callable, for the loops that decide before each pass."""
        return lambda: self.use(stage)

    @contextmanager
    def per_layer(self, model: torch.nn.Module, stage: str) -> Iterator[None]:
        """Inside, `use(stage)` runs before each transformer layer's forward pass (a forward
        pre-hook) and before its backward pass (a hook on the layer's input, which fires as the
        gradient reaches it). On the CPU autograd runs the backward on the thread that called
        it, so the count set there is the one the backward uses. The layers are the model's
        longest ModuleList (a decoder's blocks); a model without one keeps the caller's
        decisions alone. Each decision is a comparison unless the count changes."""
        layers = _transformer_layers(model)

        def decide_in_backward(grad: torch.Tensor) -> None:
            self.use(stage)

        def before_layer(module, args, kwargs) -> None:
            self.use(stage)
            hidden = args[0] if args else kwargs.get("hidden_states")
            if isinstance(hidden, torch.Tensor) and hidden.requires_grad:
                hidden.register_hook(decide_in_backward)

        handles = [
            layer.register_forward_pre_hook(before_layer, with_kwargs=True) for layer in layers
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def mean(self, stage: str) -> float | None:
        """Mean threads `stage` used since the last call (None: it did not run); resets it."""
        total, decisions = self._tally.pop(stage, (0.0, 0))
        return total / decisions if decisions else None


def _transformer_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


async def in_torch_thread(
    threads: ThreadPolicy, stage: str, fn: Callable[..., T], *args, **kwargs
) -> T:
    """Run `fn(*args, **kwargs)` in a worker thread whose torch threads follow `threads`.

    The count is set inside the worker: torch applies it per thread, so setting it on the event
    loop's thread would not reach a worker that has already run torch code. `fn` may re-decide
    it before each forward pass through `threads.hook(stage)`. Afterwards the memory it freed
    goes back to the system (`release_free_memory`).
    """

    def call() -> T:
        threads.use(stage)
        try:
            return fn(*args, **kwargs)
        finally:
            release_free_memory()

    return await anyio.to_thread.run_sync(call)


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_free_memory() -> bool:
    """Hand the pages of the C allocator's free blocks back to the system; False where the C
    library cannot (then the allocator keeps them, as it always did).

    glibc keeps what torch frees (activations, gradients, KV caches) in its arenas for reuse and
    returns only the top of each heap. Generation and the update free blocks of other sizes in
    other worker threads, so the freed memory piles up between the live tensors: in a 4-step run
    of configs/learn.yaml the arenas held 4-6 GiB free beside about 5 GiB live, and the process's
    resident memory grew with them (bench/RESULTS.md, "Memory"). `malloc_trim(0)` gives back every
    whole free page (MADV_DONTNEED) in every arena; it took 0.04-0.2 s after each torch call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
