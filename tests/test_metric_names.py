"""Metric names: metrics.csv keeps the flat names, metrics.jsonl and TensorBoard get namespaced
ones, and every key a run can log lands in one of the namespaces, none two in the same name."""

from __future__ import annotations

import csv
import json

import pytest

from rlaif.judges.teacher.stats import TeacherStats
from rlaif.records.metrics import (
    LEADING_COLUMNS,
    NAMESPACES,
    RunLogger,
    metric_name,
    namespaced,
    tensorboard_tag,
)

# The keys of a real 2-step row (teacher off, no eval; `python -m rlaif train`, tiny model), as
# words: a list literal would take a line per key.
RUN_KEYS = """
iteration avg_reward reward_std compile_success_rate parse_success_rate policy_loss kl grad_norm
test_pass_rate kl_coef gen_seconds score_seconds train_seconds step_seconds all_tests_pass_rate
code_found_rate finished_rate completion_tokens_mean rust_errors_mean rust_timeouts
rust_compile_timeouts rust_sandbox_errors rust_cached_rate clippy_lints_mean teacher_score_mean
teacher_abstain_rate placeholder_rate kl_max loss lr clip_frac ratio_mean ratio_max is_weight_mean
is_weight_max entropy completion_tokens self_anchored curriculum_stage curriculum_stage_success
curriculum_promoted curriculum_easy_share curriculum_easy_success curriculum_easy_tasks
curriculum_medium_share curriculum_medium_success curriculum_medium_tasks curriculum_hard_share
curriculum_hard_success curriculum_hard_tasks curriculum_replaced gen_threads_mean
train_threads_mean frac_zero_std staleness_mean staleness_max score_wait_seconds score_hidden_frac
samples_per_s rust_jobs_in_flight_mean rust_jobs_in_flight_max teacher_calls_in_flight_mean
teacher_calls_in_flight_max
""".split()  # noqa: SIM905
# Keys only some runs have: a teacher (its counts, spend, breaker, a local server's threads) and
# the periodic eval (pass@k for k in {1, eval.samples}).
TEACHER_KEYS = [
    *TeacherStats().row(),
    "teacher_spend_usd",
    "teacher_budget_exhausted",
    "teacher_circuit_open",
    "teacher_server_threads",
]
EVAL_KEYS = [
    "eval_parse_rate",
    "eval_compile_rate",
    "eval_test_pass_rate",
    "eval_mean_reward",
    "eval_pass@1",
    "eval_pass@8",
    "eval_seconds",
]
ALL_KEYS = [*RUN_KEYS, *TEACHER_KEYS, *EVAL_KEYS]


def test_every_key_lands_in_a_namespace_and_no_two_share_a_name():
    names = [metric_name(k) for k in ALL_KEYS]
    assert names[0] == "iteration"
    assert all(n.split("/")[0] in NAMESPACES and n.count("/") == 1 for n in names[1:]), names
    assert len(set(names)) == len(ALL_KEYS)
    assert [metric_name(n) for n in names] == names  # a namespaced name stays as it is


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("avg_reward", "reward/mean"),  # the seed's names, renamed in their namespace
        ("compile_success_rate", "rust/compile_rate"),
        ("kl", "kl/mean"),
        ("kl_coef", "kl/beta"),
        ("reward_teacher", "reward/teacher"),  # a per-source reward term
        ("rust_timeouts", "rust/timeouts"),
        ("teacher_spend_usd", "teacher/spend_usd"),
        ("teacher_server_threads", "teacher/server_threads"),
        ("teacher_calls_in_flight_max", "perf/teacher_calls_in_flight_max"),  # a gauge first
        ("eval_seconds", "perf/eval_seconds"),  # every *_seconds is perf, the eval's too
        ("eval_pass@1", "eval/pass@1"),
        ("staleness_max", "perf/staleness_max"),
        ("score_hidden_frac", "perf/score_hidden_frac"),
        ("curriculum_easy_share", "curriculum/easy_share"),
        ("entropy", "train/entropy"),
    ],
)
def test_names_by_rule_and_by_exception(key, name):
    assert metric_name(key) == name


def test_tensorboard_tags_are_the_namespaced_names_with_legal_characters():
    assert tensorboard_tag("eval_pass@1") == "eval/pass_at_1"
    assert tensorboard_tag("step_seconds") == "perf/step_seconds"
    assert tensorboard_tag("avg_reward") == "reward/mean"


def test_the_csv_keeps_flat_names_and_the_jsonl_gets_namespaced_ones(tmp_path):
    row = {k: float(i) for i, k in enumerate(reversed(ALL_KEYS))}  # any order in
    logger = RunLogger(tmp_path, write_samples=False)
    logger.log_step(row)
    with (tmp_path / "metrics.csv").open(newline="") as f:
        header, cells = list(csv.reader(f))
    # The seed's and the leading columns first, then the row's other keys in its order.
    rest = [k for k in row if k not in LEADING_COLUMNS]
    assert header == [*LEADING_COLUMNS, *rest]
    assert dict(zip(header, map(float, cells), strict=True)) == row
    logged = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert list(logged) == [metric_name(k) for k in header]  # same order: iteration first
    assert logged == namespaced(row)


def test_namespaced_reads_old_flat_rows_and_new_rows_alike():
    old = {"iteration": 3, "avg_reward": 1.5, "eval_pass@1": None}
    new = {"iteration": 3, "reward/mean": 1.5, "eval/pass@1": None}
    assert namespaced(old) == namespaced(new) == new
