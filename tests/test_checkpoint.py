"""Checkpoints: everything comes back exactly, folders are replaced atomically, kill -9 is safe."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from rlaif.config import Config, CurriculumConfig, StudentConfig, TrainerConfig
from rlaif.records.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_policy_weights,
    prune_checkpoints,
    remove_after,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rlaif.student.model import Generator, load_student
from rlaif.training.curriculum import CurriculumSampler
from rlaif.training.processes import make_accelerator
from rlaif.training.trainer import Trainer
from rlaif.types import Task
from tests.conftest import REPO, SECRET_VARS, run_cli

TASKS = [Task(f"t{i}", f"Write `fn t{i}() -> i32`.", "#[test] fn t() {}", "easy") for i in range(5)]


def make_trainer(model_dir, seed: int):
    config = Config(
        student=StudentConfig(model=str(model_dir), autocast="fp32", max_new_tokens=12),
        trainer=TrainerConfig(learning_rate=1e-2),
    )
    torch.manual_seed(seed)
    model, tokenizer = load_student(config.student, torch.device("cpu"), torch.float32)
    return config, Trainer(model, config, make_accelerator(torch.device("cpu"))), tokenizer


def test_a_checkpoint_brings_back_weights_optimizer_sampler_and_rngs(tiny_model_dir, tmp_path):
    config, trainer, tokenizer = make_trainer(tiny_model_dir, seed=0)
    samples = Generator(trainer.policy, tokenizer, config.student).generate(TASKS[:1], 4, 0)[0]
    trainer.update(samples, [1.0, -1.0, 0.5, -0.5])  # moves the weights, fills Adam's moments
    sampler = CurriculumSampler(TASKS, CurriculumConfig(), seed=3)
    drawn = sampler.next(3)  # a step's draws and outcomes move the draw counts, EMAs and RNG
    sampler.update([(t.id, [True, False]) for t in drawn])
    random.seed(11)
    np.random.seed(11)
    path = save_checkpoint(
        tmp_path,
        1,
        model=trainer.policy,
        tokenizer=tokenizer,
        trainer_state=trainer.state_dict(),
        sampler_state=sampler.state(),
        config=config,
        metrics_rows=1,
        tasks=TASKS,
    )
    # What each RNG would draw next, right after the save.
    expected = (random.random(), np.random.rand(), torch.rand(3))
    sampler_state = sampler.state()
    expected_tasks = [t.id for t in sampler.next(4)]

    # A fresh trainer (other seed: other random state) restored from the checkpoint.
    _, restored, _ = make_trainer(tiny_model_dir, seed=99)
    checkpoint = load_checkpoint(path)
    load_policy_weights(restored.policy, path)
    restored.load_state_dict(checkpoint.trainer)
    resumed = CurriculumSampler(TASKS, CurriculumConfig(), seed=3)
    resumed.load_state(checkpoint.sampler)
    set_rng_state(checkpoint.rng)

    assert (checkpoint.step, checkpoint.policy_version, restored.version) == (1, 1, 1)
    assert checkpoint.sampler == sampler_state and checkpoint.metrics_rows == 1
    for (name, a), b in zip(
        trainer.policy.state_dict().items(), restored.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    saved_opt, loaded_opt = trainer.optimizer.state_dict(), restored.optimizer.state_dict()
    assert saved_opt["state"].keys() == loaded_opt["state"].keys() and saved_opt["state"]
    for key, moments in saved_opt["state"].items():
        for name, tensor in moments.items():
            assert torch.equal(tensor, loaded_opt["state"][key][name]), (key, name)
    assert [t.id for t in resumed.next(4)] == expected_tasks
    assert random.random() == expected[0] and np.random.rand() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])
    # The folder is also a plain model folder for from_pretrained (what `eval` loads).
    assert AutoModelForCausalLM.from_pretrained(path).num_parameters() > 0
    saved_config = (path / "config.yaml").read_text()
    assert str(tiny_model_dir) in saved_config


def test_rng_state_round_trip_covers_python_numpy_and_torch():
    state = rng_state()
    first = (random.random(), float(np.random.rand()), torch.randn(2).tolist())
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.randn(2).tolist()) == first


def test_a_lora_adapter_checkpoint_restores_the_adapter(tiny_model_dir, tmp_path):
    peft = pytest.importorskip("peft")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    policy = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter values worth checking
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.normal_()
    policy.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file()
    saved = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.zero_()
    load_policy_weights(policy, tmp_path)
    for name, p in policy.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, saved[name]), name


def fake_checkpoint(run_dir, name: str, complete: bool = True):
    path = run_dir / "checkpoints" / name
    path.mkdir(parents=True)
    if complete:
        (path / STATE_FILE).write_text(json.dumps({"step": int(name.split("_")[1].split(".")[0])}))
    return path


def test_only_complete_step_folders_count_and_pruning_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 10):
        fake_checkpoint(tmp_path, f"step_{step}")
    fake_checkpoint(tmp_path, "step_11.partial")  # killed while writing
    fake_checkpoint(tmp_path, "step_12", complete=False)  # no state file: never finished
    fake_checkpoint(tmp_path, "step_2.old", complete=False)  # killed while replacing step_2
    # 10 sorts after 3 (numbers, not strings); the unfinished ones are not checkpoints.
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2, 3, 10]
    assert latest_checkpoint(tmp_path).name == "step_10"

    assert [p.name for p in prune_checkpoints(tmp_path, keep=2)] == ["step_1", "step_2"]
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step_10", "step_12", "step_3"]  # leftovers of crashes are cleaned up too
    assert prune_checkpoints(tmp_path, keep=0) == []  # 0 keeps all
    assert [p.name for p in remove_after(tmp_path, 3)] == ["step_10"]
    assert latest_checkpoint(tmp_path).name == "step_3"


# The writer: a real training run whose checkpoint of step 2 stops half-way (after trainer.pt,
# before trainer_state.json and the rename) and says so, so the test can kill it right there.
WRITER = """
import os, sys, time
from pathlib import Path
import rlaif.records.checkpoint as checkpoint

original = checkpoint._torch_save

def stalling_save(obj, path):
    original(obj, path)
    if path.parent.name == "step_2.partial":
        Path(os.environ["RLAIF_TEST_MARKER"]).write_text(str(path))
        time.sleep(600)

checkpoint._torch_save = stalling_save
from rlaif.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_and_resume_works(
    tiny_model_dir, tmp_path
):
    marker = tmp_path / "writing"
    args = [
        "--set",
        f"student.model={tiny_model_dir}",
        "--set",
        "student.max_new_tokens=12",
        "--set",
        "trainer.samples_per_prompt=2",
        "--set",
        "teacher.provider=none",
        "--set",
        f"cache.dir={tmp_path / 'cache'}",
        "--set",
        "checkpoint.every=1",
    ]
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, *args, "--set", f"run.output_dir={tmp_path}"]
        + ["--set", "run.name=killed", "--set", "trainer.max_steps=3"],
        cwd=REPO,
        env={**env, "RLAIF_TEST_MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), writer.communicate(timeout=5)[0].decode()[-3000:]
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()

    run = tmp_path / "killed"
    half = run / "checkpoints" / "step_2.partial"
    assert (half / "trainer.pt").is_file() and not (half / STATE_FILE).exists()
    assert not (run / "checkpoints" / "step_2").exists()
    assert latest_checkpoint(run).name == "step_1"
    previous = load_checkpoint(run / "checkpoints" / "step_1")
    assert previous.step == 1 and previous.metrics_rows == 1
    assert AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step_1").num_parameters()
    logged = [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").open()]
    assert logged == [1, 2]  # step 2 finished and was logged before its checkpoint was cut

    done = run_cli("--resume", str(run), "--set", "logging.progress=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout and "from step_1" in done.stdout
    assert "1 from metrics.jsonl" in done.stdout  # step 2's row, logged after step_1, dropped
    logged = [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").open()]
    assert logged == [1, 2, 3]
    assert [s for s, _ in list_checkpoints(run)] == [2, 3]  # checkpoint.keep = 2
    assert not half.exists()
