"""TRL's GRPOTrainer on the pipeline benchmark's workload: seconds per step, for comparison.

bench/pipeline.py runs this in its own process (TRL's imports and threads stay out of rlaif's
runs) with the config it wrote for rlaif, and reads the JSON line it prints last. From that
config, so that both trainers do the same work:
- the model and tokenizer (`student.model`), fp32 weights on the CPU computing under bf16
  autocast where rlaif's does (`student.autocast`: auto turns it on on CPUs with bf16 matrix
  hardware), with as many torch threads as rlaif gives generation and the update when no rustc
  job runs beside them (every core);
- the tasks (`data.train`) as conversational prompts, the very messages rlaif's student is shown
  (`rlaif.student.model.prompt_messages`), `trainer.samples_per_prompt` completions each
  (`num_generations`), `student.max_new_tokens`, temperature and top_p, no top-k, no vLLM;
- one optimizer step per `trainer.tasks_per_step` x `samples_per_prompt` samples, in
  micro-batches of `trainer.micro_batch_size`, at `trainer.learning_rate` (constant), with the
  KL penalty (`kl.coef`, so a reference model as in rlaif) and the clip range, and no activation
  checkpointing (TRL's default; rlaif has none);
- the reward: rlaif's own scorer (`scoring.Scorer`) as one async reward function, the same
  sandboxed rustc jobs and teacher calls (the teacher of `teacher.*`: the benchmark's loopback
  server), the same reward weights. TRL awaits it in line: generation, scoring, update, in turn.

A step is timed from one `on_step_end` to the next (generation, scoring and the update, all of
it), generation as the model's `generate` calls and scoring as the reward function's calls (one
each a step); the first `--warmup` steps are left out. What cannot be made equal is listed under
`differences` in the output.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from rlaif import config as config_module  # noqa: E402
from rlaif.config import Config  # noqa: E402
from rlaif.data.tasks import load_tasks  # noqa: E402
from rlaif.judges.rust.jobs import RustJudge, default_concurrency, find_toolchain, rust_cache  # noqa: E402
from rlaif.judges.scoring import Scorer  # noqa: E402
from rlaif.judges.teacher.setup import make_teacher  # noqa: E402
from rlaif.rollout.threads import ThreadPolicy  # noqa: E402
from rlaif.student.extract import code_for_task  # noqa: E402
from rlaif.student.model import prompt_messages  # noqa: E402
from rlaif.student.precision import pick_autocast  # noqa: E402
from rlaif.types import Sample, Task  # noqa: E402


class StepTimer(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]


def time_calls(fn: Callable, seconds: list[float]) -> Callable:
    """`fn`, appending each call's duration to `seconds`."""

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    return timed


class RlaifReward:
    """rlaif's scorer as a TRL async reward function: one reward per completion, None when no
    judge could give one. Built on first use, inside the event loop TRL awaits it on."""

    def __init__(self, config: Config, tasks: list[Task], eos_token_id: int):
        self.__name__ = "rlaif_reward"  # TRL names reward functions by __name__
        self.config = config
        self.eos_token_id = eos_token_id
        self.tasks = {task.id: task for task in tasks}
        self.scorer: Scorer | None = None
        self.seconds: list[float] = []  # per call: one call per generation batch (a step)

    def _make_scorer(self) -> Scorer:
        rust = self.config.rust
        judge = RustJudge(
            find_toolchain(rust.rustc),
            rust,
            default_concurrency(rust),
            rust_cache(self.config.cache),
        )
        teacher, status = make_teacher(self.config.teacher, cache_config=self.config.cache)
        print(status, flush=True)
        return Scorer(judge, teacher, self.config.rewards)

    async def __call__(self, prompts, completions, completion_ids, task_id, **kwargs):
        started = time.perf_counter()
        if self.scorer is None:
            self.scorer = self._make_scorer()
        samples = []
        for i, (completion, ids, tid) in enumerate(
            zip(completions, completion_ids, task_id, strict=True)
        ):
            text = completion[-1]["content"]  # conversational: the assistant's message
            task = self.tasks[tid]
            sample = Sample(
                task=task,
                index=i,
                prompt_ids=[],
                completion_ids=list(ids),
                logprobs=[],
                completion=text,
                code=code_for_task(task, text),
                policy_version=0,
                finished=self.eos_token_id in ids,  # TRL keeps the EOS that ended a completion
            )
            samples.append(sample)
        scored = await self.scorer.score(samples)
        self.seconds.append(time.perf_counter() - started)
        return [None if math.isnan(s.reward) else s.reward for s in scored]


def trl_bf16(config: Config) -> bool:
    """Whether rlaif's student computes in bf16 on the CPU (fp32 weights either way)."""
    return pick_autocast(config.student.autocast, torch.device("cpu")) == torch.bfloat16


def grpo_config(config: Config, output_dir: Path) -> tuple[GRPOConfig, list[str]]:
    """The GRPOConfig matching rlaif's settings, and what still differs."""
    t, s = config.trainer, config.student
    per_step = t.tasks_per_step * t.samples_per_prompt
    micro = t.micro_batch_size if per_step % t.micro_batch_size == 0 else per_step
    differences = [
        "TRL whitens the summed reward per group; rlaif centres each judge's term on its own "
        "(the same when no judge abstains)",
        "TRL scores in line (no overlap), as TRL's synchronous GRPOTrainer does",
    ]
    if t.loss_aggregation != "token":  # TRL's dapo: a mean over the batch's tokens, as "token"
        differences.append(f"TRL loss_type dapo; rlaif loss_aggregation {t.loss_aggregation}")
    if micro != t.micro_batch_size:
        differences.append(
            f"micro-batches of {micro} (trainer.micro_batch_size {t.micro_batch_size} does not "
            f"divide {per_step} samples per step)"
        )
    if config.kl.controller != "fixed":
        differences.append(f"a fixed KL coefficient; rlaif's {config.kl.controller} controller")
    args = GRPOConfig(
        output_dir=str(output_dir),
        max_steps=t.max_steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=per_step // micro,  # one optimizer step per generation batch
        num_generations=t.samples_per_prompt,
        max_completion_length=s.max_new_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=0,
        learning_rate=t.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        num_iterations=t.epochs,
        beta=config.kl.coef,
        gradient_checkpointing=False,  # TRL turns it on by default; rlaif recomputes nothing
        epsilon=t.clip_eps_low,
        epsilon_high=t.clip_eps_high,
        seed=config.run.seed,
        use_cpu=True,
        bf16=trl_bf16(config),  # accelerate's autocast, as rlaif's
        report_to="none",
        logging_steps=10**6,
        save_strategy="no",
        disable_tqdm=True,
        log_completions=False,
    )
    return args, differences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the benchmark's rlaif config")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the mean")
    parser.add_argument("--output-dir", type=Path, required=True, help="TRL's output folder")
    args = parser.parse_args()

    config = config_module.load(args.config)
    threads = ThreadPolicy.for_config(config).cores
    torch.set_num_threads(threads)
    tasks = load_tasks(config.data.train)
    dataset = Dataset.from_list(
        [{"prompt": prompt_messages(task, config.student), "task_id": task.id} for task in tasks]
    )
    tokenizer = AutoTokenizer.from_pretrained(config.student.model)
    model = AutoModelForCausalLM.from_pretrained(config.student.model, dtype=torch.float32)
    reward = RlaifReward(config, tasks, tokenizer.eos_token_id)
    timer = StepTimer()
    generating: list[float] = []
    # One process on the CPU: TRL generates with this very model object (no wrapper, no copy).
    model.generate = time_calls(model.generate, generating)
    grpo_args, differences = grpo_config(config, args.output_dir)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=grpo_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    trainer.train()

    steps = timer.step_seconds()[args.warmup :]
    scoring = reward.seconds[args.warmup :]
    gen = generating[args.warmup :]
    if len(generating) != len(timer.step_seconds()):
        differences.append(
            f"{len(generating)} generate calls in {len(timer.step_seconds())} steps: gen_seconds "
            "is per call"
        )
    result = {
        "steps": len(timer.step_seconds()),
        "timed_steps": len(steps),
        "step_seconds": statistics.fmean(steps),
        "gen_seconds": statistics.fmean(gen),
        "score_seconds": statistics.fmean(scoring),
        "samples_per_step": grpo_args.generation_batch_size,
        "torch_threads": threads,
        "autocast": "bf16" if grpo_args.bf16 else "fp32",
        "differences": differences,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
