"""The update: log-probs of the sampled tokens, the clipped loss with a KL penalty, AdamW steps.

The policy and its optimizer go through Accelerate (`prepare`, `backward`, `clip_grad_norm_`), so
the same code runs on CPU, one GPU, Apple MPS, or several processes under `accelerate launch`
(DDP: each process backpropagates its own samples and the gradients are averaged).

Precision: the weights and AdamW's state are fp32 on every device (`student.dtype: auto`), and
forward passes compute under bf16 autocast where the hardware multiplies bf16 (CUDA, and CPUs
with AMX or AVX512-BF16; `student.autocast`, `precision.pick_autocast`). Log-softmax and the loss
are taken in fp32. Training bf16 weights directly would lose most small updates to rounding.

The reference is a frozen copy of the starting weights on the same device; with LoRA
(`trainer.lora_r > 0`, through peft) it is the same model with its adapters disabled, so no
second copy is held. Both stay in eval mode: dropout would make the policy's log-probs differ
from the sampler's for no benefit (LoRA dropout, when asked for, applies to the gradient pass).

One `update` = `epochs` passes over the step's samples, each split into `minibatches`
minibatches (one optimizer step each), each run in micro-batches whose gradients accumulate.
Token weights (`algo.token_weights`) use the minibatch totals across processes, so neither
micro-batching nor the number of processes changes the gradient.

Departures from the textbook: log-probs are taken at the sampling temperature (the distribution
the tokens were actually drawn from); the ratio's anchor is the sampler's recorded log-probs,
except when some samples come from an older policy and `is_cap > 0`, where the anchor is the
trainer's own log-probs at the start of the update and a truncated importance weight corrects
for the sampler (see `algo.truncated_is_weights`). When the update is a single optimizer step
(one epoch, one minibatch, no LoRA dropout), the weights at its start are the weights of its own
forward pass, so those log-probs are the gradient pass's, detached: no extra forward pass is
spent on them, which matters with `pipeline.max_staleness: 1`, where every update has stale
samples.

Long: one update, read in order (anchors, minibatches, micro-batches, the loss, the optimizer
step) with the two records it carries (`Anchors`, `TokenStats`) and the one-line description of
its objective; split further, following one update would mean following it across files.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from accelerate import Accelerator

from rlaif.config import Config, TrainerConfig
from rlaif.student.lora import apply_lora
from rlaif.student.precision import autocast_context, pick_autocast
from rlaif.training.algo import (
    LossParts,
    clipped_policy_loss,
    lr_factor,
    token_logprobs,
    token_weights,
    truncated_is_weights,
)
from rlaif.training.kl_control import make_kl_controller
from rlaif.types import Sample


@dataclass(frozen=True)
class Anchors:
    """What each sample's ratio pi / pi_old is taken against in one update, and the truncated
    importance weights that correct for the sampler's policy. `source` is one of:

    - "sampler": the log-probs recorded when the sample was drawn (every sample fresh, or
      `is_cap` 0); no weights.
    - "pre_update": the trainer's log-probs before this update, computed up front; `logprobs`
      and `is_weights` hold them, per sample ([c] each).
    - "gradient_pass": the update's own gradient pass, detached: a single-step update starts
      from the weights of that pass, so no extra forward pass is spent. Weights are computed in
      the pass, from the same log-probs.
    """

    source: Literal["sampler", "pre_update", "gradient_pass"]
    logprobs: list[torch.Tensor] | None = None
    is_weights: list[torch.Tensor] | None = None


@dataclass
class TokenStats:
    """An update's per-token statistics: sums over tokens (so micro-batches, minibatches and
    processes add up) and maxima. The update's metrics row divides the sums by `tokens`."""

    pg: float = 0.0  # the policy-gradient term
    kl: float = 0.0  # the KL estimate
    clipped: float = 0.0  # tokens whose ratio was clipped while the clip was active
    ratio: float = 0.0  # the ratio pi / pi_old
    is_weight: float = 0.0  # the truncated importance weight (1 where there is none)
    entropy: float = 0.0  # the policy's entropy
    tokens: float = 0.0  # real completion tokens
    kl_max: float = -math.inf
    ratio_max: float = -math.inf
    is_weight_max: float = -math.inf

    SUMS = ("pg", "kl", "clipped", "ratio", "is_weight", "entropy", "tokens")
    MAXES = ("kl_max", "ratio_max", "is_weight_max")

    @classmethod
    def of(cls, parts: LossParts, is_weights: torch.Tensor | None, real: torch.Tensor):
        """One micro-batch's statistics; `real` marks its real (not padding) tokens."""
        tokens = parts.tokens.item()
        return cls(
            pg=parts.pg_sum.item(),
            kl=parts.kl_sum.item(),
            clipped=parts.clipped.item(),
            ratio=parts.ratio_sum.item(),
            # Without weights every real token weighs 1.
            is_weight=is_weights[real].sum().item() if is_weights is not None else tokens,
            entropy=parts.entropy_sum.item(),
            tokens=tokens,
            kl_max=parts.kl_max.item(),
            ratio_max=parts.ratio_max.item(),
            is_weight_max=is_weights[real].max().item() if is_weights is not None else 1.0,
        )

    def add(self, other: TokenStats) -> None:
        for name in self.SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self.MAXES:
            setattr(self, name, _max(getattr(self, name), getattr(other, name)))

    def across_processes(self, acc: Accelerator) -> TokenStats:
        """Sums summed and maxima maxed over every process (each holds its own samples')."""
        sums = torch.tensor([getattr(self, n) for n in self.SUMS], dtype=torch.float64)
        maxes = torch.tensor([getattr(self, n) for n in self.MAXES], dtype=torch.float64)
        sums = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
        maxes = acc.gather(maxes.to(acc.device).unsqueeze(0)).max(dim=0).values.cpu()
        values = dict(zip(self.SUMS, sums.tolist(), strict=True))
        values.update(zip(self.MAXES, maxes.tolist(), strict=True))
        return TokenStats(**values)


class Trainer:
    def __init__(self, model: torch.nn.Module, config: Config, accelerator: Accelerator):
        t = config.trainer
        self.config = config
        self.accelerator = accelerator
        self.lora = t.lora_r > 0
        if self.lora:
            model = apply_lora(model, config)
            self.reference = None  # the policy with its adapters disabled
        else:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
            self.reference.to(accelerator.device)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=t.learning_rate,
            weight_decay=t.weight_decay,
            # One fused kernel over all parameters (CPU and CUDA) instead of a Python loop of
            # small ops per tensor; MPS keeps the default implementation.
            fused=accelerator.device.type in ("cpu", "cuda") or None,
        )
        total = t.max_steps * t.epochs * t.minibatches
        # Not passed to `prepare`: Accelerate would step it once per process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, t.lr_schedule, t.warmup_steps, total, t.min_lr_ratio),
        )
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.model.eval()
        self.kl = make_kl_controller(config.kl)
        device = accelerator.device
        self.autocast = autocast_context(device, pick_autocast(config.student.autocast, device))
        self.version = 0  # updates applied so far; samples carry the version that made them

    @property
    def policy(self) -> torch.nn.Module:
        """The bare policy model (a peft model with LoRA), for generation."""
        return self.accelerator.unwrap_model(self.model)

    def state_dict(self) -> dict:
        """What an exact resume needs besides the weights: optimizer, schedule, KL, version."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "kl_controller": self.kl.state_dict(),
            "version": self.version,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl.load_state_dict(state["kl_controller"])
        self.version = int(state["version"])

    def update(
        self,
        samples: list[Sample],
        advantages: list[float],
        before_micro_batch: Callable[[], None] | None = None,
    ) -> dict[str, float]:
        """Train on this process's `samples`; returns statistics reduced over all processes.

        `before_micro_batch` runs before each micro-batch's forward passes (the caller re-decides
        torch's thread count there, `rollout.threads.ThreadPolicy`).

        Token statistics (kl, ratio, entropy, ...) are means over every pass of the update, so
        with one epoch and one minibatch `kl` is the KL of the weights the update started from.
        `kl_coef` is the beta this update used; the controller then moves it using `kl`.
        """
        t, acc = self.config.trainer, self.accelerator
        if len(samples) < t.minibatches:
            raise ValueError(f"{len(samples)} samples cannot fill {t.minibatches} minibatches")
        beta = self.kl.value
        anchors = self._anchors(samples)
        total = TokenStats()
        grad_norms = []
        lr = self.scheduler.get_last_lr()[0]
        order = torch.Generator().manual_seed(self.config.run.seed * 7919 + self.version)
        for _ in range(t.epochs):
            if t.minibatches == 1:
                perm = list(range(len(samples)))  # one minibatch: the order does not matter
            else:
                perm = torch.randperm(len(samples), generator=order).tolist()
            for part in range(t.minibatches):
                rows = perm[part :: t.minibatches]
                total.add(
                    self._accumulate(samples, advantages, anchors, rows, beta, before_micro_batch)
                )
                grad_norms.append(self._clip_gradients())
                lr = self.scheduler.get_last_lr()[0]  # the rate this optimizer step uses
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        total = total.across_processes(acc)
        kl = total.kl / total.tokens
        self.kl.update(kl)
        return {
            "policy_loss": total.pg / total.tokens,
            "kl": kl,
            "kl_max": total.kl_max,
            "kl_coef": beta,
            "loss": (total.pg + beta * total.kl) / total.tokens,
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": lr,
            "clip_frac": total.clipped / total.tokens,
            "ratio_mean": total.ratio / total.tokens,
            "ratio_max": total.ratio_max,
            "is_weight_mean": total.is_weight / total.tokens,
            "is_weight_max": total.is_weight_max,
            "entropy": total.entropy / total.tokens,
            "completion_tokens": total.tokens / t.epochs,  # per pass
            # 1: the ratio was anchored on the gradient pass itself (ratio 1, no clip can act:
            # REINFORCE + baseline + truncated IS + KL); 0: on the sampler's or pre-update
            # log-probs, where clip_eps_* can act (`update_objective`).
            "self_anchored": float(anchors.source == "gradient_pass"),
        }

    def _anchors(self, samples: list[Sample]) -> Anchors:
        """Per sample: what the ratio is taken against, and the truncated IS weights.

        Fresh samples (made by the current weights) anchor on the sampler's log-probs. When any
        sample on any process is stale and `is_cap > 0`, every sample anchors on the trainer's
        log-probs before this update, weighted by min(exp(trainer - sampler), is_cap): computed
        here, or in the update's own gradient pass when that pass yields them (`single_step`).
        """
        acc, cap = self.accelerator, self.config.trainer.is_cap
        stale = torch.tensor([float(any(s.policy_version < self.version for s in samples))])
        if cap <= 0 or acc.reduce(stale.to(acc.device), reduction="sum").item() == 0:
            return Anchors("sampler")
        if single_step(self.config.trainer):
            return Anchors("gradient_pass")
        anchors, weights = [], []
        size = self.config.trainer.micro_batch_size
        with torch.no_grad():
            for start in range(0, len(samples), size):
                chunk = samples[start : start + size]
                batch = _pad_batch(chunk, acc.device)
                logp, _ = self._completion_logprobs(self.policy, batch, entropy=False)  # [n, C]
                for i, s in enumerate(chunk):
                    old = logp[i, : len(s.completion_ids)].float().cpu()  # [c]
                    anchors.append(old)
                    weights.append(truncated_is_weights(old, torch.tensor(s.logprobs), cap))
        return Anchors("pre_update", anchors, weights)

    def _accumulate(
        self,
        samples: list[Sample],
        advantages: list[float],
        anchors: Anchors,
        rows: list[int],
        beta: float,
        before_micro_batch: Callable[[], None] | None = None,
    ) -> TokenStats:
        """Forward and backward over one minibatch (`rows`), micro-batch by micro-batch; the
        gradients accumulate and are all-reduced once, after the last micro-batch."""
        t, acc = self.config.trainer, self.accelerator
        local = torch.tensor(
            [len(rows), sum(len(samples[r].completion_ids) for r in rows)], dtype=torch.float64
        )
        seqs, tokens = acc.reduce(local.to(acc.device), reduction="sum").tolist()
        stats = TokenStats()
        size = t.micro_batch_size
        starts = list(range(0, len(rows), size))
        for k, start in enumerate(starts):
            if before_micro_batch is not None:
                before_micro_batch()
            idx = rows[start : start + size]
            sync = k == len(starts) - 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                stats.add(
                    self._micro_batch(
                        [samples[r] for r in idx],
                        [advantages[r] for r in idx],
                        anchors,
                        idx,
                        beta,
                        batch_tokens=int(tokens),
                        batch_sequences=int(seqs),
                    )
                )
        return stats

    def _micro_batch(
        self,
        chunk: list[Sample],
        advantages: list[float],
        anchors: Anchors,
        idx: list[int],
        beta: float,
        *,
        batch_tokens: int,
        batch_sequences: int,
    ) -> TokenStats:
        """One micro-batch's forward passes (policy and reference), loss and backward.

        `idx` are the chunk's rows in the update's samples (for "pre_update" anchors);
        `batch_tokens` and `batch_sequences` are the minibatch's totals over every process, which
        the token weights are normalised by.
        """
        t, acc = self.config.trainer, self.accelerator
        batch = _pad_batch(chunk, acc.device)
        width = batch["targets"].shape[1]
        lengths = torch.tensor([len(s.completion_ids) for s in chunk], device=acc.device)
        weights = token_weights(
            lengths,
            width,
            t.loss_aggregation,
            batch_tokens=batch_tokens,
            batch_sequences=batch_sequences,
            constant=self.config.student.max_new_tokens,
        )  # [n, C]
        weights = weights * acc.num_processes  # DDP averages gradients over processes
        old_logp, is_weights = batch["sampler_logp"], None  # [n, C]; "sampler" anchors
        if anchors.source == "pre_update":
            old_logp = _pad_rows([anchors.logprobs[r] for r in idx], width, 0.0).to(acc.device)
            is_weights = _pad_rows([anchors.is_weights[r] for r in idx], width, 1.0)
            is_weights = is_weights.to(acc.device)  # [n, C]
        self.model.train(self.lora and t.lora_dropout > 0)  # LoRA dropout only
        logp, entropy = self._completion_logprobs(
            self.model, batch, entropy=True, grad_entropy=t.entropy_coef > 0
        )  # [n, C] each
        self.model.eval()
        with torch.no_grad():
            ref_logp = self._reference_logprobs(batch)  # [n, C]
        if anchors.source == "gradient_pass":
            old_logp = logp.detach()
            is_weights = truncated_is_weights(old_logp.float(), batch["sampler_logp"], t.is_cap)
        parts = clipped_policy_loss(
            logp,
            old_logp,
            ref_logp,
            torch.tensor(advantages, device=acc.device),
            weights,
            eps_low=t.clip_eps_low,
            eps_high=t.clip_eps_high,
            kl_coef=beta,
            estimator=self.config.kl.estimator,
            is_weights=is_weights,
            entropy=entropy,
            entropy_coef=t.entropy_coef,
        )
        acc.backward(parts.loss)
        return TokenStats.of(parts, is_weights, real=weights > 0)

    def _reference_logprobs(self, batch: dict) -> torch.Tensor:
        if self.reference is not None:
            return self._completion_logprobs(self.reference, batch, entropy=False)[0]
        with self.policy.disable_adapter():
            return self._completion_logprobs(self.policy, batch, entropy=False)[0]

    def _clip_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.config.trainer.max_grad_norm
        if max_norm > 0:
            return float(self.accelerator.clip_grad_norm_(params, max_norm))
        if not params:
            return 0.0
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))

    def _completion_logprobs(
        self, model: torch.nn.Module, batch: dict, *, entropy: bool, grad_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log p(token) of each completion token at the sampling temperature: [n, C], and the
        policy's entropy at each of those positions ([n, C]) when asked for."""
        # Row i's completion token j sits at position P_i + j; it is predicted at P_i + j - 1.
        # Logits are computed only from the earliest such position on: the LM head over the
        # prompt would cost a fifth of a small model's forward pass for nothing.
        length = batch["input_ids"].shape[1]
        keep = length - int(batch["prompt_len"].min()) + 1
        with self.autocast():
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention"],
                logits_to_keep=keep,
            ).logits  # [n, keep, V]
        predicted_at = batch["prompt_len"].unsqueeze(1) - 1 + batch["offsets"] - (length - keep)
        predicted_at = predicted_at.clamp(max=keep - 1)  # [n, C]; padding slots point anywhere
        # Only the taken tokens' log-probs, in chunks: no [n, C, V] copy (algo.token_logprobs).
        return token_logprobs(
            logits,
            predicted_at,
            batch["targets"],
            self.config.student.temperature,
            entropy=entropy,
            grad_entropy=grad_entropy,
        )  # [n, C] each


def single_step(t: TrainerConfig) -> bool:
    """Whether an update is one optimizer step whose gradient pass sees the weights it starts
    from (LoRA dropout would make that pass differ from the policy's): then pi = pi_old at every
    token, the ratio is exactly 1 and `clip_eps_*` cannot act."""
    return t.epochs * t.minibatches == 1 and not (t.lora_r > 0 and t.lora_dropout > 0)


def update_objective(config: Config) -> str:
    """What each update optimises under `config`, in one line: printed when a run starts, so
    that a run says whether its clip can act (docs/training.md, "The update").

    With the defaults (one epoch, one minibatch, no LoRA dropout) the policy-gradient term is
    REINFORCE with the group baseline as advantage: stale samples (pipeline.max_staleness 1)
    anchor the ratio on the gradient pass itself (ratio 1, truncated IS corrects for the
    sampler), fresh ones on the sampler's log-probs (ratio 1 up to float noise). Only with
    is_cap 0 do stale samples keep the sampler's anchor, and the clip then bounds that
    off-policy ratio. With several optimizer steps per update the ratio moves from the second
    one on, and the clipped surrogate is PPO's.
    """
    t, kl = config.trainer, config.kl
    stale = config.pipeline.max_staleness > 0
    correction = (
        f"truncated importance sampling (is_cap {t.is_cap:g})"
        if t.is_cap > 0
        else "no importance weights (is_cap 0)"
    )
    penalty = (
        f"a KL penalty (kl.coef {kl.coef:g}, {kl.controller})"
        if kl.coef > 0 or kl.controller != "fixed"
        else "no KL penalty (kl.coef 0)"
    )
    clip = f"ratio clipped to [{1 - t.clip_eps_low:g}, {1 + t.clip_eps_high:g}]"
    if single_step(t) and (t.is_cap > 0 or not stale):
        return (
            f"REINFORCE with a group baseline, {correction} and {penalty}: one optimizer step "
            "per update, so the ratio pi / pi_old is 1 (up to the sampler's rounding on fresh "
            "samples) and clip_eps_low/high do not act (they do with trainer.epochs or "
            "trainer.minibatches > 1, or LoRA dropout)"
        )
    if single_step(t):
        return (
            f"one clipped policy-gradient step per update against the sampler's log-probs "
            f"({clip}): with is_cap 0 the clip bounds stale samples' off-policy ratio; {penalty}"
        )
    return (
        f"PPO's clipped surrogate ({clip}) over {t.epochs} epoch(s) x {t.minibatches} "
        f"minibatch(es) a step, {correction} and {penalty}: the ratio moves from the second "
        "optimizer step of an update on"
    )


def _max(a: float, b: float) -> float:
    """max that keeps a NaN (as torch.maximum does): a NaN statistic must not hide."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _pad_rows(rows: list[torch.Tensor], width: int, fill: float) -> torch.Tensor:
    out = torch.full((len(rows), width), fill)  # [n, C]
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _pad_batch(samples: list[Sample], device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion ids and mask; completion-aligned targets and the
    sampler's recorded log-probs (0 in the padding)."""
    n = len(samples)
    seq_len = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
    comp_len = max(len(s.completion_ids) for s in samples)
    input_ids = torch.zeros(n, seq_len, dtype=torch.long)  # [n, L]; pad id is masked out anyway
    attention = torch.zeros(n, seq_len, dtype=torch.long)  # [n, L]
    targets = torch.zeros(n, comp_len, dtype=torch.long)  # [n, C]
    for i, s in enumerate(samples):
        ids = s.prompt_ids + s.completion_ids
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        targets[i, : len(s.completion_ids)] = torch.tensor(s.completion_ids)
    return {
        "input_ids": input_ids.to(device),
        "attention": attention.to(device),
        "prompt_len": torch.tensor([len(s.prompt_ids) for s in samples], device=device),  # [n]
        "offsets": torch.arange(comp_len, device=device).unsqueeze(0),  # [1, C]
        "targets": targets.to(device),
        "sampler_logp": _pad_rows([torch.tensor(s.logprobs) for s in samples], comp_len, 0.0).to(
            device
        ),  # [n, C]
    }
