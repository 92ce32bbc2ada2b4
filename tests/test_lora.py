"""LoRA through peft: only the adapters train, and the reference is the base model itself."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlaif.config import Config, ConfigError, KLConfig, StudentConfig, TrainerConfig
from rlaif.records.checkpoint import CheckpointError, save_checkpoint
from rlaif.records.export import export_checkpoint
from rlaif.student.model import Generator, load_student
from rlaif.training.processes import make_accelerator
from rlaif.training.trainer import Trainer, _pad_batch
from rlaif.types import Task
from tests.conftest import run_cli

TASK = Task("a", "Write `fn a() -> i32` returning 1.", "#[test] fn t() {}", "easy")
ADV = [1.0, -1.0, 0.5, -0.5]
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_config(tiny_model_dir, **trainer) -> Config:
    return Config(
        student=StudentConfig(
            model=str(tiny_model_dir), autocast="fp32", max_new_tokens=16, system_prompt=None
        ),
        trainer=TrainerConfig(**{"learning_rate": 1e-2, "lora_r": 4, "lora_alpha": 8.0, **trainer}),
        kl=KLConfig(coef=0.1),
    )


@pytest.fixture
def setup(tiny_model_dir):
    config = lora_config(tiny_model_dir)
    torch.manual_seed(0)
    model, tokenizer = load_student(config.student, CPU, torch.float32)
    trainer = Trainer(model, config, make_accelerator(CPU))
    samples = Generator(trainer.policy, tokenizer, config.student).generate([TASK], 4, 0)[0]
    return trainer, samples, config


def test_only_adapter_weights_change_and_no_reference_copy_is_kept(setup):
    trainer, samples, _ = setup
    assert trainer.reference is None  # the reference is the policy with adapters disabled
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    stats = trainer.update(samples, ADV)
    assert stats["kl"] == 0.0  # step 0: adapters start at B = 0, so policy == reference exactly
    changed = {n for n, p in trainer.policy.named_parameters() if not torch.equal(p, before[n])}
    # lora_B starts at 0, so the first step moves B (A's gradient is B^T ... = 0)
    assert changed and all("lora_B" in n for n in changed), changed
    second = trainer.update(samples, ADV)
    changed = {n for n, p in trainer.policy.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_A" in n for n in changed) and all("lora_" in n for n in changed)
    assert second["kl"] > 0.0


def test_reference_logprobs_equal_the_base_models(setup, tiny_model_dir):
    trainer, samples, config = setup
    trainer.update(samples, ADV)
    trainer.update(samples, ADV)  # the adapters are now non-zero
    base, _ = load_student(config.student, CPU, torch.float32)
    batch = _pad_batch(samples, CPU)
    with torch.no_grad():
        reference = trainer._reference_logprobs(batch)
        expected, _ = trainer._completion_logprobs(base, batch, entropy=False)
        policy, _ = trainer._completion_logprobs(trainer.policy, batch, entropy=False)
    assert torch.allclose(reference, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(policy, expected, atol=1e-3)  # while the policy has moved


def test_a_lora_checkpoint_holds_the_adapter_and_exports_merged(setup, tmp_path):
    trainer, samples, config = setup
    trainer.update(samples, ADV)
    trainer.update(samples, ADV)  # the adapters are now non-zero
    _, tokenizer = load_student(config.student, CPU, torch.float32)
    checkpoint = save_checkpoint(
        tmp_path / "run",
        2,
        model=trainer.policy,
        tokenizer=tokenizer,
        trainer_state=trainer.state_dict(),
        sampler_state={},
        config=config,
        metrics_rows=0,
        tasks=[TASK],
    )
    # What a LoRA run's checkpoint holds: the adapter, not a model a plain loader takes.
    assert (checkpoint / "adapter_config.json").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    with pytest.raises(CheckpointError, match="holds a LoRA adapter, not a model: add --merge"):
        export_checkpoint(checkpoint, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "exported"
    done = run_cli("export", str(tmp_path / "run"), str(out), "--merge", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "merged into" in done.stdout
    assert not (out / "adapter_config.json").exists() and not (out / "trainer.pt").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = _pad_batch(samples, CPU)
    with torch.no_grad():
        want, _ = trainer._completion_logprobs(trainer.policy, batch, entropy=False)
        got, _ = trainer._completion_logprobs(merged, batch, entropy=False)
    assert torch.allclose(got, want, atol=1e-4)  # the merged weights act as base + adapter
    assert trainer.policy.peft_config  # the training model keeps its adapters


def test_an_unknown_target_module_is_a_config_error(tiny_model_dir):
    config = lora_config(tiny_model_dir, lora_target_modules="no_such_proj")
    model, _ = load_student(config.student, CPU, torch.float32)
    with pytest.raises(ConfigError, match="trainer.lora_target_modules='no_such_proj'"):
        Trainer(model, config, make_accelerator(CPU))
