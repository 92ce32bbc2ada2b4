"""A step's advantages: each judge's rewards whitened within its group, then summed.

The per-prompt baseline: `algo.group_advantages` takes each judge's rewards of one task's group,
subtracts their mean and divides by their spread, leaving out a judge that abstained; optionally
the batch is normalised again (`trainer.batch_normalize`). A group whose rewards are all equal
(within `whiten_eps`) gets advantage 0: it teaches nothing, and dynamic sampling may swap it
(`zero_std_groups`, used by the loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rlaif.config import TrainerConfig
from rlaif.training.algo import abstained, batch_normalize, group_advantages
from rlaif.types import Groups, Scored


@dataclass(frozen=True)
class Advantages:
    """One step's advantages, for the update and the logs."""

    per_sample: list[float]  # [B * G], the groups' samples in task order
    zero_std_share: float  # the share of groups whose rewards did not vary (advantage 0)


def step_advantages(groups: Groups, config: TrainerConfig) -> Advantages:
    """Whiten every judge's rewards within each group (and the batch, if asked)."""
    scored = [s for group in groups for s in group]
    rewards = reward_tensor(scored, len(groups), config.samples_per_prompt)  # [B, G, S]
    advantages, zero_std = group_advantages(
        rewards, config.whiten_eps, config.advantage_mode
    )  # [B, G], [B]
    if config.batch_normalize:
        advantages = batch_normalize(
            advantages, zero_std, config.whiten_eps, abstained(rewards)
        )  # [B, G]
    return Advantages(advantages.flatten().tolist(), zero_std.float().mean().item())


def zero_std_groups(groups: Groups, eps: float) -> list[bool]:
    """Which groups the whitening gives advantage 0 (its own rule, per judge with abstentions)."""
    scored = [s for group in groups for s in group]
    rewards = reward_tensor(scored, len(groups), len(groups[0]))
    return group_advantages(rewards, eps)[1].tolist()


def reward_tensor(scored: list[Scored], tasks: int, group: int) -> torch.Tensor:
    """[B, G, S] rewards by judge; a judge that is off for the whole run has no column."""
    sources = sorted({name for s in scored for name in s.sources})
    values = [[s.sources.get(name, math.nan) for name in sources] for s in scored]
    return torch.tensor(values, dtype=torch.float64).reshape(tasks, group, len(sources))
