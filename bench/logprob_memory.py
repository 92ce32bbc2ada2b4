"""Peak memory of the trainer's log-probs with Qwen's vocabulary: the textbook formula vs chunked.

One gradient pass of `Trainer._completion_logprobs` (log-probs of the taken tokens and the
entropy, which the trainer always logs), then backward, on a tiny random Llama whose vocabulary is
Qwen2.5's 151,936 tokens (hidden size 64, 1 layer: the logits dominate, as the issue's estimate
assumes), micro-batch 4, 64 prompt and 192 completion tokens, fp32, on the CPU. Each variant runs
in a fresh process; its peak is the rise of the process's maximum resident set size
(`getrusage`) over the gradient pass, after a warm-up on a short batch. The textbook variant is
the formula the trainer used before (a full-vocabulary log_softmax, gathered; entropy from it).

    python bench/logprob_memory.py            # both variants, one process each
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

VOCAB = 151_936  # Qwen2.5's
ROWS, PROMPT, COMPLETION = 4, 64, 192


def model_and_batch(rows: int, completion: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlaif.training.trainer import _pad_batch
    from rlaif.types import Sample, Task

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    task = Task("t", "p", "", "easy")
    ids = torch.randint(0, VOCAB, (rows, PROMPT + completion)).tolist()
    samples = [
        Sample(task, i, row[:PROMPT], row[PROMPT:], [0.0] * completion, "", "", 0, True)
        for i, row in enumerate(ids)
    ]
    return model, _pad_batch(samples, torch.device("cpu"))


def textbook(owner, model, batch, *, entropy: bool, grad_entropy: bool = False):
    """The trainer's formula before the chunked one (kept here as the baseline)."""
    length = batch["input_ids"].shape[1]
    keep = length - int(batch["prompt_len"].min()) + 1
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention"], logits_to_keep=keep
    ).logits  # [n, keep, V]
    rows = torch.arange(logits.shape[0]).unsqueeze(1)  # [n, 1]
    at = batch["prompt_len"].unsqueeze(1) - 1 + batch["offsets"] - (length - keep)
    at = at.clamp(max=keep - 1)  # [n, C]
    picked = logits[rows, at].float() / owner.config.student.temperature  # [n, C, V]
    logp_all = torch.log_softmax(picked, dim=-1)  # [n, C, V]
    logp = logp_all.gather(2, batch["targets"].unsqueeze(2)).squeeze(2)  # [n, C]
    with torch.set_grad_enabled(grad_entropy and torch.is_grad_enabled()):
        ent = -(logp_all.exp() * logp_all).sum(-1)  # [n, C]
    return logp, ent


def measure(variant: str) -> dict:
    """In this process: the rise of max RSS over one gradient pass of `variant`."""
    from contextlib import nullcontext

    from rlaif.training.trainer import Trainer

    torch.set_num_threads(1)
    owner = SimpleNamespace(
        autocast=nullcontext, config=SimpleNamespace(student=SimpleNamespace(temperature=0.8))
    )
    compute = textbook if variant == "textbook" else Trainer._completion_logprobs
    model, warm = model_and_batch(1, 8)
    logp, _ = compute(owner, model, warm, entropy=True)  # warm-up: kernels, allocator
    logp.sum().backward()
    model.zero_grad(set_to_none=True)
    _, batch = model_and_batch(ROWS, COMPLETION)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.perf_counter()
    logp, ent = compute(owner, model, batch, entropy=True)
    (logp.sum() + 0.0 * ent.sum()).backward()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    logits_mib = ROWS * (COMPLETION + 1) * VOCAB * 4 / 2**20
    return {
        "variant": variant,
        "peak_rise_mib": round((after - before) / 1024),
        "one_logits_copy_mib": round(logits_mib),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    for variant in ("textbook", "chunked"):
        done = subprocess.run(
            [sys.executable, __file__, "--one", variant], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
