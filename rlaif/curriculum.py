"""Which tasks each step trains on.

This first version walks the training set in a seeded random order (or file order), one epoch
after another, reshuffling each epoch; its state is two integers so a run can resume exactly.
Difficulty buckets and promotion by pass rate build on this sampler.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .types import Task


@dataclass
class TaskSampler:
    tasks: list[Task]
    shuffle: bool
    seed: int
    epoch: int = 0
    cursor: int = 0  # next position in this epoch's order
    _order: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._order = self._epoch_order(self.epoch)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.tasks)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next(self, n: int) -> list[Task]:
        """The next `n` tasks; an epoch boundary may fall inside a batch."""
        picked = []
        for _ in range(n):
            if self.cursor == len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            picked.append(self.tasks[self._order[self.cursor]])
            self.cursor += 1
        return picked

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        """Continue where `state()` was taken: same epoch, same position in its order."""
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)
