"""One real update on a tiny model: the policy moves, the reference does not."""

from __future__ import annotations

import pytest
import torch

from rlaif.config import Config, KLConfig, StudentConfig, TrainerConfig
from rlaif.student import Generator, load_student
from rlaif.trainer import Trainer, make_accelerator
from rlaif.types import Task

TASK = Task("a", "Write `fn a() -> i32` returning 1.", "#[test] fn t() {}", "easy")


@pytest.fixture
def setup(tiny_model_dir):
    config = Config(
        student=StudentConfig(model=str(tiny_model_dir), max_new_tokens=16),
        trainer=TrainerConfig(learning_rate=1e-2, micro_batch_size=3),
        kl=KLConfig(coef=0.1),
    )
    torch.manual_seed(0)
    model, tokenizer = load_student(config.student, torch.device("cpu"), torch.float32)
    trainer = Trainer(model, config, make_accelerator(torch.device("cpu")))
    samples = Generator(trainer.policy, tokenizer, config.student).generate([TASK], 4, 0)[0]
    return trainer, samples


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_update_moves_the_policy_and_leaves_the_reference_alone(setup):
    trainer, samples = setup
    policy_before, reference_before = snapshot(trainer.policy), snapshot(trainer.reference)
    stats = trainer.update(samples, [1.0, -1.0, 0.5, -0.5])
    changed = [
        n for n, p in trainer.policy.named_parameters() if not torch.equal(p, policy_before[n])
    ]
    assert len(changed) == len(policy_before)  # every weight got a gradient and moved
    for name, p in trainer.reference.named_parameters():
        assert torch.equal(p, reference_before[name]), name
        assert not p.requires_grad
    assert trainer.version == 1
    assert stats["grad_norm"] > 0


def test_first_update_is_on_policy_with_zero_kl(setup):
    trainer, samples = setup
    stats = trainer.update(samples, [1.0, -1.0, 0.5, -0.5])
    # Policy == reference before the first step: every per-token KL is exactly 0, and the
    # recorded sampler log-probs match the trainer's, so no ratio strays from 1.
    assert stats["kl"] == 0.0 and stats["kl_max"] == 0.0
    assert stats["ratio_max"] == pytest.approx(1.0, abs=1e-4)
    assert stats["clip_frac"] == 0.0
    assert stats["completion_tokens"] == sum(len(s.completion_ids) for s in samples)
    second = trainer.update(samples, [1.0, -1.0, 0.5, -0.5])
    assert second["kl"] > 0.0  # now the policy has moved away from the reference


def test_zero_advantages_and_zero_kl_leave_gradients_at_zero(setup):
    trainer, samples = setup
    stats = trainer.update(samples, [0.0, 0.0, 0.0, 0.0])
    assert stats["grad_norm"] == 0.0
