"""No training blind: K steps in a row without a rustc (or required teacher) verdict stop the run,
before the K-th step's update and with no checkpoint of the blind steps."""

from __future__ import annotations

import math
import sys

import anyio
import pytest
from rich.console import Console

from rlaif import config as config_module
from rlaif.data.tasks import load_tasks
from rlaif.judges.rust import sandbox
from rlaif.loop import run as run_module
from rlaif.loop.blind import BlindGuard, TrainingBlind, find_blind, rust_blind, teacher_blind
from rlaif.types import NOT_COMPILED, TEACHER_OFF, Judgement, RustResult, Sample, Scored, Task
from tests.conftest import REPO, run_cli

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

TASK = Task(id="t", prompt="p", tests="", difficulty="easy")
BROKEN = "OSError: [Errno 2] No such file or directory: '/gone/rlaif-rust-x'"


def scored(code="fn a() {}", sandbox_error=None, teacher: str | None = TEACHER_OFF) -> Scored:
    """One sample's record: a rust source of NaN when the sandbox failed, as rewards.py makes."""
    sample = Sample(TASK, 0, [1], [2], [0.0], "c", code, 0, True)
    rust = RustResult(sandbox_error=sandbox_error)
    sources = {"rust": math.nan if sandbox_error else -2.0}
    score = math.nan if teacher is not None else 0.7
    return Scored(sample, rust, Judgement(score=score, abstained=teacher), {}, sources)


def step(*samples: Scored) -> list[Scored]:
    return list(samples)


BLIND = step(scored(sandbox_error=BROKEN), scored(sandbox_error=BROKEN))
SEEN = step(scored(sandbox_error=BROKEN), scored())  # one verdict is enough to see
NO_CODE = step(scored(code=""), scored(code="  "))  # nothing reached rustc: no evidence


def test_a_step_is_rust_blind_only_when_every_job_sent_failed_in_the_sandbox():
    assert rust_blind(BLIND) == (True, f"2 of 2 failed, e.g. {BROKEN}")
    assert rust_blind(SEEN)[0] is False
    assert rust_blind(NO_CODE) is None


def test_k_blind_steps_in_a_row_stop_the_run_naming_the_sandbox_and_the_fix():
    guard = BlindGuard(max_steps=3)
    guard.observe(1, BLIND)
    guard.observe(2, NO_CODE)  # neither extends nor ends the streak
    guard.observe(3, BLIND)
    assert guard.blind and guard.rust_streak == 2
    with pytest.raises(TrainingBlind) as caught:
        guard.observe(4, BLIND)
    message = str(caught.value)
    assert message.startswith("step 4: 3 steps in a row without one rustc verdict")
    for part in ("sandbox", BROKEN, "python -m rlaif doctor", "rust.sandbox", "--resume"):
        assert part in message


def test_one_step_with_a_verdict_ends_the_streak():
    guard = BlindGuard(max_steps=2)
    guard.observe(1, BLIND)
    guard.observe(2, SEEN)
    assert not guard.blind
    guard.observe(3, BLIND)  # one blind step again, not two
    with pytest.raises(TrainingBlind):
        guard.observe(4, BLIND)


def test_zero_never_stops_but_still_holds_checkpoints_back():
    guard = BlindGuard(max_steps=0)
    for i in range(10):
        guard.observe(i, BLIND)
    assert guard.blind


def test_a_required_teacher_that_never_answers_stops_the_run():
    timeouts = step(scored(teacher="timeout: no answer in 60 s"), scored(teacher="unparsable"))
    guard = BlindGuard(max_steps=2, teacher_required=True)
    guard.observe(1, timeouts)
    with pytest.raises(TrainingBlind, match="required teacher .*2 of 2 failed.*doctor --online"):
        guard.observe(2, timeouts)

    not_required = BlindGuard(max_steps=2, teacher_required=False)
    for i in range(3):
        not_required.observe(i, timeouts)


def test_samples_not_sent_to_the_teacher_are_no_evidence():
    skipped = step(scored(teacher=NOT_COMPILED), scored(teacher="budget: 100 requests spent"))
    assert teacher_blind(skipped) is None
    assert teacher_blind(step(scored(teacher=None), scored(teacher="timeout: x")))[0] is False
    assert teacher_blind(step(scored(teacher="timeout: x"))) == (
        True,
        "1 of 1 failed, e.g. timeout: x",
    )


def test_the_error_is_found_inside_task_group_exception_groups():
    error = TrainingBlind("blind")
    wrapped = ExceptionGroup("outer", [ExceptionGroup("inner", [error])])
    assert find_blind(wrapped) is error
    assert find_blind(ExceptionGroup("other", [ValueError("x")])) is None


# --- the whole run ---------------------------------------------------------------------------


def test_a_run_whose_sandbox_breaks_stops_within_k_steps_and_keeps_its_checkpoint(
    tiny_model_dir, tmp_path, monkeypatch, toolchain, one_torch_thread
):
    """Step 1 is judged and checkpointed; then no job dir can be made. With K = 2, step 2 is
    trained blind but not checkpointed (checkpoint.every=1, keep=1: a checkpoint of it would
    have pushed out step 1's), and step 3 stops the run before its update."""
    from rlaif.loop.pipeline import train

    config = config_module.load(
        REPO / "config.yaml",
        [
            f"student.model={tiny_model_dir}",
            "student.max_new_tokens=16",
            "trainer.max_steps=6",
            "checkpoint.every=1",
            "checkpoint.keep=1",
            "pipeline.max_staleness=0",
            "run.max_blind_steps=2",
            f"run.output_dir={tmp_path}",
            "run.name=blind",
            f"data.train={REPO / 'data/train.jsonl'}",
            "cache.rust=false",
            "teacher.provider=none",
            "logging.progress=false",
        ],
    )
    broken = []
    real_job, real_save = sandbox.job, run_module.Run.save

    def job(*args, **kwargs):
        if broken:
            raise FileNotFoundError(2, "No such file or directory", "/gone/rlaif-rust-x")
        return real_job(*args, **kwargs)

    def save(self, step):
        path = real_save(self, step)
        broken.append(step)  # the sandbox breaks once step 1 is safely on disk
        return path

    monkeypatch.setattr(sandbox, "job", job)
    monkeypatch.setattr(run_module.Run, "save", save)
    tasks = load_tasks(config.data.train)

    with pytest.raises(Exception) as caught:  # task groups wrap it in ExceptionGroups
        anyio.run(train, config, tasks, toolchain, None, Console(quiet=True))

    blind = find_blind(caught.value)
    assert blind is not None, caught.value
    assert str(blind).startswith("step 3: 2 steps in a row without one rustc verdict: the sandbox")
    run_dir = tmp_path / "blind"
    assert broken == [1]  # nothing was saved after the sandbox broke
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_1"]
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # steps 1 and 2; step 3 was not trained on


def test_a_level_this_machine_lacks_stops_train_before_the_model_loads(tmp_path):
    wanted = "seatbelt" if sys.platform != "darwin" else "namespaces"
    done = run_cli(
        "train",
        "--set",
        f"rust.sandbox={wanted}",
        "--set",
        f"run.output_dir={tmp_path}",
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"rust.sandbox={wanted} is not available here" in done.stderr
    assert "set rust.sandbox to auto" in done.stderr
    assert not any(tmp_path.iterdir())  # no run directory was made
