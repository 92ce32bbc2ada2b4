"""The student: load a causal LM, turn tasks into prompts, sample G completions per task.

Loading accepts a local `save_pretrained` folder, a `.gguf` file (dequantised on load), or a
Hugging Face hub id. Generation is batched across tasks (left padding) and records the
log-prob of every sampled token at the sampling temperature, which the loss later uses as the
"old" policy's log-probs. It takes no lock and touches no event loop: callers run it in a worker
thread.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from .config import StudentConfig
from .extract import code_for_task
from .types import Sample, Task

TASK_SUFFIX = (
    "Write the complete Rust function (and any type it needs). Do not write tests or main."
)


class StudentLoadError(RuntimeError):
    """The student model could not be loaded; the message says how to get it."""


def pick_device(requested: str) -> torch.device:
    """`auto`: cuda, then mps, then cpu. An explicit choice that is not available is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise StudentLoadError("student.device=cuda but torch sees no CUDA device")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise StudentLoadError("student.device=mps but torch sees no Apple MPS device")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on CUDA; fp32 on MPS (fp16 training there overflows) and on CPU."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_student(config: StudentConfig, device: torch.device, dtype: torch.dtype):
    """(model, tokenizer) from a folder, a .gguf file or a hub id; the model is in eval mode."""
    source, extra = resolve_source(config.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError) as exc:
        raise StudentLoadError(f"cannot load student.model={config.model!r}: {exc}") from exc
    if "gguf_file" in extra:
        model = dequantized_copy(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, tokenizer


def resolve_source(model: str) -> tuple[str, dict]:
    """(what from_pretrained takes, extra kwargs); raises at once for a local path that is missing.

    A value is a local path when it exists, ends in .gguf, starts with . / or ~, or is the
    default offline student's folder; anything else ("Org/Name") is a hub id.
    """
    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise StudentLoadError(f"student.model={model!r}: no such .gguf file")
        return str(path.parent), {"gguf_file": path.name}
    if path.exists():
        return str(path), {}
    if model == StudentConfig.model:
        raise StudentLoadError(
            f"student.model={model!r}: the offline default student is not built yet. "
            "Run `make student` to build it."
        )
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise StudentLoadError(f"student.model={model!r}: no such directory")
    return model, {}


def dequantized_copy(model):
    """A plain copy of a GGUF-loaded model: `save_pretrained` refuses one that still carries the
    GGUF quantization config, so rebuild from the config and load the (dequantised) weights."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict())
    return plain


def prompt_messages(task: Task, config: StudentConfig) -> list[dict[str, str]]:
    """The chat the student is shown for a task: the system prompt, if any, and the request."""
    request = f"{task.prompt.strip()}\n\n{TASK_SUFFIX}"
    messages = [{"role": "user", "content": request}]
    if config.system_prompt:
        messages.insert(0, {"role": "system", "content": config.system_prompt})
    return messages


def prompt_text(task: Task, tokenizer, config: StudentConfig) -> str:
    """The student's view of a task: its prompt (never its tests), chat-formatted if possible."""
    messages = prompt_messages(task, config)
    if config.use_chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"// Task: {messages[-1]['content']}\n```rust\n"


def encode_prompt(text: str, tokenizer) -> list[int]:
    """Token ids of a prompt; a chat template already carries any BOS it needs."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and not text.startswith(tokenizer.bos_token or "\0"):
        ids = [tokenizer.bos_token_id, *ids]
    return ids


class _SampledLogprobs(LogitsProcessor):
    """Records log p(token) of each sampled token at temperature T, as sampling goes.

    A processor sees step t's logits before sampling and step t+1's input (which ends with the
    token sampled at t), so it gathers one step late; `finish` gathers the last step. It runs
    before generate's own temperature warper, so it applies T itself.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.pending: torch.Tensor | None = None  # [N, V] log-softmax of the last step
        self.recorded: list[torch.Tensor] = []  # each [N]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            self.recorded.append(self.pending.gather(1, input_ids[:, -1:]).squeeze(1))
        self.pending = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, generated: torch.Tensor) -> torch.Tensor:
        """[N, T] log-probs aligned with `generated` ([N, T] sampled tokens)."""
        steps = generated.shape[1]
        if self.pending is not None and len(self.recorded) < steps:
            last = generated[:, len(self.recorded) : len(self.recorded) + 1]
            self.recorded.append(self.pending.gather(1, last).squeeze(1))
        return torch.stack(self.recorded[:steps], dim=1)


class _StopWhen(StoppingCriteria):
    """Ends every sequence at the next token once `stop()` says so (a run that was asked to stop
    drops the batch, so it need not wait for a long generation to finish)."""

    def __init__(self, stop: Callable[[], bool]):
        self.stop = stop

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.stop(), dtype=torch.bool, device=input_ids.device
        )


@dataclass
class Generator:
    """Samples completions with a fixed model and tokenizer; one call per chunk of tasks.

    `stop_requested`, when given, is polled after every token: once it returns True the call
    returns early with cut-short samples, which the caller must drop.
    """

    model: torch.nn.Module
    tokenizer: object
    config: StudentConfig
    stop_requested: Callable[[], bool] | None = None

    @torch.no_grad()
    def generate(
        self, tasks: list[Task], group_size: int, policy_version: int
    ) -> list[list[Sample]]:
        """`group_size` samples for each task, in one batched call; one list per task."""
        tok = self.tokenizer
        prompts = [encode_prompt(prompt_text(t, tok, self.config), tok) for t in tasks]
        rows = [ids for ids in prompts for _ in range(group_size)]
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        attention = torch.tensor(
            [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device
        )
        recorder = _SampledLogprobs(self.config.temperature)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            do_sample=True,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            top_k=0,
            max_new_tokens=self.config.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=_eos_ids(self.model, tok),
            logits_processor=LogitsProcessorList([recorder]),
            stopping_criteria=StoppingCriteriaList(
                [_StopWhen(self.stop_requested)] if self.stop_requested else []
            ),
        )
        generated = output[:, width:]  # [N, T]
        logprobs = recorder.finish(generated)  # [N, T]
        eos = set(_eos_ids(self.model, tok))
        groups: list[list[Sample]] = [[] for _ in tasks]
        for row in range(len(rows)):
            task_index, sample_index = divmod(row, group_size)
            ids = generated[row].tolist()
            end = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
            completion_ids = ids if end is None else ids[:end]
            text = tok.decode(completion_ids, skip_special_tokens=True)
            groups[task_index].append(
                Sample(
                    task=tasks[task_index],
                    index=sample_index,
                    prompt_ids=prompts[task_index],
                    completion_ids=completion_ids,
                    logprobs=logprobs[row, : len(completion_ids)].tolist(),
                    completion=text,
                    code=code_for_task(tasks[task_index], text),
                    policy_version=policy_version,
                    finished=end is not None,
                )
            )
        return groups


def _eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a reply: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write a `save_pretrained` folder (fp32 weights and tokenizer) from a .gguf file, so later
    loads take under a second instead of dequantising again (about 35 s for SmolLM2-135M)."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    extra = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **extra)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), dtype=torch.float32, **extra
    )
    model = dequantized_copy(model)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.replace(out_dir)  # a half-written folder never looks finished
    return out_dir
