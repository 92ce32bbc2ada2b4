"""Pure tensor math of the update: advantages, KL estimators, the clipped policy loss.

No model, no I/O: every function here is tested with hand-computed numbers.

Shapes: B tasks (prompts), G samples per task, S reward sources (judges), N = B*G sequences,
T completion tokens (padded; `mask` marks the real ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KL_CLAMP = 20.0  # |logp_ref - logp| beyond this is clamped before exp (k3 would overflow)


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt baseline whitening that is NaN-aware per reward source.

    rewards: [B, G, S]; NaN marks a judge that gave no answer for that sample.
    Each source is centred on its own group mean over the samples that have it (an abstaining
    sample's term contributes 0 and is left out of the baseline); the centred sources are summed
    and divided by the group's std (unbiased, as TRL) plus eps:
        A_i = sum_s c_si / (std_g(sum_s c_s) + eps),  c_si = r_si - mean_{j: r_sj known} r_sj
    Without NaNs this equals the usual (r_i - mean r) / (std r + eps) of the summed reward.
    Returns (advantages [B, G], zero_std [B]): groups whose centred rewards are all equal get
    advantage 0 exactly and are flagged, since they teach nothing.
    """
    known = ~torch.isnan(rewards)  # [B, G, S]
    filled = torch.where(known, rewards, torch.zeros_like(rewards))  # [B, G, S]
    count = known.sum(dim=1, keepdim=True)  # [B, 1, S]
    mean = filled.sum(dim=1, keepdim=True) / count.clamp(min=1)  # [B, 1, S]
    centred = torch.where(known, rewards - mean, torch.zeros_like(rewards))  # [B, G, S]
    total = centred.sum(dim=-1)  # [B, G]
    std = total.std(dim=1, unbiased=True)  # [B]
    zero_std = std <= eps  # [B]
    advantages = total / (std.unsqueeze(1) + eps)  # [B, G]
    advantages = torch.where(zero_std.unsqueeze(1), torch.zeros_like(advantages), advantages)
    return advantages, zero_std


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from log-probs of tokens sampled by the policy.

    With d = logp_ref - logp (Schulman, "Approximating KL divergence", 2020):
    k1 = -d (unbiased, high variance, can be negative); k2 = d^2 / 2; k3 = e^d - d - 1 (unbiased
    and never negative). d is clamped to [-20, 20] so e^d stays finite.
    """
    d = (ref_logp - logp).clamp(-KL_CLAMP, KL_CLAMP)  # [N, T]
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.exp(d) - d - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r} (k1, k2 or k3)")


@dataclass
class LossParts:
    """Sums over a micro-batch's completion tokens, so micro-batches add up exactly."""

    loss: torch.Tensor  # scalar to backpropagate: (pg + beta * kl) summed, / tokens in the batch
    pg_sum: torch.Tensor  # sum of the policy-gradient term over tokens
    kl_sum: torch.Tensor  # sum of the KL estimate over tokens
    kl_max: torch.Tensor  # largest per-token KL estimate
    clipped: torch.Tensor  # tokens whose ratio was clipped and the clip was active
    ratio_max: torch.Tensor  # largest importance ratio


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float,
    kl_coef: float,
    estimator: str,
    batch_tokens: int,
) -> LossParts:
    """PPO's clipped surrogate plus a KL penalty, averaged over completion tokens only.

    loss_t = -min(r_t A, clip(r_t, 1 - eps, 1 + eps) A) + beta * KL_t,  r_t = exp(logp - old_logp)
    where old_logp is what the sampler recorded. The sum over real tokens is divided by
    `batch_tokens`, the completion tokens of the whole batch, so gradient accumulation over
    micro-batches gives the same gradient as one big batch (token-level aggregation, as DAPO).
    """
    mask = mask.to(logp.dtype)  # [N, T]
    ratio = torch.exp(logp - old_logp)  # [N, T]
    adv = advantages.unsqueeze(1)  # [N, 1]
    unclipped = ratio * adv  # [N, T]
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv  # [N, T]
    pg = -torch.minimum(unclipped, clipped)  # [N, T]
    kl = kl_per_token(logp, ref_logp, estimator)  # [N, T]
    per_token = pg + kl_coef * kl  # [N, T]
    loss = (per_token * mask).sum() / batch_tokens
    real = mask > 0
    with torch.no_grad():
        was_clipped = (clipped < unclipped) & real  # the clip changed the objective
        return LossParts(
            loss=loss,
            pg_sum=(pg * mask).sum().detach(),
            kl_sum=(kl * mask).sum().detach(),
            kl_max=kl[real].max().detach() if real.any() else torch.zeros(()),
            clipped=was_clipped.sum(),
            ratio_max=ratio[real].max().detach() if real.any() else torch.ones(()),
        )
