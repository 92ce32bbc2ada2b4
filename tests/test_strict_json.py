"""Strict JSON out: abstentions (NaN in memory) are written as null, which jq and every strict
parser read, and the project's own readers take null back as NaN."""

from __future__ import annotations

import io
import json
import math

import pytest

from rlaif import strict_json
from rlaif.evaluation.score import write_results
from rlaif.evaluation.stats import task_values
from rlaif.records.metrics import RunLogger
from rlaif.records.report import read_metrics, read_samples, series
from rlaif.types import Judgement, RustResult, Sample, Scored, Task


def strict(line: str):
    """json.loads that refuses NaN and Infinity, as jq and JavaScript do."""

    def refuse(constant: str):
        raise ValueError(f"bare {constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def abstained_sample() -> Scored:
    """A sample whose judges all abstained: the sandbox failed and the teacher timed out."""
    task = Task("a", "Write a.", "#[test] fn t() {}", "easy")
    sample = Sample(task, 0, [1], [2], [-0.5], "x", "fn a() {}", 0, True)
    rust = RustResult(sandbox_error="rustc timed out in the check after 10 s", timed_out=True)
    judgement = Judgement(abstained="timeout: no answer")
    components = {"parse": math.nan, "teacher": math.nan}
    return Scored(sample, rust, judgement, components, {"rust": math.nan, "teacher": math.nan})


def test_nested_nans_and_infinities_become_null_and_read_back_as_nan():
    text = strict_json.dumps({"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": "NaN"})
    assert strict(text) == {"a": None, "b": [1.0, None, [2, None]], "c": "NaN"}
    assert math.isnan(strict_json.number(None)) and strict_json.number(3) == 3.0
    assert math.isnan(strict_json.number("3")) and math.isnan(strict_json.number(True))


def test_metrics_and_samples_files_are_strict_json_and_read_back_as_nan(tmp_path):
    logger = RunLogger(tmp_path, write_samples=True)
    logger.log_step({"iteration": 1, "avg_reward": math.nan, "kl": 0.01})
    logger.log_step({"iteration": 2, "avg_reward": 3.0, "kl": math.nan})
    logger.log_samples(1, [abstained_sample()], [math.nan])
    for name in ("metrics.jsonl", "samples.jsonl"):
        lines = (tmp_path / name).read_text().splitlines()
        assert lines and all(strict(line) for line in lines), name
    record = strict((tmp_path / "samples.jsonl").read_text())
    assert record["reward"] is None and record["advantage"] is None
    assert record["components"]["teacher"] is None and record["teacher"]["score"] is None
    # report.py reads null as NaN: a missing point, and a sample with no reward to rank.
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert series(metrics, "avg_reward") == ([2], [3.0])
    samples = read_samples(tmp_path / "samples.jsonl")
    assert samples.count == 1 and not samples.best and not samples.worst
    assert math.isnan(samples.components["teacher"][1][0])


def test_score_output_lines_are_strict_json():
    out = io.StringIO()
    write_results([7], [abstained_sample()], out)
    record = strict(out.getvalue())
    assert record["line"] == 7 and record["reward"] is None


def test_eval_records_with_null_rewards_are_read_as_unknown():
    # stats.task_values (bench/learning.py's reader) leaves a null reward out of the mean.
    rows = [
        {
            "task_id": "a",
            "reward": None,
            "parsed": False,
            "compiled": False,
            "tests_passed": 0,
            "tests_total": 0,
            "sandbox_error": "boom",
        },
        {
            "task_id": "a",
            "reward": 4.0,
            "parsed": True,
            "compiled": True,
            "tests_passed": 1,
            "tests_total": 1,
            "sandbox_error": None,
        },
    ]
    values = task_values([strict(strict_json.dumps(r)) for r in rows], [1])
    assert values["a"]["mean_reward"] == (4.0, 1.0)
    assert values["a"]["parse_rate"] == (1.0, 1.0)  # the unjudged sample is not a failure


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_plain_json_would_have_written_a_bare_constant(value):
    # Why this module exists: the standard library writes NaN / Infinity, which strict
    # parsers refuse.
    with pytest.raises(ValueError, match="not JSON"):
        strict(json.dumps({"x": value}))
    assert strict(strict_json.dumps({"x": value})) == {"x": None}
