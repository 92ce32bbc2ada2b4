"""The update: log-probs of the sampled tokens, the clipped loss with a KL penalty, AdamW steps.

The policy and its optimizer go through Accelerate (`prepare`, `backward`, `clip_grad_norm_`), so
the same code runs on CPU, one GPU, Apple MPS, or several processes under `accelerate launch`
(DDP: each process backpropagates its own samples and the gradients are averaged).

Precision: the weights and AdamW's state are fp32 on every device (`student.dtype: auto`), and
forward passes compute under bf16 autocast where the hardware multiplies bf16 (CUDA, and CPUs
with AMX or AVX512-BF16; `student.autocast`, `student.pick_autocast`). Log-softmax and the loss
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
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from rlaif.config import Config, ConfigError, TrainerConfig
from rlaif.student.precision import autocast_context, pick_autocast
from rlaif.training.algo import (
    clipped_policy_loss,
    lr_factor,
    token_logprobs,
    token_weights,
    truncated_is_weights,
)
from rlaif.training.kl_control import make_kl_controller
from rlaif.types import Sample


def make_accelerator(device: torch.device) -> Accelerator:
    """One Accelerator per process. `cpu=True` keeps it off a GPU the user did not ask for; under
    `accelerate launch` the process's own device (cuda:<local rank>, or cpu) comes from the
    launcher. Mixed precision is ours (the trainer's autocast), not Accelerate's: Accelerate's
    would wrap the model's forward, and generation through that wrapper would recast every
    weight at every decoded token."""
    return Accelerator(cpu=device.type == "cpu", mixed_precision="no")


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
        torch's thread count there, `rollout.ThreadPolicy`).

        Token statistics (kl, ratio, entropy, ...) are means over every pass of the update, so
        with one epoch and one minibatch `kl` is the KL of the weights the update started from.
        `kl_coef` is the beta this update used; the controller then moves it using `kl`.
        """
        t, acc = self.config.trainer, self.accelerator
        if len(samples) < t.minibatches:
            raise ValueError(f"{len(samples)} samples cannot fill {t.minibatches} minibatches")
        beta = self.kl.value
        anchored = self._anchors(samples)  # None: stale samples, anchored on the gradient pass
        anchors, is_weights = anchored if anchored is not None else (None, None)
        sums = torch.zeros(7, dtype=torch.float64)  # pg, kl, clipped, ratio, is_w, entropy, tokens
        maxes = torch.full((3,), -math.inf, dtype=torch.float64)  # kl, ratio, is_w
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
                s, m = self._accumulate(
                    samples, advantages, anchors, is_weights, rows, beta, before_micro_batch
                )
                sums += s
                maxes = torch.maximum(maxes, m)
                grad_norms.append(self._clip_gradients())
                lr = self.scheduler.get_last_lr()[0]  # the rate this optimizer step uses
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        sums = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
        maxes = acc.gather(maxes.to(acc.device).unsqueeze(0)).max(dim=0).values.cpu()
        pg, kl_sum, clipped, ratio, is_w, entropy, tokens = sums.tolist()
        kl = kl_sum / tokens
        self.kl.update(kl)
        return {
            "policy_loss": pg / tokens,
            "kl": kl,
            "kl_max": maxes[0].item(),
            "kl_coef": beta,
            "loss": (pg + beta * kl_sum) / tokens,
            "grad_norm": sum(grad_norms) / len(grad_norms),
            "lr": lr,
            "clip_frac": clipped / tokens,
            "ratio_mean": ratio / tokens,
            "ratio_max": maxes[1].item(),
            "is_weight_mean": is_w / tokens,
            "is_weight_max": maxes[2].item(),
            "entropy": entropy / tokens,
            "completion_tokens": tokens / t.epochs,  # per pass
            # 1: the ratio was anchored on the gradient pass itself (ratio 1, no clip can act:
            # REINFORCE + baseline + truncated IS + KL); 0: on the sampler's or pre-update
            # log-probs, where clip_eps_* can act (`update_objective`).
            "self_anchored": float(anchored is None),
        }

    def _anchors(self, samples: list[Sample]) -> tuple[list[torch.Tensor], list | None] | None:
        """Per sample: the log-probs the ratio is taken against, and the truncated IS weights.

        Fresh samples (made by the current weights) anchor on the sampler's log-probs. When any
        sample on any process is stale and `is_cap > 0`, every sample anchors on the trainer's
        log-probs before this update, weighted by min(exp(trainer - sampler), is_cap); None
        when the update's own gradient pass yields those (`_self_anchored`).
        """
        acc, cap = self.accelerator, self.config.trainer.is_cap
        sampler = [torch.tensor(s.logprobs) for s in samples]
        stale = torch.tensor([float(any(s.policy_version < self.version for s in samples))])
        if cap <= 0 or acc.reduce(stale.to(acc.device), reduction="sum").item() == 0:
            return sampler, None
        if self._self_anchored():
            return None
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
                    weights.append(truncated_is_weights(old, sampler[start + i], cap))
        return anchors, weights

    def _self_anchored(self) -> bool:
        return single_step(self.config.trainer)

    def _accumulate(
        self, samples, advantages, anchors, is_weights, rows, beta, before_micro_batch=None
    ):
        """Forward and backward over one minibatch (`rows`), micro-batch by micro-batch."""
        t, acc = self.config.trainer, self.accelerator
        local = torch.tensor(
            [len(rows), sum(len(samples[r].completion_ids) for r in rows)], dtype=torch.float64
        )
        seqs, tokens = acc.reduce(local.to(acc.device), reduction="sum").tolist()
        sums = torch.zeros(7, dtype=torch.float64)
        maxes = torch.full((3,), -math.inf, dtype=torch.float64)
        size = t.micro_batch_size
        starts = list(range(0, len(rows), size))
        for k, start in enumerate(starts):
            if before_micro_batch is not None:
                before_micro_batch()
            idx = rows[start : start + size]
            chunk = [samples[r] for r in idx]
            chunk_anchors = None if anchors is None else [anchors[r] for r in idx]
            batch = _pad_batch(chunk, acc.device, chunk_anchors)  # None: the sampler's
            lengths = torch.tensor([len(s.completion_ids) for s in chunk], device=acc.device)
            weights = token_weights(
                lengths,
                batch["targets"].shape[1],
                t.loss_aggregation,
                batch_tokens=int(tokens),
                batch_sequences=int(seqs),
                constant=self.config.student.max_new_tokens,
            )  # [n, C]
            weights = weights * acc.num_processes  # DDP averages gradients over processes
            isw = None
            if is_weights is not None:
                isw = _pad_rows([is_weights[r] for r in idx], batch["targets"].shape[1], 1.0)
                isw = isw.to(acc.device)  # [n, C]
            sync = k == len(starts) - 1  # all-reduce gradients once, after the last micro-batch
            with contextlib.nullcontext() if sync else acc.no_sync(self.model):
                self.model.train(self.lora and t.lora_dropout > 0)  # LoRA dropout only
                logp, ent = self._completion_logprobs(
                    self.model, batch, entropy=True, grad_entropy=t.entropy_coef > 0
                )  # [n, C] each
                self.model.eval()
                with torch.no_grad():
                    ref_logp = self._reference_logprobs(batch)  # [n, C]
                if anchors is None:  # self-anchored; batch["old_logp"] holds the sampler's
                    old = logp.detach()
                    isw = truncated_is_weights(old.float(), batch["old_logp"], t.is_cap)
                    batch["old_logp"] = old
                parts = clipped_policy_loss(
                    logp,
                    batch["old_logp"],
                    ref_logp,
                    torch.tensor([advantages[r] for r in idx], device=acc.device),
                    weights,
                    eps_low=t.clip_eps_low,
                    eps_high=t.clip_eps_high,
                    kl_coef=beta,
                    estimator=self.config.kl.estimator,
                    is_weights=isw,
                    entropy=ent,
                    entropy_coef=t.entropy_coef,
                )
                acc.backward(parts.loss)
            real = weights > 0
            is_sum = isw[real].sum().item() if isw is not None else parts.tokens.item()
            is_max = isw[real].max().item() if isw is not None else 1.0
            sums += torch.tensor(
                [
                    parts.pg_sum.item(),
                    parts.kl_sum.item(),
                    parts.clipped.item(),
                    parts.ratio_sum.item(),
                    is_sum,
                    parts.entropy_sum.item(),
                    parts.tokens.item(),
                ],
                dtype=torch.float64,
            )
            step_max = torch.tensor(
                [parts.kl_max.item(), parts.ratio_max.item(), is_max], dtype=torch.float64
            )
            maxes = torch.maximum(maxes, step_max)
        return sums, maxes

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
    that a run says whether its clip can act (README, "The update").

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


def apply_lora(model: torch.nn.Module, config: Config) -> torch.nn.Module:
    """Wrap `model` with peft LoRA adapters per `trainer.lora_*`; only they will train."""
    t = config.trainer
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError(
            f"trainer.lora_r={t.lora_r}: LoRA needs peft: pip install 'rlaif[peft]' "
            "(or set trainer.lora_r=0)"
        ) from None
    names = t.lora_target_modules.strip()
    targets: str | list[str] = (
        names if names == "all-linear" else [n.strip() for n in names.split(",") if n.strip()]
    )
    lora = LoraConfig(
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise ConfigError(f"trainer.lora_target_modules={names!r}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Several processes: each generates for its share of the tasks; these keep them in step.


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


def _pad_rows(rows: list[torch.Tensor], width: int, fill: float) -> torch.Tensor:
    out = torch.full((len(rows), width), fill)  # [n, C]
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _pad_batch(
    samples: list[Sample], device: torch.device, anchors: list[torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion ids; completion-aligned targets, anchor log-probs, mask."""
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
    if anchors is None:
        anchors = [torch.tensor(s.logprobs) for s in samples]
    return {
        "input_ids": input_ids.to(device),
        "attention": attention.to(device),
        "prompt_len": torch.tensor([len(s.prompt_ids) for s in samples], device=device),  # [n]
        "offsets": torch.arange(comp_len, device=device).unsqueeze(0),  # [1, C]
        "targets": targets.to(device),
        "old_logp": _pad_rows(anchors, comp_len, 0.0).to(device),  # [n, C]
    }
