"""The teacher inside the scorer: code that does not compile is not sent (by default), and gets
no teacher term rather than a made-up one."""

from __future__ import annotations

import math

import anyio
import pytest
from teacher_server import TeacherServer

from rlaif.config import Config, RustConfig, TeacherConfig
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.scoring import Scorer
from rlaif.judges.teacher.setup import make_teacher
from rlaif.records.metrics import score_metrics
from rlaif.types import NOT_COMPILED, TEACHER_OFF, Judgement, Sample, Task

KEY_ENV = "RLAIF_TEST_KEY"
TASK = Task(
    id="add",
    prompt="Write `fn add(a: i32, b: i32) -> i32`.",
    tests="#[test]\nfn two() { assert_eq!(add(1, 1), 2); }",
    difficulty="easy",
)
GOOD = "fn add(a: i32, b: i32) -> i32 { a + b }"
BROKEN = "fn add(a: i32, b: i32) -> i32 { a + }"


def sample(code: str, index: int) -> Sample:
    return Sample(TASK, index, [1], [2], [-0.5], code, code, 0, True)


def score(toolchain, only_compiled: bool, tmp_path):
    with TeacherServer() as server:
        config = TeacherConfig(
            provider="openai-compatible",
            model="judge",
            api_key_env=KEY_ENV,
            base_url=server.openai_url,
            requests_per_minute=0,
            only_compiled=only_compiled,
        )
        judge, _ = make_teacher(config, environ={KEY_ENV: "k"})
        scorer = Scorer(RustJudge(toolchain, RustConfig(), 1), judge, Config().rewards)

        async def run():
            try:
                return await scorer.score([sample(GOOD, 0), sample(BROKEN, 1)])
            finally:
                await judge.aclose()

        scored = anyio.run(run)
        return scored, len(server.requests)


def test_code_that_does_not_compile_is_not_sent_and_has_no_teacher_term(toolchain, tmp_path):
    (good, broken), sent = score(toolchain, True, tmp_path)

    assert sent == 1
    assert good.rust.compiled and good.judgement.score == pytest.approx(0.67)
    assert not broken.rust.compiled
    assert broken.judgement.abstained == NOT_COMPILED
    assert math.isnan(broken.components["teacher"]) and math.isnan(broken.sources["teacher"])
    assert broken.reward == broken.sources["rust"]  # the rust terms still count
    # the teacher never saw it: not one of its abstentions
    assert score_metrics([good, broken])["teacher_abstain_rate"] == 0.0


def test_with_only_compiled_off_every_sample_is_sent(toolchain, tmp_path):
    (good, broken), sent = score(toolchain, False, tmp_path)

    assert sent == 2
    assert broken.judgement.abstained is None
    assert broken.judgement.score == pytest.approx(0.67)


def test_only_samples_the_teacher_was_asked_about_count_as_its_abstentions():
    assert not Judgement(abstained=TEACHER_OFF).asked
    assert not Judgement(abstained=NOT_COMPILED).asked
    assert Judgement(abstained="timeout: no answer in 60 s").asked and Judgement(score=0.5).asked
