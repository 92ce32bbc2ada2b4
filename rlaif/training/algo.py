"""Pure tensor math of the update: advantages, the taken tokens' log-probs, KL estimators, token
weights, the clipped loss.

No model, no I/O: every function here is tested with hand-computed numbers (tests/test_algo.py).
The KL coefficient's controllers live in `kl_control.py`.

Shapes: B tasks (prompts), G samples per task, S reward sources (judges), N = B*G sequences,
T completion tokens (padded; `mask` marks the real ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KL_CLAMP = 20.0  # |logp_ref - logp| beyond this is clamped before exp (k3 would overflow)
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its std
ROBUST_SCALE = 2.5  # tanh(x / 2.5): the RLAIF seed's soft clip of robust z-scores
ROBUST_EPS = 1e-8
ADVANTAGE_MODES = ("std", "no_std", "rloo", "robust")
AGGREGATIONS = ("token", "sequence", "constant")


def group_advantages(
    rewards: torch.Tensor, eps: float = 1e-4, mode: str = "std"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt baseline whitening that is NaN-aware per reward source (REFERENCE.md).

    rewards: [B, G, S]; NaN marks a judge that gave no answer for that sample. Each source gets
    its own baseline over the samples that have it (an abstaining sample's term contributes 0 and
    is left out of the baseline); the centred sources are summed into c_i, then per `mode`:
      std     A_i = c_i / (std_g(c) + eps)       c_si = r_si - mean_{j known} r_sj  (TRL, unbiased)
      no_std  A_i = c_i                                               (Dr. GRPO: no length/std bias)
      rloo    A_i = sum_s (r_si - mean_{j != i, known} r_sj)         (leave-one-out baseline)
      robust  A_i = tanh(c_i / (1.4826 MAD_g(c) + 1e-8) / 2.5)                   (the RLAIF seed)
    A sample on which every judge abstained (`abstained`) is left out of std_g, median_g and
    MAD_g (REFERENCE.md: it would count as a 0 and shrink the spread) and gets advantage 0.
    Without NaNs, `std` equals the usual (r_i - mean r) / (std r + eps) of the summed reward.
    Returns (advantages [B, G], zero_std [B]): groups whose centred rewards have std <= eps,
    or fewer than two samples with an answer, get advantage 0 exactly and are flagged, since
    they teach nothing.
    """
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"unknown advantage mode {mode!r} ({', '.join(ADVANTAGE_MODES)})")
    known = ~torch.isnan(rewards)  # [B, G, S]
    live = ~abstained(rewards)  # [B, G]; samples with at least one answer
    filled = torch.where(known, rewards, torch.zeros_like(rewards))  # [B, G, S]
    count = known.sum(dim=1, keepdim=True)  # [B, 1, S]
    total_s = filled.sum(dim=1, keepdim=True)  # [B, 1, S]
    mean = total_s / count.clamp(min=1)  # [B, 1, S]
    centred = torch.where(known, rewards - mean, torch.zeros_like(rewards))  # [B, G, S]
    total = centred.sum(dim=-1)  # [B, G]; 0 where abstained
    std = _live_std(total, live)  # [B]
    zero_std = (std <= eps) | (live.sum(dim=1) < 2)  # [B]
    if mode == "std":
        advantages = total / (std.unsqueeze(1) + eps)  # [B, G]
    elif mode == "no_std":
        advantages = total
    elif mode == "rloo":
        # mean of the others = (sum - r_i) / (k - 1); a source known for one sample only has
        # no baseline, so that sample's term is 0.
        others = count - 1  # [B, 1, S]
        loo = torch.where(
            known & (others > 0),
            rewards - (total_s - filled) / others.clamp(min=1),
            torch.zeros_like(rewards),
        )  # [B, G, S]
        advantages = loo.sum(dim=-1)  # [B, G]
    else:
        only_live = torch.where(live, total, torch.full_like(total, math.nan))  # [B, G]
        median = only_live.nanquantile(0.5, dim=1, keepdim=True)  # [B, 1]; midpoint for even G
        mad = (only_live - median).abs().nanquantile(0.5, dim=1, keepdim=True)  # [B, 1]
        scale = MAD_TO_STD * mad.nan_to_num(0.0) + ROBUST_EPS  # [B, 1]
        advantages = torch.tanh(total / scale / ROBUST_SCALE)  # [B, G]
    dead = zero_std.unsqueeze(1) | ~live  # [B, G]
    advantages = torch.where(dead, torch.zeros_like(advantages), advantages)
    return advantages, zero_std


def abstained(rewards: torch.Tensor) -> torch.Tensor:
    """Samples on which every judge abstained: [B, G, S] rewards -> [B, G] bool."""
    return torch.isnan(rewards).all(dim=-1)


def _live_std(values: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Unbiased std over each row's live entries ([B, G] -> [B]); 0 with fewer than two."""
    n = live.sum(dim=1)  # [B]
    kept = torch.where(live, values, torch.zeros_like(values))  # [B, G]
    mean = kept.sum(dim=1) / n.clamp(min=1)  # [B]
    square = torch.where(live, (values - mean.unsqueeze(1)) ** 2, torch.zeros_like(values))
    return (square.sum(dim=1) / (n - 1).clamp(min=1)).sqrt()  # [B]


def batch_normalize(
    advantages: torch.Tensor,
    zero_std: torch.Tensor,
    eps: float = 1e-4,
    abstentions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Whiten advantages across the whole batch (mean 0, std 1), after the per-group baseline.

    Only groups that teach something take part and move; zero-variance groups stay at 0, and so
    do samples on which every judge abstained (`abstentions` [B, G], from `abstained`). This
    is the batch-level normalisation of "Lite PPO" (group mean, batch std), useful when
    `no_std` or `rloo` leave advantages on the reward's scale. advantages: [B, G]; zero_std: [B].
    """
    live = (~zero_std).unsqueeze(1).expand_as(advantages)  # [B, G]
    if abstentions is not None:
        live = live & ~abstentions
    values = advantages[live]  # [n_live]
    if values.numel() < 2:
        return advantages
    normed = (advantages - values.mean()) / (values.std(unbiased=True) + eps)  # [B, G]
    return torch.where(live, normed, torch.zeros_like(advantages))


# Full-vocabulary temporaries ([n, chunk, V] fp32) are made this many elements at a time: 16 MiB,
# against 445 MiB for one fp32 copy of [4, 192, 151936] (Qwen's vocabulary, micro-batch 4).
LOGPROB_CHUNK_ELEMENTS = 2**22


def token_logprobs(
    logits: torch.Tensor,
    at: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    *,
    entropy: bool = False,
    grad_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / T)[target] for each completion token, and optionally the entropy of
    softmax(logits / T) where it was predicted, without any [n, C, V] copy of the logits.

    logits: [n, K, V] (any float dtype; the math is fp32, or fp64 for fp64 logits); at: [n, C]
    the position in K that predicts each completion token; targets: [n, C] its id. Returns
    ([n, C], [n, C] or None).
    The textbook log_softmax(...).gather(...) keeps a full fp32 [n, C, V] log-softmax alive until
    the backward pass, next to the copies made on the way (temperature, entropy): several GB at
    Qwen's 151,936-token vocabulary. Here the log-softmax is taken chunk by chunk of positions and
    only the chosen tokens' values are kept; the backward pass recomputes each chunk's softmax
    from the logits, which are all it keeps: the gradient is exactly the textbook one,
    d logp / d logit_v = (1[v = target] - p_v) / T (and dH / d logit_v = -p_v (log p_v + H) / T),
    with one [n, K, V] gradient buffer and chunk-sized temporaries. `grad_entropy`: the entropy
    carries a gradient (an entropy bonus); otherwise it is detached (logged only).
    """
    logp, ent = _TokenLogProbs.apply(logits, at, targets, temperature, entropy)
    if ent is not None and not grad_entropy:
        ent = ent.detach()
    return logp, ent


def _chunks(logits: torch.Tensor):
    """(start, end) ranges of K so that an [n, end - start, V] chunk has at most
    LOGPROB_CHUNK_ELEMENTS elements."""
    n, k, v = logits.shape
    step = max(1, LOGPROB_CHUNK_ELEMENTS // max(1, n * v))
    return [(start, min(start + step, k)) for start in range(0, k, step)]


class _TokenLogProbs(torch.autograd.Function):
    """`token_logprobs` with a hand-written backward pass (see there). Each chunk's log-softmax
    is torch's own, so the values are the textbook formula's; the backward pass recomputes it."""

    @staticmethod
    def forward(ctx, logits, at, targets, temperature, want_entropy):
        n, k, _ = logits.shape
        dtype = _math_dtype(logits)
        logp = torch.empty(at.shape, dtype=dtype, device=logits.device)  # [n, C]
        ent = torch.empty(n, k, dtype=dtype, device=logits.device) if want_entropy else None
        rows = torch.arange(n, device=logits.device).unsqueeze(1).expand_as(at)  # [n, C]
        for start, end in _chunks(logits):
            log_p = torch.log_softmax(logits[:, start:end].to(dtype) / temperature, -1)  # [n, c, V]
            inside = (at >= start) & (at < end)  # [n, C]: the tokens predicted in this chunk
            logp[inside] = log_p[rows[inside], at[inside] - start, targets[inside]]
            if ent is not None:
                ent[:, start:end] = -(log_p.exp() * log_p).sum(-1)  # [n, c]
        ctx.save_for_backward(logits, at, targets, ent)
        ctx.temperature = temperature
        ctx.set_materialize_grads(False)
        return logp, (ent.gather(1, at) if ent is not None else None)

    @staticmethod
    def backward(ctx, grad_logp, grad_ent):
        logits, at, targets, ent = ctx.saved_tensors
        t = ctx.temperature
        n, k, _ = logits.shape
        dtype = _math_dtype(logits)
        # Per position of K, the summed entropy gradient of the tokens it predicts.
        gh = None
        if grad_ent is not None and ent is not None:
            gh = torch.zeros(n, k, dtype=dtype, device=logits.device)  # [n, K]
            gh.scatter_add_(1, at, grad_ent.to(dtype))
        rows = torch.arange(n, device=logits.device).unsqueeze(1).expand_as(at)  # [n, C]
        grad = torch.empty_like(logits)  # [n, K, V]
        for start, end in _chunks(logits):
            log_p = torch.log_softmax(logits[:, start:end].to(dtype) / t, -1)  # [n, c, V]
            p = log_p.exp()  # [n, c, V]
            # The gradient reaching log_p (as the textbook's autograd forms it), then through
            # log_softmax: d/dz = d/dlog_p - p sum_v d/dlog_p_v.
            if gh is not None:  # H = -sum p log_p: d/dlog_p = -gh (log_p p + p)
                minus = -gh[:, start:end].unsqueeze(-1)  # [n, c, 1]
                upstream = minus * log_p * p + minus * p  # [n, c, V]
            else:
                upstream = torch.zeros_like(log_p)  # [n, c, V]
            if grad_logp is not None:  # the chosen tokens' own gradient, 1[v = y] g
                inside = (at >= start) & (at < end)  # [n, C]
                index = (rows[inside], at[inside] - start, targets[inside])
                upstream.index_put_(index, grad_logp.to(dtype)[inside], accumulate=True)
            gz = upstream - p * upstream.sum(-1, keepdim=True)  # [n, c, V]
            grad[:, start:end] = gz / t
        return grad, None, None, None, None


def _math_dtype(logits: torch.Tensor) -> torch.dtype:
    """fp32 for bf16/fp16/fp32 logits (as the trainer wants), fp64 for fp64 (gradcheck)."""
    return torch.promote_types(logits.dtype, torch.float32)


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


def token_weights(
    lengths: torch.Tensor,
    width: int,
    aggregation: str,
    *,
    batch_tokens: int,
    batch_sequences: int,
    constant: int,
) -> torch.Tensor:
    """Each completion token's weight in the loss, so that the loss is sum(weight * loss_t).

    lengths: [N] completion lengths; returns [N, width], 0 on padding. The normalisers are
    totals of the whole (mini)batch, not of one micro-batch, so gradient accumulation (and
    processes whose losses DDP averages, once scaled) give exactly the big-batch gradient.
      token     1 / batch_tokens: every token weighs the same (DAPO)
      sequence  1 / (len_i * batch_sequences): mean per sequence, then over sequences (GRPO)
      constant  1 / (constant * batch_sequences): a fixed length, e.g. max_new_tokens (Dr. GRPO)
    """
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)  # [1, T]
    mask = (positions < lengths.unsqueeze(1)).float()  # [N, T]
    if aggregation == "token":
        return mask / batch_tokens
    if aggregation == "sequence":
        return mask / (lengths.clamp(min=1).unsqueeze(1).float() * batch_sequences)
    if aggregation == "constant":
        return mask / (constant * batch_sequences)
    raise ValueError(f"unknown loss aggregation {aggregation!r} ({', '.join(AGGREGATIONS)})")


def truncated_is_weights(old_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float):
    """w = min(exp(logp_old_trainer - logp_sampler), C) per token (truncated importance sampling).

    Corrects for samples drawn by an older (or numerically different) policy than the one the
    update starts from, with the weight capped so one unlikely token cannot dominate
    (OpenRLHF clamps to [0.5, 5]; TRL masks above a cap). [N, T], no gradient.
    """
    log_ratio = (old_logp - sampler_logp).clamp(max=KL_CLAMP)  # [N, T]
    return torch.exp(log_ratio).clamp(max=cap).detach()


def lr_factor(step: int, schedule: str, warmup: int, total: int, min_ratio: float) -> float:
    """The learning rate at optimizer step `step` (from 0) as a fraction of the peak.

    Linear warmup over `warmup` steps ((step + 1) / warmup, so the first step already learns),
    then `constant` 1, or `cosine` from 1 towards `min_ratio`, reached after `total` steps:
        min_ratio + (1 - min_ratio) (1 + cos(pi p)) / 2,  p = (step - warmup) / (total - warmup)
    (the shape of transformers' cosine schedule, with a floor).
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LossParts:
    """Sums over a micro-batch's completion tokens, so micro-batches and processes add up."""

    loss: torch.Tensor  # scalar to backpropagate: sum of weight * loss_t
    pg_sum: torch.Tensor  # sum of the policy-gradient term over tokens
    kl_sum: torch.Tensor  # sum of the KL estimate over tokens
    kl_max: torch.Tensor  # largest per-token KL estimate
    clipped: torch.Tensor  # tokens whose ratio was clipped and the clip was active
    ratio_sum: torch.Tensor  # sum of the importance ratio pi / pi_old over tokens
    ratio_max: torch.Tensor  # largest importance ratio
    entropy_sum: torch.Tensor  # sum of the policy's per-token entropy
    tokens: torch.Tensor  # real tokens in the micro-batch


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    estimator: str,
    is_weights: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> LossParts:
    """PPO's clipped surrogate plus a KL penalty (and an optional entropy bonus), per token:

        loss_t = -w_t min(r_t A, clip(r_t, 1 - eps_low, 1 + eps_high) A) + beta KL_t - c H_t
        r_t = exp(logp - old_logp)

    old_logp is the policy the update starts from: the sampler's recorded log-probs, or the
    trainer's own when `is_weights` w_t (`truncated_is_weights`) correct for a stale sampler.
    Asymmetric eps_low / eps_high follow DAPO ("clip-higher"). `weights` ([N, T], from
    `token_weights`) is 0 on padding and sets the aggregation, so prompt and padding tokens
    never count. advantages: [N]; everything else [N, T].
    """
    real = weights > 0  # [N, T]
    ratio = torch.exp(logp - old_logp)  # [N, T]
    adv = advantages.unsqueeze(1)  # [N, 1]
    unclipped = ratio * adv  # [N, T]
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv  # [N, T]
    pg = -torch.minimum(unclipped, clipped)  # [N, T]
    if is_weights is not None:
        pg = pg * is_weights
    kl = kl_per_token(logp, ref_logp, estimator)  # [N, T]
    per_token = pg + kl_coef * kl  # [N, T]
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    loss = (per_token * weights).sum()
    mask = real.to(logp.dtype)  # [N, T]
    with torch.no_grad():
        was_clipped = (clipped < unclipped) & real  # the clip changed the objective
        return LossParts(
            loss=loss,
            pg_sum=(pg * mask).sum().detach(),
            kl_sum=(kl * mask).sum().detach(),
            kl_max=kl[real].max().detach() if real.any() else torch.zeros(()),
            clipped=was_clipped.sum(),
            ratio_sum=(ratio * mask).sum().detach(),
            ratio_max=ratio[real].max().detach() if real.any() else torch.ones(()),
            entropy_sum=(entropy.detach() * mask).sum() if entropy is not None else torch.zeros(()),
            tokens=mask.sum(),
        )
