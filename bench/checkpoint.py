"""How long a checkpoint takes to write and to restore, and how big it is, for a given student.

    python bench/checkpoint.py [MODEL_DIR]   (default: models/qwen2.5-coder-0.5b)

It loads the model and a Trainer as a run does, gives every weight a random gradient and takes
one optimizer step (so Adam's moments exist and are saved, as after a real step), then times
`Run.save`'s parts: `save_checkpoint`, and the restore (`load_checkpoint` + weights). No rustc,
no generation: only the checkpoint itself.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from rlaif.config import Config, StudentConfig
from rlaif.records.checkpoint import load_checkpoint, load_policy_weights, save_checkpoint
from rlaif.student.model import load_student
from rlaif.training.curriculum import TaskSampler
from rlaif.training.processes import make_accelerator
from rlaif.training.trainer import Trainer
from rlaif.types import Task


def main(model_dir: str) -> None:
    config = Config(student=StudentConfig(model=model_dir))
    device = torch.device("cpu")
    model, tokenizer = load_student(config.student, device, torch.float32)
    trainer = Trainer(model, config, make_accelerator(device))
    for p in trainer.model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    tasks = [Task("t", "p", "t", "easy")]
    sampler = TaskSampler(tasks, True, 0)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        t0 = time.perf_counter()
        path = save_checkpoint(
            run_dir,
            1,
            model=trainer.policy,
            tokenizer=tokenizer,
            trainer_state=trainer.state_dict(),
            sampler_state=sampler.state(),
            config=config,
            metrics_rows=1,
            tasks=tasks,
        )
        saved = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.iterdir())
        t0 = time.perf_counter()
        checkpoint = load_checkpoint(path)
        load_policy_weights(trainer.policy, path)
        trainer.load_state_dict(checkpoint.trainer)
        restored = time.perf_counter() - t0
    print(f"model: {model_dir} ({params / 1e6:.1f}M params, fp32)")
    print(f"checkpoint size: {size / 2**20:.0f} MiB (weights, Adam moments, tokenizer, state)")
    print(f"save: {saved:.2f} s   restore: {restored:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/qwen2.5-coder-0.5b")
