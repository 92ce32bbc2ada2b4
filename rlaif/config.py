"""The run's configuration: frozen, typed sections loaded from YAML and checked before use.

`load(path, overrides)` reads a YAML file, applies `--set section.key=value` overrides, and checks
every key against the dataclasses below: unknown keys, wrong types, out-of-range values and
inconsistent combinations are all collected into one `ConfigError` whose lines name the file, the
line and the key path, so a user fixes every problem in one go and no model is loaded before that.

Each field carries its help text in `metadata["help"]`; the configuration reference
(docs/configuration.md) is generated from it (`make docs`), so the two cannot drift apart.

API keys never live in the config: the teacher section names the environment variable to read.

Long: this module is the schema of every key (type, default, bounds and the help text that
`config-doc` prints); one section per class, in the order of the YAML. Split across files, the
reference would still be one table, and finding a key would take a search.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message lists every problem, one per line."""


def _opt(default: Any, help: str, *, min: float | None = None, max: float | None = None) -> Any:
    """A dataclass field with its help text and an optional inclusive numeric range."""
    return field(default=default, metadata={"help": help, "min": min, "max": max})


@dataclass(frozen=True)
class RunConfig:
    name: str | None = _opt(None, "Run directory name under `output_dir`; null uses a timestamp.")
    output_dir: str = _opt("runs", "Where run directories are created.")
    seed: int = _opt(0, "Seed for task order, sampling and initialisation.", min=0)
    max_blind_steps: int = _opt(
        3,
        "Stop the run, before the update and with no checkpoint of those steps, after this many "
        "steps in a row in which no rustc job got a verdict (every one a sandbox failure: the "
        "rewards are unknown and the update would follow the KL term alone), or no sample got a "
        "verdict from a required teacher; 0 never stops.",
        min=0,
    )


@dataclass(frozen=True)
class StudentConfig:
    model: str = _opt(
        "models/qwen2.5-coder-0.5b",
        "The student: a local `save_pretrained` folder, a `.gguf` file, or a Hugging Face hub id.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = _opt(
        "auto", "`auto` picks cuda, then mps, then cpu."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _opt(
        "auto",
        "The weights' dtype (the optimizer's master copy). `auto`: float32 everywhere; "
        "speed comes from `autocast`.",
    )
    autocast: Literal["auto", "bf16", "fp32"] = _opt(
        "auto",
        "What forward passes compute in (generation and the update). `auto`: bf16 on CUDA and "
        "on CPUs with bf16 matrix hardware (AMX, AVX512-BF16), fp32 elsewhere (MPS, other CPUs); "
        "`fp32`: no autocast.",
    )
    use_chat_template: bool = _opt(
        True,
        "Wrap the task in the tokenizer's chat template when it has one (plain text otherwise).",
    )
    system_prompt: str | None = _opt(
        "You are an expert Rust programmer. Answer with one ```rust code block and nothing else.",
        "System message for chat models; null for none.",
    )
    max_new_tokens: int = _opt(192, "Tokens generated per completion at most.", min=1)
    temperature: float = _opt(
        0.8, "Sampling temperature (> 0); log-probs are taken at it too.", min=0.01
    )
    top_p: float = _opt(
        1.0, "Nucleus sampling; 1.0 keeps the recorded log-probs exact.", min=0.01, max=1.0
    )
    generate_batch_size: int = _opt(
        8,
        "Sequences per generate call; whole groups only, so a task's samples stay together.",
        min=1,
    )


@dataclass(frozen=True)
class TeacherConfig:
    provider: Literal["none", "anthropic", "openai", "openai-compatible", "llama-cpp"] = _opt(
        "anthropic",
        "Which API judges the code; `llama-cpp`: a local llama.cpp server the run starts and "
        "stops itself (teacher.gguf; no key); `none` trains on compiler rewards alone.",
    )
    model: str = _opt("claude-haiku-4-5", "The teacher model's name at that provider.")
    api_key_env: str = _opt(
        "ANTHROPIC_API_KEY", "Environment variable holding the API key (the key is never stored)."
    )
    base_url: str | None = _opt(
        None, "API base URL: required for `openai-compatible` (ends in /v1), optional otherwise."
    )
    required: bool = _opt(
        False,
        "Stop before loading any model when the key is missing (otherwise the teacher is off).",
    )
    gguf: str = _opt(
        "qwen2.5-coder-1.5b",
        "llama-cpp: the model the local server serves, a GGUF file or the name of an offline "
        "model (`python -m rlaif student list`; assembled into cache/models on first use).",
    )
    server_threads: int = _opt(
        0,
        "llama-cpp: CPU threads of the local server (0: half the cores, at least 1); the "
        "student's torch threads leave it these cores while it answers.",
        min=0,
    )
    context_tokens: int = _opt(4096, "llama-cpp: the local server's context size.", min=512)
    server_start_timeout_s: float = _opt(
        180.0, "llama-cpp: how long the local server may take to load and answer.", min=1.0
    )
    timeout_s: float = _opt(60.0, "Per-request timeout in seconds.", min=0.1)
    max_tokens: int = _opt(300, "Tokens the teacher may write per verdict.", min=16)
    concurrency: int = _opt(4, "Teacher requests in flight at once.", min=1)
    requests_per_minute: float = _opt(
        50.0, "Requests started per minute at most (a token bucket); 0: no limit.", min=0.0
    )
    tokens_per_minute: float = _opt(
        40000.0,
        "Input + output tokens per minute at most (estimated before sending, corrected with the "
        "reported usage); 0: no limit.",
        min=0.0,
    )
    burst: int = _opt(
        4,
        "Requests that may start at once after an idle spell (the buckets' capacity); any 60 s "
        "window sees at most requests_per_minute + burst.",
        min=1,
    )
    max_attempts: int = _opt(
        5, "Tries per verdict; 429, 5xx, timeouts and dropped connections are retried.", min=1
    )
    backoff_initial_s: float = _opt(
        1.0, "First retry waits up to this long (exponential backoff, full jitter).", min=0.0
    )
    backoff_max_s: float = _opt(30.0, "Longest wait between two tries.", min=0.0)
    retry_after_max_s: float = _opt(
        60.0, "A server's Retry-After is obeyed up to this many seconds.", min=0.0
    )
    breaker_failures: int = _opt(
        5,
        "Consecutive failed requests (connection errors, timeouts, 5xx) that open the circuit: "
        "requests are then refused at once (abstention `unavailable`) instead of retried.",
        min=1,
    )
    breaker_cooldown_s: float = _opt(
        30.0, "How long an open circuit refuses requests before one probe.", min=0.0
    )
    max_requests: int = _opt(0, "Requests the run may send (retries included); 0: no limit.", min=0)
    max_dollars: float = _opt(
        0.0,
        "Dollars the run may spend, from reported token usage and prices; 0: no limit.",
        min=0.0,
    )
    input_price_per_mtok: float | None = _opt(
        None,
        "USD per million input tokens; null: the built-in price of `model` "
        "(rlaif.judges.teacher.spend).",
        min=0.0,
    )
    output_price_per_mtok: float | None = _opt(
        None, "USD per million output tokens; null: the built-in price of `model`.", min=0.0
    )
    on_budget: Literal["continue", "stop"] = _opt(
        "continue",
        "When the budget is spent: `continue` trains on (later samples abstain, reason budget) "
        "or `stop` ends the run cleanly after the step in flight.",
    )
    only_compiled: bool = _opt(
        True, "Send only code that compiles; the rest gets no teacher term (rustc judged it)."
    )
    show_rustc: bool = _opt(
        True, "Show the teacher what rustc said (compiles, errors, hidden tests passed)."
    )
    weight_correctness: float = _opt(0.3, "Rubric weight of correctness.", min=0.0)
    weight_quality: float = _opt(0.2, "Rubric weight of quality.", min=0.0)
    weight_idiomaticity: float = _opt(
        0.1, "Rubric weight of idiomaticity (carved out of the seed's quality 0.3).", min=0.0
    )
    weight_efficiency: float = _opt(0.2, "Rubric weight of efficiency.", min=0.0)
    weight_documentation: float = _opt(0.2, "Rubric weight of documentation.", min=0.0)


@dataclass(frozen=True)
class RewardsConfig:
    """Weights of the reward terms; defaults follow the nanochat-rl seed (REFERENCE.md)."""

    parse: float = _opt(8.0, "Added when the code parses as Rust.")
    compile: float = _opt(
        10.0,
        "Added when the code type-checks and builds with the task's tests (it defines what they "
        "call, with the right signatures); replies that restate the task's struct and stop do not.",
    )
    no_errors: float = _opt(5.0, "Added when rustc reports no errors.")
    per_error: float = _opt(-2.0, "Added per rustc error (summary lines not counted).")
    max_errors: int = _opt(10, "Errors counted at most, so one broken file cannot dominate.", min=0)
    no_warnings: float = _opt(1.0, "Added when rustc reports no warnings (only when it compiles).")
    per_warning: float = _opt(-0.5, "Added per rustc warning.")
    tests_passed: float = _opt(10.0, "Times the fraction of the task's hidden tests that pass.")
    all_tests_pass: float = _opt(5.0, "Bonus when every hidden test passes.")
    clippy_clean: float = _opt(1.0, "Added when clippy ran and found no lint.")
    per_clippy_lint: float = _opt(-0.25, "Added per clippy lint.")
    max_clippy_lints: int = _opt(8, "Clippy lints counted at most.", min=0)
    per_unused_variable: float = _opt(
        -3.0,
        "Added per unused variable (rustc's `unused_variables`) in code that compiles: a body "
        "that ignores its parameters (`Some(50)`) is a stub, not an attempt.",
    )
    ast_gate: Literal["tests", "compile", "parse", "always"] = _opt(
        "tests",
        "When the syntax-tree terms (structure, quality, idioms, complexity) count: `tests` once a "
        "hidden test passes (compiling, for a task without tests) and no variable is unused, so "
        "neither text that never type-checks nor a compiling stub earns them (reward hacking); "
        "`compile` for any code that type-checks.",
    )
    structure: float = _opt(2.0, "Times the structure sum (functions, structs, enums, traits).")
    structure_fn: float = _opt(0.5, "Per function, at most 2 in the structure sum.")
    structure_struct: float = _opt(0.3, "Per struct, at most 1 in the structure sum.")
    structure_enum: float = _opt(0.3, "Per enum, at most 1 in the structure sum.")
    structure_trait: float = _opt(0.5, "Per trait, at most 1 in the structure sum.")
    quality: float = _opt(3.0, "Times the quality sum (Result, Option, docs, ?, unsafe, panics).")
    quality_result: float = _opt(1.0, "In the quality sum when the code uses Result.")
    quality_option: float = _opt(0.5, "In the quality sum when the code uses Option.")
    quality_docs: float = _opt(0.5, "Times the fraction of items with a doc comment.")
    quality_question_mark: float = _opt(0.5, "In the quality sum when the code uses `?`.")
    quality_unsafe: float = _opt(-1.0, "In the quality sum when the code uses `unsafe`.")
    quality_per_panic: float = _opt(
        -2.0, "Per unwrap, expect (method calls too), panic!, todo!, unimplemented!, unreachable!."
    )
    quality_floor: float = _opt(
        -2.0,
        "Lowest quality sum (before scaling), so panics cannot push compiling code below code "
        "that fails to compile.",
    )
    idioms: float = _opt(2.0, "Times the idioms sum (each idiom counts once when present).")
    idiom_iterators: float = _opt(1.0, "Iterator methods (iter, map, filter, collect, ...).")
    idiom_match: float = _opt(0.8, "A match expression.")
    idiom_destructuring: float = _opt(0.5, "A tuple, struct or slice pattern.")
    idiom_closures: float = _opt(0.7, "A closure.")
    idiom_method_chains: float = _opt(0.6, "Two or more method calls in a row.")
    idiom_turbofish: float = _opt(0.3, "A turbofish (`collect::<Vec<_>>()`).")
    complexity: float = _opt(
        -1.0,
        "Times (cc - complexity_threshold) / 10 for the largest cyclomatic complexity cc above "
        "the threshold (seed: 0.5 x 2).",
    )
    complexity_threshold: int = _opt(10, "Cyclomatic complexity that costs nothing.", min=1)
    teacher: float = _opt(10.0, "Times the teacher's score in [0, 1].")


@dataclass(frozen=True)
class RustConfig:
    rustc: str = _opt("rustc", "The rustc to run (a name on PATH or a path).")
    edition: Literal["2015", "2018", "2021", "2024"] = _opt("2021", "Rust edition of the code.")
    timeout_s: float = _opt(10.0, "Wall-clock limit per rustc or test-binary process.", min=0.1)
    test_cpu_s: int = _opt(5, "CPU-seconds limit of a test binary.", min=1)
    test_memory_mb: int = _opt(1024, "Address-space limit of a test binary, in MiB.", min=64)
    test_processes: int = _opt(
        32, "Processes and threads a test binary may have at once (fork bombs stop here).", min=2
    )
    clippy: bool = _opt(
        True,
        "Lint with clippy-driver during the check (one process; skipped when the toolchain has "
        "no clippy).",
    )
    concurrency: int = _opt(0, "rustc jobs at once; 0 means cores - 1 (at least 1).", min=0)
    sandbox: Literal["auto", "namespaces", "seatbelt", "posix"] = _opt(
        "auto",
        "How rustc and test binaries are confined: `namespaces` (Linux as root: PID, mount and "
        "network namespaces, a uid per job), `seatbelt` (macOS sandbox-exec: no network, writes "
        "only in the job dir), `posix` (rlimits, session kill, scrubbed env only: the network is "
        "not cut); `auto` takes the strongest available. A level that is not available is an "
        "error; `doctor` and the run's first lines say what the level leaves uncovered.",
    )


@dataclass(frozen=True)
class TrainerConfig:
    max_steps: int = _opt(8, "Policy updates to run.", min=1)
    tasks_per_step: int = _opt(
        2, "Tasks (prompts) per step; with N processes, a multiple of N (whole groups each).", min=1
    )
    samples_per_prompt: int = _opt(4, "Completions per task (the group whitened together).", min=1)
    advantage_mode: Literal["std", "no_std", "rloo", "robust"] = _opt(
        "std",
        "Per-group baseline: `std` (r - mean) / (std + eps) as TRL; `no_std` r - mean (Dr. GRPO, "
        "pair with loss_aggregation: constant); `rloo` leave-one-out mean; `robust` "
        "tanh(z / 2.5) with z scaled by 1.4826 MAD (the RLAIF seed).",
    )
    whiten_eps: float = _opt(1e-4, "Added to a group's reward std before dividing.", min=0.0)
    batch_normalize: bool = _opt(
        False, "Also whiten advantages across the batch (groups with zero variance stay 0)."
    )
    learning_rate: float = _opt(5e-6, "AdamW peak learning rate.", min=0.0)
    lr_schedule: Literal["constant", "cosine"] = _opt(
        "cosine", "After warmup: keep the peak, or cosine-decay to min_lr_ratio at the last step."
    )
    warmup_steps: int = _opt(0, "Optimizer steps of linear warmup to the peak rate.", min=0)
    min_lr_ratio: float = _opt(
        0.1, "Cosine schedule's final rate as a fraction of the peak.", min=0.0, max=1.0
    )
    weight_decay: float = _opt(0.0, "AdamW weight decay.", min=0.0)
    max_grad_norm: float = _opt(1.0, "Gradient clipping norm; 0 disables clipping.", min=0.0)
    epochs: int = _opt(1, "Passes over each step's samples.", min=1)
    minibatches: int = _opt(
        1, "Optimizer steps per epoch: the step's samples split into this many minibatches.", min=1
    )
    micro_batch_size: int = _opt(
        4, "Sequences per forward/backward pass (gradients accumulate).", min=1
    )
    clip_eps_low: float = _opt(
        0.2, "PPO clip: the ratio's lower bound is 1 - clip_eps_low.", min=0.0, max=1.0
    )
    clip_eps_high: float = _opt(
        0.2, "PPO clip: the ratio's upper bound is 1 + clip_eps_high (DAPO uses 0.28).", min=0.0
    )
    loss_aggregation: Literal["token", "sequence", "constant"] = _opt(
        "token",
        "Average the loss over all completion tokens (`token`, DAPO), per sequence then over "
        "sequences (`sequence`, GRPO), or divide by sequences x max_new_tokens (`constant`, "
        "Dr. GRPO).",
    )
    is_cap: float = _opt(
        2.0,
        "Truncated importance sampling for samples from an older policy: weight "
        "min(exp(logp_trainer - logp_sampler), is_cap); 0 turns it off.",
        min=0.0,
    )
    entropy_coef: float = _opt(0.0, "Entropy bonus: subtracts coef x per-token entropy.", min=0.0)
    lora_r: int = _opt(0, "LoRA rank (needs `pip install peft`); 0 trains every weight.", min=0)
    lora_alpha: float = _opt(16.0, "LoRA scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float = _opt(
        0.0,
        "Dropout on the LoRA path during the update (it makes the ratio noisy).",
        min=0.0,
        max=1.0,
    )
    lora_target_modules: str = _opt(
        "all-linear", "Comma-separated module names to adapt (e.g. q_proj,v_proj) or all-linear."
    )


@dataclass(frozen=True)
class KLConfig:
    coef: float = _opt(
        0.05, "Initial KL penalty coefficient (beta) to the frozen reference.", min=0.0
    )
    estimator: Literal["k1", "k2", "k3"] = _opt(
        "k3", "Per-token KL estimator: k1, k2 or k3 (Schulman 2020; k3 is unbiased and >= 0)."
    )
    controller: Literal["fixed", "adaptive", "ema"] = _opt(
        "fixed",
        "How beta moves: `fixed`; `adaptive` (Ziegler 2019: beta *= 1 + clip(kl/target - 1, "
        "+-0.2) / horizon, once a step); `ema` (the RLAIF seed: beta *= exp(gain (kl_ema - "
        "target)), clamped to [0.01, 1]). Both need coef > 0.",
    )
    target: float = _opt(0.02, "KL per completion token the controllers aim at.", min=1e-9)
    horizon: float = _opt(
        10.0,
        "Adaptive controller's horizon, in training steps: beta moves by at most 20% / horizon "
        "a step (KL held at 2x target for 20 steps: beta x1.02^20 = x1.49). Ziegler's 10000 "
        "samples at 512 a batch are ~20 steps.",
        min=1.0,
    )
    gain: float = _opt(1.0, "EMA controller's gain on (kl_ema - target).", min=0.0)


@dataclass(frozen=True)
class CurriculumConfig:
    """Difficulty buckets and promotion; bucket thresholds follow the Python RLAIF seed."""

    shuffle: bool = _opt(
        True,
        "Break ties between equally often drawn tasks in a seeded random order (else file order).",
    )
    enabled: bool = _opt(
        True,
        "Draw from difficulty buckets, easiest first, moving on as the student succeeds; false "
        "draws from all tasks alike, each as often as the others.",
    )
    success: Literal["tests", "compiles", "reward"] = _opt(
        "compiles",
        "A sample's success, for pass rates: all hidden tests pass, the code compiles, or its "
        "reward reaches `reward_threshold`. `compiles`: a small student passes tests under 1% of "
        "the time, so a curriculum keyed on tests would never move.",
    )
    reward_threshold: float = _opt(
        23.0,
        "With success=reward: the least reward that counts (23 = parse + compile + no errors).",
    )
    task_ema: float = _opt(
        0.3,
        "Weight of a task's newest pass rate in its EMA; 0 keeps each task in its labelled bucket.",
        min=0.0,
        max=1.0,
    )
    hard_below: float = _opt(
        0.3, "A task whose pass-rate EMA is below this is in the hard bucket.", min=0.0, max=1.0
    )
    easy_from: float = _opt(
        0.7, "At or above this it is easy; in between, medium.", min=0.0, max=1.0
    )
    promote_at: float = _opt(
        0.5,
        "Move on to the next bucket when the success EMA of the current one reaches this.",
        min=0.0,
        max=1.0,
    )
    stage_ema: float = _opt(
        0.3, "Weight of the newest step in the current bucket's success EMA.", min=0.01, max=1.0
    )
    min_stage_steps: int = _opt(3, "Steps spent in a bucket before moving on.", min=1)
    review_share: float = _opt(
        0.25, "Share of each batch drawn from easier buckets once moved on.", min=0.0, max=1.0
    )
    max_replacements: int = _opt(
        0,
        "Dynamic sampling (DAPO): fresh task groups per step that may replace groups whose "
        "rewards are all equal (each costs a group's generation and scoring); 0 turns it off.",
        min=0,
    )


@dataclass(frozen=True)
class PipelineConfig:
    max_staleness: int = _opt(
        1,
        "Steps generation may run ahead of the update: 1 samples step k+1 while step k is scored "
        "(its samples are then one update old, corrected by trainer.is_cap); 0 is fully "
        "synchronous. Generation never runs ahead past a checkpoint step.",
        min=0,
    )
    torch_threads: int = _opt(
        0,
        "torch CPU threads, fixed. 0: re-decided before every decoded token and every layer's "
        "forward and backward pass of the update: the cores the rustc jobs (and a local teacher "
        "server while it answers) leave free at that moment (at least 1). A fixed count makes "
        "runs repeat bit for bit.",
        min=0,
    )


@dataclass(frozen=True)
class DataConfig:
    train: str = _opt("data/train.jsonl", "Training tasks (JSONL).")
    eval: str = _opt("data/eval.jsonl", "Held-out evaluation tasks (JSONL).")


@dataclass(frozen=True)
class CacheConfig:
    dir: str = _opt("cache", "Folder of the on-disk result caches (one subfolder per judge).")
    rust: bool = _opt(True, "Reuse rustc results for identical code, tests, toolchain and flags.")
    teacher: bool = _opt(
        True, "Reuse teacher verdicts for identical provider, model, rubric, task and code."
    )
    teacher_ttl_s: float | None = _opt(
        None, "Seconds a cached teacher verdict stays valid; null keeps it.", min=1.0
    )
    size_limit_mb: int = _opt(1024, "Size limit of each cache folder, in MiB.", min=1)


@dataclass(frozen=True)
class LoggingConfig:
    progress: bool = _opt(
        True, "Show a progress bar with ETA (a plain line per step when not a TTY)."
    )
    samples: bool = _opt(True, "Write every completion and its reward terms to samples.jsonl.")
    tensorboard: bool = _opt(
        False,
        "Also write TensorBoard event files to `runs/NAME/tensorboard`, with the namespaced "
        "names of metrics.jsonl (`reward/mean`, `rust/compile_rate`, ...; needs the `tensorboard` "
        "package: `pip install rlaif[tensorboard]`).",
    )


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = _opt(
        4,
        "Save a checkpoint every N steps, and always after the last step; 0 saves only after "
        "the last.",
        min=0,
    )
    keep: int = _opt(
        2, "Checkpoints kept on disk, the newest; older ones are deleted. 0 keeps all.", min=0
    )


@dataclass(frozen=True)
class EvalConfig:
    every: int = _opt(
        0,
        "Evaluate on data.eval every N training steps, into metrics.csv's eval_* columns "
        "(`eval/*` in metrics.jsonl); 0 never.",
        min=0,
    )
    samples: int = _opt(
        2, "Completions per task in that evaluation (pass@1 and pass@samples are logged).", min=1
    )
    max_tasks: int = _opt(
        0,
        "Use the first N tasks of data.eval, in the periodic evaluation and in `rlaif eval` "
        "(where --max-tasks overrides it); 0 uses all.",
        min=0,
    )


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    rust: RustConfig = field(default_factory=RustConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (what `save` writes); holds no secrets, only env-var names."""
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}


# ---------------------------------------------------------------------------------------------
# Loading


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read `path` (None: all defaults), apply `section.key=value` overrides, check everything.

    Raises ConfigError listing every problem, each with `file:line` or the `--set` it came from.
    """
    raw: dict[str, Any] = {}
    where: dict[str, str] = {}  # "section.key" -> "file:line" for messages
    label = str(path) if path is not None else "<defaults>"
    errors: list[str] = []
    if path is not None:
        raw, where = _read_yaml(Path(path), errors)
    for item in overrides:
        _apply_override(raw, where, item, errors)
    config = _build(raw, where, label, errors)
    if errors:
        head = f"{label}: {len(errors)} problem{'s' if len(errors) > 1 else ''} in the config:"
        raise ConfigError("\n".join([head, *("  " + e for e in errors)]))
    assert config is not None
    return config


def save(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (no secrets: keys are only named, never stored)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _read_yaml(path: Path, errors: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc}") from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {_kind(data)}")
    return data, _key_lines(node, path)


def _key_lines(node: yaml.Node, path: Path) -> dict[str, str]:
    """Map 'section' and 'section.key' to 'file:line' using the YAML node tree."""
    lines: dict[str, str] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        section = str(key_node.value)
        lines[section] = f"{path}:{key_node.start_mark.line + 1}"
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                lines[f"{section}.{sub_key.value}"] = f"{path}:{sub_key.start_mark.line + 1}"
    return lines


def _apply_override(
    raw: dict[str, Any], where: dict[str, str], item: str, errors: list[str]
) -> None:
    key, sep, text = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        errors.append(f"--set {item!r}: expected section.key=value, e.g. trainer.max_steps=3")
        return
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text  # a plain string such as 'a: b' that YAML would reject
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        errors.append(f"--set {item!r}: section {section!r} is not a mapping in the file")
        return
    target[name] = value
    where[f"{section}.{name}"] = f"--set {key.strip()}"
    where.setdefault(section, f"--set {key.strip()}")


def _build(
    raw: dict[str, Any], where: dict[str, str], label: str, errors: list[str]
) -> Config | None:
    sections: dict[str, Any] = {}
    for section, value in raw.items():
        at = where.get(str(section), label)
        if section not in SECTIONS:
            errors.append(f"{at}: {section}: unknown section (known: {', '.join(SECTIONS)})")
            continue
        if value is None:
            value = {}
        if not isinstance(value, dict):
            errors.append(f"{at}: {section}: expected a mapping of keys, got {_kind(value)}")
            continue
        sections[section] = _build_section(section, SECTIONS[section], value, where, label, errors)
    if errors:
        return None
    config = Config(**sections)
    for key, message in _cross_checks(config):
        errors.append(f"{where.get(key, label)}: {key}={_value_at(config, key)!r}: {message}")
    return None if errors else config


def _build_section(
    section: str,
    cls: type,
    values: dict[str, Any],
    where: dict[str, str],
    label: str,
    errors: list[str],
) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        at = where.get(key, label)
        if name not in fields:
            errors.append(f"{at}: {key}: unknown key (known: {', '.join(fields)})")
            continue
        problem, coerced = _check_value(value, hints[name], fields[name].metadata)
        if problem:
            errors.append(f"{at}: {key}={value!r}: {problem}")
        else:
            kwargs[name] = coerced
    return cls(**kwargs)


_YAML11_EXPONENT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _check_value(value: Any, hint: Any, meta: Any) -> tuple[str | None, Any]:
    """Return (problem, value): problem is None when `value` fits the type hint and range."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None, None
        (hint,) = [a for a in args if a is not type(None)]
        return _check_value(value, hint, meta)
    if origin is Literal:
        if str(value) in [str(a) for a in args] and not isinstance(value, bool):
            return None, str(value)
        return f"expected one of {', '.join(map(str, args))}", None
    if hint is bool:
        return (None, value) if isinstance(value, bool) else ("expected true or false", None)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {_kind(value)}", None
    elif hint is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string; users mean a number
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_kind(value)}", None
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            return f"expected a string, got {_kind(value)}", None
        return None, value
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        return f"must be at least {lo}", None
    if hi is not None and value > hi:
        return f"must be at most {hi}", None
    return None, value


def _cross_checks(c: Config) -> list[tuple[str, str]]:
    """Checks that involve more than one key; each names the key to change."""
    problems = []
    if c.trainer.samples_per_prompt < 2:
        problems.append(
            ("trainer.samples_per_prompt", "whitening needs at least 2 samples per prompt")
        )
    per_step = c.trainer.tasks_per_step * c.trainer.samples_per_prompt
    if c.trainer.minibatches > per_step:
        problems.append(
            ("trainer.minibatches", f"more minibatches than the {per_step} samples of a step")
        )
    if c.teacher.provider == "openai-compatible" and not c.teacher.base_url:
        problems.append(("teacher.base_url", "the openai-compatible provider needs a base_url"))
    if c.curriculum.hard_below >= c.curriculum.easy_from:
        problems.append(("curriculum.hard_below", "must be below curriculum.easy_from"))
    if c.kl.controller != "fixed" and c.kl.coef == 0:
        problems.append(
            (
                "kl.coef",
                f"the {c.kl.controller} controller multiplies beta, so from 0 it never moves (ema "
                "would jump to its 0.01 floor): start above 0 (e.g. kl.coef=0.05) or set "
                "kl.controller=fixed",
            )
        )
    if c.teacher.provider not in ("none", "llama-cpp") and not c.teacher.api_key_env:
        problems.append(("teacher.api_key_env", "name the environment variable holding the key"))
    if not any(rubric_weights(c.teacher).values()):
        problems.append(("teacher.weight_correctness", "the rubric weights must not all be 0"))
    return problems


def rubric_weights(teacher: TeacherConfig) -> dict[str, float]:
    """Criterion -> weight, from the `weight_<criterion>` keys in their order: the one list of
    the rubric's criteria (`rubric.CRITERIA` is read from here)."""
    prefix = "weight_"
    return {
        f.name.removeprefix(prefix): getattr(teacher, f.name)
        for f in dataclasses.fields(teacher)
        if f.name.startswith(prefix)
    }


def _value_at(config: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if value is not None else "null"


def reference_rows() -> list[tuple[str, str, str]]:
    """(key, default, help) for every config key, in declaration order (for `config-doc`)."""
    rows = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if isinstance(f.default, str) else json.dumps(f.default)
            rows.append((f"{section}.{f.name}", default, f.metadata["help"]))
    return rows
