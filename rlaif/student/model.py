"""The student: load a causal LM, turn tasks into prompts, sample G completions per task.

Loading accepts a local `save_pretrained` folder, a `.gguf` file (dequantised on load), or a
Hugging Face hub id. Generation is batched across tasks (left padding) and records the
log-prob of every sampled token at the sampling temperature, which the loss later uses as the
"old" policy's log-probs. It takes no lock and touches no event loop: callers run it in a worker
thread.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlaif.config import StudentConfig
from rlaif.student.extract import code_for_task
from rlaif.types import Sample, Task

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
    """The dtype the weights are held in. `auto`: float32 on every device.

    The weights are the optimizer's master copy: at a learning rate of 5e-6 most updates to a
    bf16 weight round away to nothing (bf16 keeps 8 bits of mantissa, so a weight moves only
    when the step exceeds about 1/256 of its size). Speed comes from computing under autocast
    instead (`pick_autocast`), which keeps fp32 weights and optimizer state.
    """
    if requested != "auto":
        return getattr(torch, requested)
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
    """Token ids of a prompt, with a BOS only where the tokenizer itself adds one.

    A chat template already carries any BOS it needs. Qwen's tokenizer adds none (its official
    config has no BOS at all), and a GGUF-loaded one still names `<|endoftext|>` as its BOS
    while adding none: prepending it would show the model a token it never saw in front of a
    prompt. So the tokenizer's own behaviour (what it puts in front of text) decides.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is None or (tokenizer.bos_token and text.startswith(tokenizer.bos_token)):
        return ids
    # What the tokenizer puts in front of a plain "a" (an empty string would also show an EOS
    # that some tokenizers append, which may share the BOS's id).
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    adds_bos = with_specials[:1] == [bos] and plain[:1] != [bos]
    return [bos, *ids] if adds_bos else ids


def sample_tokens(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos_ids: list[int],
    pad_id: int,
    before_step: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `max_new_tokens` tokens per row of a left-padded batch.

    Returns ([N, T] tokens, [N, T] log p of each at temperature T); rows that ended (EOS) are
    padded with `pad_id` after their EOS. The loop is ours rather than `model.generate` for
    three reasons:
    - the distribution sampled is exactly softmax(logits / T) (cut to the nucleus when
      `top_p < 1`): nothing is inherited from the model's `generation_config` (hub Qwen instruct
      models ship repetition_penalty, top_k and top_p there), so the recorded log-probs are
      those the trainer recomputes;
    - `before_step` runs before every forward pass, in this thread, so the caller can re-decide
      torch's thread count between decode steps (`rollout.ThreadPolicy`);
    - `stop` is polled after every token: a run that is stopping drops the batch at once.
    """
    n = input_ids.shape[0]
    device = input_ids.device
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # [N, P]: left padding shifts nothing
    eos = torch.tensor(eos_ids, device=device)
    ended = torch.zeros(n, dtype=torch.bool, device=device)  # [N]
    tokens, logprobs = [], []
    cache, cache_arg = None, _cache_argument(model)
    step_ids, step_positions = input_ids, positions
    for _ in range(max_new_tokens):
        if before_step is not None:
            before_step()
        out = model(
            input_ids=step_ids,
            attention_mask=attention,
            position_ids=step_positions,
            use_cache=True,
            logits_to_keep=1,  # the LM head over the whole prompt would be wasted work
            **{cache_arg: cache},
        )
        cache = out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1].float() / temperature, dim=-1)  # [N, V]
        probs = _nucleus(logp.exp(), top_p)  # [N, V]
        token = torch.multinomial(probs, 1).squeeze(1)  # [N]
        token = torch.where(ended, torch.full_like(token, pad_id), token)
        tokens.append(token)
        logprobs.append(logp.gather(1, token.unsqueeze(1)).squeeze(1))  # [N]
        ended |= torch.isin(token, eos)
        if bool(ended.all()) or (stop is not None and stop()):
            break
        step_ids = token.unsqueeze(1)  # [N, 1]
        step_positions = step_positions[:, -1:] + 1  # [N, 1]
        attention = torch.cat([attention, attention.new_ones(n, 1)], dim=1)  # [N, P + t]
    if not tokens:
        empty = input_ids.new_zeros(n, 0)
        return empty, empty.float()
    return torch.stack(tokens, dim=1), torch.stack(logprobs, dim=1)


def _cache_argument(model: torch.nn.Module) -> str:
    """The forward argument that takes the KV cache: `cache` from transformers 5.x (which warns
    on the old name), `past_key_values` before. A peft wrapper forwards either."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """`probs` ([N, V]) with everything outside the smallest set of mass >= top_p zeroed (the
    most likely token always stays). top_p = 1 returns `probs` unchanged."""
    if top_p >= 1.0:
        return probs
    ordered, order = probs.sort(dim=-1, descending=True)  # [N, V]
    before = ordered.cumsum(-1) - ordered  # mass of the tokens ranked above each one
    ordered = ordered.masked_fill(before >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, ordered)


@dataclass
class Generator:
    """Samples completions with a fixed model and tokenizer; one call per chunk of tasks.

    `stop_requested`, when given, is polled after every token: once it returns True the call
    returns early with cut-short samples, which the caller must drop. `precision` is the autocast
    context forward passes run under (`autocast_context`); one context spans the whole call, so
    fp32 weights are cast to bf16 once per call, not once per token (autocast caches the casts
    of trainable weights until its outermost context exits).
    """

    model: torch.nn.Module
    tokenizer: object
    config: StudentConfig
    stop_requested: Callable[[], bool] | None = None
    precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @torch.no_grad()
    def generate(
        self,
        tasks: list[Task],
        group_size: int,
        policy_version: int,
        before_step: Callable[[], None] | None = None,
    ) -> list[list[Sample]]:
        """`group_size` samples for each task, in one batched call; one list per task.

        `before_step` runs before each forward pass (see `sample_tokens`)."""
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
        eos_ids = _eos_ids(self.model, tok)
        with self.precision():
            generated, logprobs = sample_tokens(
                self.model,
                input_ids,
                attention,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                eos_ids=eos_ids,
                pad_id=pad,
                before_step=before_step,
                stop=self.stop_requested,
            )  # [N, T] each
        eos = set(eos_ids)
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
