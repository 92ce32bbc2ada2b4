"""The update: log-probs of the sampled tokens, the clipped loss with a KL penalty, one AdamW step.

The policy and its optimizer go through Accelerate (`prepare`, `backward`, `clip_grad_norm_`), so
the same code runs on CPU, one GPU or Apple MPS. The reference is a frozen copy of the starting
weights on the same device. Both stay in eval mode: dropout would make the policy's log-probs
differ from the sampler's for no benefit.

Departures from the textbook: log-probs are taken at the sampling temperature (the distribution
the tokens were actually drawn from), and the loss is averaged over all completion tokens of the
batch (not per sequence), so long and short answers weigh by their tokens.
"""

from __future__ import annotations

import copy

import torch
from accelerate import Accelerator

from .algo import clipped_policy_loss
from .config import Config
from .types import Sample


def make_accelerator(device: torch.device) -> Accelerator:
    """One Accelerator per process; `cpu=True` keeps it off a GPU the user did not ask for."""
    return Accelerator(cpu=device.type == "cpu")


class Trainer:
    def __init__(self, model: torch.nn.Module, config: Config, accelerator: Accelerator):
        if accelerator.num_processes > 1:
            # Each process would sample and score the same tasks and write the same files.
            raise NotImplementedError(
                "multi-process training (accelerate launch --num_processes > 1) is not "
                "supported yet; launch with one process"
            )
        self.config = config
        self.accelerator = accelerator
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.reference.to(accelerator.device)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.trainer.learning_rate,
            weight_decay=config.trainer.weight_decay,
        )
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.model.eval()
        self.version = 0  # updates applied so far; samples carry the version that made them

    @property
    def policy(self) -> torch.nn.Module:
        """The bare policy model, for generation and saving."""
        return self.accelerator.unwrap_model(self.model)

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue exactly: optimizer moments and the version.

        The weights are not here: the checkpoint saves them with `save_pretrained`.
        """
        return {"optimizer": self.optimizer.state_dict(), "version": self.version}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])

    def update(self, samples: list[Sample], advantages: list[float]) -> dict[str, float]:
        """One optimizer step over `samples`, in micro-batches whose gradients accumulate."""
        cfg, acc = self.config, self.accelerator
        batch_tokens = sum(len(s.completion_ids) for s in samples)
        size = cfg.trainer.micro_batch_size
        totals = dict(pg=0.0, kl=0.0, kl_max=0.0, clipped=0.0, ratio_max=0.0)
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size]
            batch = _pad_batch(chunk, acc.device)
            adv = torch.tensor(advantages[start : start + size], device=acc.device)  # [n]
            logp = self._completion_logprobs(self.model, batch)  # [n, C]
            with torch.no_grad():
                ref_logp = self._completion_logprobs(self.reference, batch)  # [n, C]
            parts = clipped_policy_loss(
                logp,
                batch["old_logp"],
                ref_logp,
                adv,
                batch["mask"],
                clip_eps=cfg.trainer.clip_eps,
                kl_coef=cfg.kl.coef,
                estimator=cfg.kl.estimator,
                batch_tokens=batch_tokens,
            )
            acc.backward(parts.loss)
            totals["pg"] += parts.pg_sum.item()
            totals["kl"] += parts.kl_sum.item()
            totals["clipped"] += parts.clipped.item()
            totals["kl_max"] = max(totals["kl_max"], parts.kl_max.item())
            totals["ratio_max"] = max(totals["ratio_max"], parts.ratio_max.item())
        grad_norm = self._clip_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        kl = totals["kl"] / batch_tokens
        return {
            "policy_loss": totals["pg"] / batch_tokens,
            "kl": kl,
            "kl_max": totals["kl_max"],
            "kl_coef": cfg.kl.coef,
            "loss": totals["pg"] / batch_tokens + cfg.kl.coef * kl,
            "grad_norm": grad_norm,
            "clip_frac": totals["clipped"] / batch_tokens,
            "ratio_max": totals["ratio_max"],
            "completion_tokens": batch_tokens,
        }

    def _clip_gradients(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.config.trainer.max_grad_norm
        if max_norm > 0:
            return float(self.accelerator.clip_grad_norm_(params, max_norm))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))

    def _completion_logprobs(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """log p(token) of each completion token at the sampling temperature: [n, C]."""
        # Row i's completion token j sits at position P_i + j; it is predicted at P_i + j - 1.
        # Logits are computed only from the earliest such position on: the LM head over the
        # prompt would cost a fifth of a small model's forward pass for nothing.
        length = batch["input_ids"].shape[1]
        keep = length - int(batch["prompt_len"].min()) + 1
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention"], logits_to_keep=keep
        ).logits  # [n, keep, V]
        rows = torch.arange(logits.shape[0], device=logits.device).unsqueeze(1)  # [n, 1]
        predicted_at = batch["prompt_len"].unsqueeze(1) - 1 + batch["offsets"] - (length - keep)
        predicted_at = predicted_at.clamp(max=keep - 1)  # [n, C]; padding slots point anywhere
        picked = logits[rows, predicted_at].float() / self.config.student.temperature  # [n, C, V]
        logp = torch.log_softmax(picked, dim=-1)  # [n, C, V]
        return logp.gather(2, batch["targets"].unsqueeze(2)).squeeze(2)  # [n, C]


def _pad_batch(samples: list[Sample], device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded prompt+completion ids; completion-aligned targets, old log-probs and mask."""
    n = len(samples)
    seq_len = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
    comp_len = max(len(s.completion_ids) for s in samples)
    input_ids = torch.zeros(n, seq_len, dtype=torch.long)  # [n, L]; pad id is masked out anyway
    attention = torch.zeros(n, seq_len, dtype=torch.long)  # [n, L]
    targets = torch.zeros(n, comp_len, dtype=torch.long)  # [n, C]
    old_logp = torch.zeros(n, comp_len)  # [n, C]
    mask = torch.zeros(n, comp_len)  # [n, C]
    for i, s in enumerate(samples):
        ids = s.prompt_ids + s.completion_ids
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        c = len(s.completion_ids)
        targets[i, :c] = torch.tensor(s.completion_ids)
        old_logp[i, :c] = torch.tensor(s.logprobs)
        mask[i, :c] = 1
    return {
        "input_ids": input_ids.to(device),
        "attention": attention.to(device),
        "prompt_len": torch.tensor([len(s.prompt_ids) for s in samples], device=device),  # [n]
        "offsets": torch.arange(comp_len, device=device).unsqueeze(0),  # [1, C]
        "targets": targets.to(device),
        "old_logp": old_logp.to(device),
        "mask": mask.to(device),
    }
