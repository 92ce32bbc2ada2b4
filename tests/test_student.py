"""The student with a real (tiny, random) model: prompts, batched sampling, recorded log-probs."""

from __future__ import annotations

import pytest
import torch

from rlaif.config import StudentConfig
from rlaif.student.model import (
    Generator,
    StudentLoadError,
    encode_prompt,
    load_student,
    pick_device,
    pick_dtype,
    prompt_text,
)
from rlaif.types import Task

TASKS = [
    Task("a", "Write `fn a() -> i32` returning 1.", "#[test] fn secret_test_a() {}", "easy"),
    Task(
        "bb",
        "Write `fn bb(x: &str) -> usize`, the length of x in bytes.",
        "#[test] fn t() {}",
        "medium",
    ),
]


@pytest.fixture(scope="module")
def student(tiny_model_dir):
    config = StudentConfig(model=str(tiny_model_dir), max_new_tokens=24, temperature=0.7)
    model, tokenizer = load_student(config, torch.device("cpu"), torch.float32)
    return model, tokenizer, config


def test_prompt_uses_the_chat_template_and_hides_the_tests(student):
    _, tokenizer, config = student
    text = prompt_text(TASKS[0], tokenizer, config)
    assert text.startswith("<|system|>\n" + config.system_prompt)
    assert TASKS[0].prompt in text and text.endswith("<|assistant|>\n")
    assert "secret_test_a" not in text
    plain = prompt_text(TASKS[0], tokenizer, StudentConfig(use_chat_template=False))
    assert plain.startswith("// Task: ") and plain.endswith("```rust\n")


def test_generate_groups_with_log_probs_that_match_a_full_forward_pass(student):
    model, tokenizer, config = student
    torch.manual_seed(0)
    groups = Generator(model, tokenizer, config).generate(TASKS, group_size=3, policy_version=7)
    assert [len(g) for g in groups] == [3, 3]
    for task, group in zip(TASKS, groups, strict=True):
        assert [s.index for s in group] == [0, 1, 2]
        for s in group:
            assert s.task is task and s.policy_version == 7
            assert s.prompt_ids == encode_prompt(prompt_text(task, tokenizer, config), tokenizer)
            assert 1 <= len(s.completion_ids) == len(s.logprobs) <= config.max_new_tokens
            # The sampler's log-probs are those of the unpadded sequence at temperature T, even
            # though the batch was left-padded to the longer prompt.
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            with torch.no_grad():
                logits = model(ids).logits[0, len(s.prompt_ids) - 1 : -1] / config.temperature
            expected = (
                torch.log_softmax(logits, -1)
                .gather(1, torch.tensor(s.completion_ids).unsqueeze(1))
                .squeeze(1)
            )
            assert torch.allclose(torch.tensor(s.logprobs), expected, atol=1e-4)
    # Sampling, not greedy: a group's completions differ.
    assert len({tuple(s.completion_ids) for s in groups[0]}) > 1


def test_device_and_dtype_choice():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(StudentLoadError, match="no CUDA device"):
            pick_device("cuda")


def test_missing_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default student has not been built
    with pytest.raises(StudentLoadError, match="Run `make student`"):
        load_student(StudentConfig(), torch.device("cpu"), torch.float32)
    with pytest.raises(StudentLoadError, match="no such directory"):
        load_student(
            StudentConfig(model=str(tmp_path / "missing")), torch.device("cpu"), torch.float32
        )
    with pytest.raises(StudentLoadError, match="no such .gguf file"):
        load_student(
            StudentConfig(model=str(tmp_path / "m.gguf")), torch.device("cpu"), torch.float32
        )


def test_prompt_messages_are_what_the_chat_template_formats():
    """Other trainers (bench/pipeline_trl.py) are given these messages: the same prompt text."""
    from rlaif.student.model import prompt_messages

    config = StudentConfig(system_prompt="Be brief.")
    messages = prompt_messages(TASKS[1], config)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == "Be brief."
    assert messages[1]["content"].startswith(TASKS[1].prompt) and "t()" not in str(messages)
    assert [m["role"] for m in prompt_messages(TASKS[1], StudentConfig(system_prompt=None))] == [
        "user"
    ]


def test_the_tiny_model_takes_a_size(tmp_path):
    from transformers import AutoConfig

    from rlaif.student.tiny import make_tiny_model

    config = AutoConfig.from_pretrained(make_tiny_model(tmp_path, hidden_size=32, layers=3))
    assert (config.hidden_size, config.num_hidden_layers) == (32, 3)


def test_sampling_ignores_the_models_generation_config_so_the_trainer_scores_what_was_sampled(
    tiny_model_dir, tmp_path
):
    """Hub instruct models (Qwen's among them) ship repetition_penalty, top_k and top_p in their
    generation_config. Were sampling to inherit them, the tokens would come from a warped
    distribution while the recorded log-probs, and the trainer's, are of the plain softmax at T:
    every ratio and KL would be off. Here the config warps hard: a repetition penalty of 5 and
    top_k 3 would make almost every recorded log-prob differ from the trainer's."""
    import dataclasses
    import shutil

    from rlaif.config import Config
    from rlaif.training.processes import make_accelerator
    from rlaif.training.trainer import Trainer, _pad_batch

    model_dir = tmp_path / "warped"
    shutil.copytree(tiny_model_dir, model_dir)
    model, tokenizer = load_student(
        StudentConfig(model=str(model_dir)), torch.device("cpu"), torch.float32
    )
    model.generation_config.repetition_penalty = 5.0
    model.generation_config.top_k = 3
    model.generation_config.top_p = 0.5
    model.generation_config.do_sample = True
    model.save_pretrained(model_dir)  # as a hub model would ship it

    config = Config(
        student=StudentConfig(
            model=str(model_dir), autocast="fp32", max_new_tokens=20, temperature=0.9
        )
    )
    model, tokenizer = load_student(config.student, torch.device("cpu"), torch.float32)
    assert model.generation_config.repetition_penalty == 5.0  # the warp is really there
    trainer = Trainer(model, config, make_accelerator(torch.device("cpu")))
    torch.manual_seed(1)
    samples = Generator(trainer.policy, tokenizer, config.student).generate(TASKS, 3, 0)
    samples = [s for group in samples for s in group]
    # Top-k 3 would allow only 3 distinct tokens per position; the plain softmax over 384 ids
    # at T = 0.9 from a random model draws far more.
    assert len({t for s in samples for t in s.completion_ids}) > 3 * 20 // 2
    batch = _pad_batch(samples, torch.device("cpu"))
    with torch.no_grad():
        trainer_logp, _ = trainer._completion_logprobs(trainer.policy, batch, entropy=False)
    for i, s in enumerate(samples):
        n = len(s.completion_ids)
        torch.testing.assert_close(trainer_logp[i, :n], torch.tensor(s.logprobs), atol=1e-5, rtol=0)
    assert dataclasses.is_dataclass(samples[0])


def test_no_bos_is_prepended_where_the_tokenizer_adds_none(tiny_model_dir):
    """A GGUF-loaded Qwen tokenizer names `<|endoftext|>` as its BOS but never adds it (nor did
    Qwen's training); only a tokenizer that puts a BOS in front of text gets one in prompts."""
    _, tokenizer = load_student(
        StudentConfig(model=str(tiny_model_dir)), torch.device("cpu"), torch.float32
    )
    assert encode_prompt("fn", tokenizer) == tokenizer("fn", add_special_tokens=False)["input_ids"]
    tokenizer.bos_token = "</s>"  # a BOS named, as the GGUF loader does for Qwen
    assert tokenizer("a", add_special_tokens=True)["input_ids"][0] != tokenizer.bos_token_id
    assert encode_prompt("fn", tokenizer)[0] != tokenizer.bos_token_id


def test_nucleus_keeps_the_smallest_set_with_the_mass():
    from rlaif.student.model import _nucleus

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: the first two stay (unnormalised; multinomial normalises).
    assert torch.equal(_nucleus(probs, 0.7), torch.tensor([[0.5, 0.3, 0.0, 0.0]]))
    assert _nucleus(probs, 1.0) is probs
