"""The student with a real (tiny, random) model: prompts, batched sampling, recorded log-probs."""

from __future__ import annotations

import pytest
import torch

from rlaif.config import StudentConfig
from rlaif.student import (
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
    from rlaif.student import prompt_messages

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

    from rlaif.tiny import make_tiny_model

    config = AutoConfig.from_pretrained(make_tiny_model(tmp_path, hidden_size=32, layers=3))
    assert (config.hidden_size, config.num_hidden_layers) == (32, 3)
