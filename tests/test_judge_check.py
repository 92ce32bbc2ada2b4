"""judge-check: the statistics on hand-computed cases, the labelled set (reader, mutants, the
builder with the real rustc), and the check itself through the real `Teacher` and openai SDK
against `TeacherServer` on loopback, with a random judge, an oracle and a faulty server."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re

import anyio
import numpy as np
import pytest
from teacher_server import Faults, Malformed, Reply, Status, TeacherServer, user_text

from rlaif.cache import ResultCache
from rlaif.config import RustConfig, TeacherConfig
from rlaif.data.tasks import DataError, load_tasks
from rlaif.evaluation.judge_check import (
    auc,
    average_ranks,
    blind_teacher_config,
    bootstrap_auc,
    run_judge_check,
    spearman,
)
from rlaif.evaluation.judge_set import (
    Labelled,
    build_labelled_set,
    mutants,
    read_labelled,
    read_samples,
    write_labelled,
)
from rlaif.judges.rust.jobs import RustJudge
from rlaif.judges.teacher.rubric import compiler_report, grading_request
from rlaif.judges.teacher.setup import make_teacher
from rlaif.types import RustResult
from tests.conftest import REPO, run_cli, settings

KEY_ENV = "RLAIF_TEST_JUDGE_CHECK_KEY"
DEFAULT_SET = REPO / "data" / "judge_check.jsonl"
TRAIN = REPO / "data" / "train.jsonl"
RESAMPLES = 500  # enough for a stable interval in a test; the command uses 2000


# --- the statistics, by hand -----------------------------------------------------------------


def test_average_ranks_share_ties():
    # Sorted: 1 (rank 1), then the two 3s take ranks 2 and 3 and share their mean 2.5.
    assert average_ranks([3, 1, 3]).tolist() == [2.5, 1.0, 2.5]
    assert average_ranks([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]


def test_auc_counts_every_pair_and_ties_half():
    # Pairs (pos, neg): (3,1) 1, (3,2) 1, (2,1) 1, (2,2) 1/2 -> 3.5 / 4 = 0.875.
    assert auc([3, 2], [1, 2]) == 0.875
    assert auc([1, 1], [1]) == 0.5  # all tied: no better than a coin
    assert auc([0], [1, 2]) == 0.0  # every negative above every positive
    assert math.isnan(auc([], [1])) and math.isnan(auc([1], []))


def test_spearman_by_hand():
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); d = (0, -1, 1, 0) -> 1 - 6*2/60 = 0.8.
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties: x ranks (1.5, 1.5, 3) centred (-0.5, -0.5, 1); y ranks (1, 2, 3) centred (-1, 0, 1);
    # sum xy = 1.5, sum x^2 = 1.5, sum y^2 = 2 -> 1.5 / sqrt(3) = 0.8660.
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side has no ranking
    assert math.isnan(spearman([1], [1]))


def test_bootstrap_interval_of_the_auc():
    # Perfectly separated: every draw that holds both classes has AUC 1; ties everywhere: 1/2.
    assert bootstrap_auc([1.0, 0.0], [True, False], resamples=200) == (1.0, 1.0)
    assert bootstrap_auc([1.0, 1.0], [True, False], resamples=200) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_auc([1.0, 2.0], [True, True]))
    # A mixed case (AUC 0.5: pos 2 beats neg 1, pos 0 does not): the draws spread either side.
    scores, positive = [2.0, 0.0, 1.0, 3.0, -1.0], [True, True, False, False, False]
    low, high = bootstrap_auc(scores, positive, resamples=2000, seed=1)
    assert 0.0 <= low < auc([2, 0], [1, 3, -1]) < high <= 1.0
    assert bootstrap_auc(scores, positive, resamples=2000, seed=1) == (low, high)  # seeded


def test_bootstrap_draws_weigh_records_by_their_count():
    # The interval from counts must equal the AUC computed directly on each drawn list.
    scores = np.array([0.3, 0.9, 0.1, 0.7, 0.7, 0.2])
    positive = np.array([True, True, False, False, True, False])
    rng = np.random.default_rng(7)
    draws = rng.integers(0, 6, size=(300, 6))
    direct = [auc(scores[d][positive[d]], scores[d][~positive[d]]) for d in draws]
    direct = np.array([v for v in direct if not math.isnan(v)])
    expected = tuple(np.percentile(direct, [2.5, 97.5]))
    assert bootstrap_auc(scores, positive, resamples=300, seed=7) == pytest.approx(expected)


# --- the labelled set ----------------------------------------------------------------------


def row(**overrides) -> dict:
    base = {
        "task_id": "count_ascii_vowels",
        "code": "fn count_vowels(s: &str) -> usize { 0 }",
        "source": "mutant",
        "compiles": True,
        "tests_passed": 1 / 3,
        "all_pass": False,
    }
    return {**base, **overrides}


def test_the_reader_names_file_line_and_key_of_every_bad_line(tmp_path):
    path = tmp_path / "set.jsonl"
    lines = [
        json.dumps(row()),
        "{not json",
        json.dumps({k: v for k, v in row().items() if k != "code"}),
        json.dumps(row(tests_passed=1.5)),
        json.dumps(row(compiles=False)),  # a fraction for code that does not compile
        json.dumps(row(source="teacher", verdict=3)),
        json.dumps(row(tests_passed=1.0)),  # all tests pass, but all_pass says no
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        read_labelled(path)
    message = str(caught.value)
    assert f"{path}:1:" not in message
    assert f"{path}:2: not valid JSON" in message
    assert f"{path}:3: code: missing" in message
    assert f"{path}:4: tests_passed: expected a fraction 0..1 or null" in message
    assert f"{path}:5: tests_passed: must be null for code that does not compile" in message
    assert f"{path}:6: verdict: unknown key" in message
    assert f"{path}:6: source: 'teacher' is not one of" in message
    assert f"{path}:7: all_pass: False contradicts tests_passed 1.0" in message


def test_records_survive_a_write_and_a_read(tmp_path):
    records = [
        Labelled("a", "fn a() {}", "reference", True, 1.0, True),
        Labelled("a", "fn a() { 1 }", "mutant", True, 0.5, False, "line 1: `0` -> `1`"),
        Labelled("b", "fn b( {}", "student", False, None, False),
    ]
    write_labelled(tmp_path / "set.jsonl", records)
    read = read_labelled(tmp_path / "set.jsonl")
    assert [r.row() for r in read] == [r.row() for r in records]
    assert [r.outcome for r in read] == ["all_pass", "compiles_fails", "no_compile"]
    assert read[2].where == f"{tmp_path / 'set.jsonl'}:3"


def test_mutants_touch_code_only_never_literals_comments_or_generics():
    code = (
        "fn f<'a>(xs: &'a [i32], s: &str) -> Vec<i32> {\n"
        "    // keep a < b here\n    let t = \"1 + 2 == 3\"; let c = '<';\n"
        "    (0..xs.len()).map(|i| xs[i] + 1).collect()\n}"
    )
    found = dict(mutants(code))
    assert set(found) == {
        "line 4: `0` -> `1`",
        "line 4: `..` -> `..=`",
        "line 4: `+` -> `-`",
        "line 4: `1` -> `2`",
        "line 4: `1` -> `0`",
    }
    assert found["line 4: `+` -> `-`"] == code.replace("xs[i] + 1", "xs[i] - 1")
    assert mutants("fn g() -> f64 { x.0 * 1.5 }") == [
        ("line 1: `*` -> `/`", "fn g() -> f64 { x.0 / 1.5 }")
    ]


def test_samples_of_tasks_that_are_not_training_tasks_are_refused(tmp_path):
    tasks = {t.id: t for t in load_tasks(TRAIN)}
    path = tmp_path / "samples.jsonl"
    rows = [
        {"task_id": "count_ascii_vowels", "code": "fn a() {}", "reward": 1},
        {"task_id": "count_ascii_vowels", "code": "fn a() {}"},  # a repeat
        {"task_id": "count_ascii_vowels", "code": ""},  # nothing to grade
        {"task_id": "an_eval_task", "code": "fn b() {}"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"samples.jsonl:4: task_id: 'an_eval_task' is not a tr"):
        read_samples(path, tasks)
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    assert read_samples(path, tasks) == [("count_ascii_vowels", "fn a() {}")]


VOWELS_WRONG = "fn count_vowels(s: &str) -> usize { s.len() }"  # passes none of the 3 tests
VOWELS_BROKEN = "fn count_vowels(s: &str) -> usize { s.chars().count() as i64 }"  # E0308
CLAMP_OK = (
    "fn clamp_all(xs: &mut [i32], lo: i32, hi: i32) -> usize {\n"
    "    let mut n = 0;\n    for x in xs.iter_mut() {\n"
    "        if *x < lo { *x = lo; n += 1; } else if *x > hi { *x = hi; n += 1; }\n"
    "    }\n    n\n}"
)


def test_the_builder_labels_with_the_real_rustc(toolchain, tmp_path):
    tasks = [t for t in load_tasks(TRAIN) if t.id in ("count_ascii_vowels", "clamp_slice_in_place")]
    samples = [
        ("count_ascii_vowels", VOWELS_WRONG),
        ("count_ascii_vowels", VOWELS_BROKEN),
        ("clamp_slice_in_place", CLAMP_OK),
    ]

    def build() -> list[Labelled]:
        judge = RustJudge(toolchain, RustConfig(), 2, ResultCache(tmp_path, "rust"))
        return anyio.run(
            lambda: build_labelled_set(tasks, samples, judge, per_class=3, per_task=2, seed=0)
        )

    records = build()
    by_source = {s: [r for r in records if r.source == s] for s in ("reference", "mutant")}
    assert {r.task_id for r in by_source["reference"]} == {t.id for t in tasks}
    assert all(r.outcome == "all_pass" and r.tests_passed == 1.0 for r in by_source["reference"])
    # count_vowels' reference has nothing to mutate (no operator, no integer): clamp_all's only.
    clamp = next(t for t in tasks if t.id == "clamp_slice_in_place")
    assert [r.task_id for r in by_source["mutant"]] == ["clamp_slice_in_place"] * 2
    for mutant in by_source["mutant"]:
        assert mutant.outcome == "compiles_fails" and mutant.tests_passed < 1.0
        assert (mutant.mutation, mutant.code) in mutants(clamp.reference)
    students = {r.code: r for r in records if r.source == "student"}
    assert students[VOWELS_WRONG].outcome == "compiles_fails"
    assert students[VOWELS_WRONG].tests_passed == 0.0
    assert students[VOWELS_BROKEN].outcome == "no_compile"
    assert students[VOWELS_BROKEN].tests_passed is None
    assert students[CLAMP_OK].outcome == "all_pass"
    assert build() == records  # seeded: the same set again (rustc from the cache this time)


# --- the check against a real HTTP teacher ----------------------------------------------------


def verdict(correctness: int) -> str:
    """A rubric reply whose other criteria are constant, so the weighted score orders the
    records as correctness does."""
    rest = {"quality": 5, "idiomaticity": 5, "efficiency": 5, "documentation": 5}
    return json.dumps({"correctness": correctness, **rest, "reason": "test"})


def candidate_code(body) -> str:
    found = re.search(r"<candidate_code-(\w+)>\n(.*)\n</candidate_code-\1>", user_text(body), re.S)
    assert found, user_text(body)
    return found.group(2)


def oracle(records: list[Labelled]):
    """The perfect judge: looks the code up in the labels (10 when it passes every test)."""
    passes = {r.code: r.all_pass for r in records}
    return lambda body: verdict(10 if passes[candidate_code(body)] else 2)


def teacher_for(server: TeacherServer, monkeypatch, **overrides):
    monkeypatch.setenv(KEY_ENV, "sk-test-judge-check")
    config = TeacherConfig(
        provider="openai-compatible",
        model="judge",
        api_key_env=KEY_ENV,
        base_url=server.openai_url,
        timeout_s=5.0,
        requests_per_minute=0.0,
        tokens_per_minute=0.0,
        max_attempts=1,
        **overrides,
    )
    teacher, status = make_teacher(blind_teacher_config(config))
    assert teacher is not None, status
    return teacher


def check(records, server, monkeypatch, **overrides) -> dict:
    tasks = {t.id: t for t in load_tasks(TRAIN)}
    teacher = teacher_for(server, monkeypatch, **overrides)
    return run_judge_check(records, tasks, str(TRAIN), teacher, resamples=RESAMPLES)


@pytest.fixture(scope="module")
def default_set() -> list[Labelled]:
    return read_labelled(DEFAULT_SET)


@pytest.fixture(scope="module")
def oracle_run(default_set):
    """The oracle judge over the whole default set: (report, the requests the server saw)."""
    server = TeacherServer(answer=oracle(default_set))
    with pytest.MonkeyPatch.context() as monkeypatch, server:
        report = check(default_set, server, monkeypatch)
        return report, server.requests


def test_the_default_set_has_a_third_of_each_source(default_set):
    sources = [r.source for r in default_set]
    assert 100 <= len(default_set) <= 140
    assert {s: sources.count(s) for s in set(sources)} == {
        "reference": 40,
        "mutant": 40,
        "student": 40,
    }
    students = [r.outcome for r in default_set if r.source == "student"]
    assert set(students) == {"all_pass", "compiles_fails", "no_compile"}  # mixed outcomes
    eval_ids = {t.id for t in load_tasks(REPO / "data" / "eval.jsonl")}
    assert not eval_ids & {r.task_id for r in default_set}  # training tasks only


def test_a_random_judge_is_near_a_coin(default_set, monkeypatch):
    # The random correctness is seeded by the code, so the run is the same whatever order the
    # requests arrive in. With 48 positives and 48 negatives the AUC of a judge that knows
    # nothing has a standard deviation of sqrt((P + N + 1) / (12 P N)) = 0.059, so the band
    # 0.3..0.7 is over 3 standard deviations either side of 0.5: a judge that knew something
    # (the oracle's 1.0) or was scored against the wrong class (the AUC would flip) falls out.
    def coin(body) -> str:
        return verdict(random.Random(f"0:{candidate_code(body)}").randint(0, 10))

    with TeacherServer(answer=coin) as server:
        report = check(default_set, server, monkeypatch)
    entry = report["auc_correctness"]
    assert (entry["positives"], entry["negatives"]) == (48, 48)
    assert 0.3 <= entry["value"] <= 0.7
    assert entry["low"] < entry["value"] < entry["high"]
    assert abs(report["spearman_correctness_tests"]["value"]) < 0.3
    assert report["abstained"]["count"] == 0 and report["verdicts"] == len(default_set)


def test_a_perfect_judge_scores_auc_one(oracle_run, default_set):
    report, _ = oracle_run
    for key in ("auc_correctness", "auc_score"):
        entry = report[key]
        assert (entry["value"], entry["low"], entry["high"]) == (1.0, 1.0, 1.0), key
    # Correctness takes two values (10 for the 48 that pass, 2 for the 48 that fail); the
    # passers all have fraction 1.0, so the ranks agree up to ties: rho >= 0.926 (all 48
    # failing fractions distinct), higher with ties among them.
    rho = report["spearman_correctness_tests"]
    assert rho["n"] == 96 and rho["value"] > 0.92
    assert report["records"]["total"] == len(default_set) == report["verdicts"]


def test_the_teacher_never_sees_the_outcome_it_predicts(oracle_run, default_set):
    _, requests = oracle_run
    # Every record is sent, those that do not compile too (only_compiled does not filter).
    assert sorted(candidate_code(r.body) for r in requests) == sorted(r.code for r in default_set)
    for request in requests:
        # Outside the graded code (a student's may print "All tests passed."): rustc's report
        # (rubric.compiler_report) or its block would be there.
        text = json.dumps(request.body).replace(json.dumps(candidate_code(request.body))[1:-1], "")
        for leak in ("tests passed", "hidden tests", "compiles:", "rustc errors", "<facts-"):
            assert leak not in text, (leak, text[:500])
    # The words looked for are those a request that shows rustc's report carries.
    report = compiler_report(RustResult(compiled=True, tests_total=3, tests_passed=2), True)
    shown = grading_request(load_tasks(TRAIN)[0], "fn f() {}", report)
    assert all(leak in shown for leak in ("tests passed", "hidden tests", "compiles:", "<facts-"))


def test_a_teacher_that_would_show_rustc_is_refused(default_set, monkeypatch):
    with TeacherServer() as server:
        teacher = teacher_for(server, monkeypatch)
        teacher.config = dataclasses.replace(teacher.config, show_rustc=True)
        tasks = {t.id: t for t in load_tasks(TRAIN)}
        with pytest.raises(ValueError, match="asks the teacher blind"):
            run_judge_check(default_set[:2], tasks, str(TRAIN), teacher)
        assert server.requests == []


def test_faults_are_abstentions_counted_and_left_out(default_set, monkeypatch):
    records = default_set[:40]
    perfect = oracle(records)

    def sometimes_garbage(body) -> str:
        # About one reply in six is prose: an "unparsable" abstention.
        if random.Random(candidate_code(body)).random() < 1 / 6:
            return "Looks fine to me!"
        return perfect(body)

    # breaker_failures is high so that every 500 stays its own "server_error" abstention
    # (an open circuit would refuse the next ones as "unavailable" at once).
    with TeacherServer(answer=sometimes_garbage, faults=Faults(rate_500=0.25, seed=3)) as server:
        server.script(Malformed(), Malformed())
        report = check(records, server, monkeypatch, breaker_failures=1000)
        answered = [r.behaviour for r in server.requests]
    errors = sum(isinstance(b, Status) for b in answered)
    garbage = sum(isinstance(b, Reply) and b.text == "Looks fine to me!" for b in answered)
    assert len(answered) == len(records)  # max_attempts 1: no retries
    assert errors >= 3 and garbage >= 2  # the seeds give each kind of fault
    abstained = report["abstained"]
    assert abstained["reasons"] == {
        "bad_response": 2,
        "server_error": errors,
        "unparsable": garbage,
    }
    assert abstained["count"] == 2 + errors + garbage
    assert abstained["rate"] == pytest.approx(abstained["count"] / len(records))
    assert report["verdicts"] == len(records) - abstained["count"]
    # Left out, not scored: the classes hold exactly the compiling records with a verdict, and
    # the oracle's AUC stays 1 (an abstention scored 0 among the positives would pull it down).
    kept = [r for r, v in zip(records, report["per_record"], strict=True) if v["abstained"] is None]
    entry = report["auc_correctness"]
    assert entry["positives"] == sum(r.outcome == "all_pass" for r in kept)
    assert entry["negatives"] == sum(r.outcome == "compiles_fails" for r in kept)
    assert entry["value"] == 1.0
    assert all(
        math.isnan(v["correctness"]) and math.isnan(v["score"])
        for v in report["per_record"]
        if v["abstained"] is not None
    )


# --- the command line --------------------------------------------------------------------------


def teacher_settings(server: TeacherServer, tmp_path) -> list[str]:
    return settings(
        teacher__provider="openai-compatible",
        teacher__model="judge",
        teacher__base_url=server.openai_url,
        teacher__api_key_env=KEY_ENV,
        teacher__requests_per_minute=0,
        teacher__show_rustc="true",  # the training default: the check hides it all the same
        cache__dir=tmp_path / "cache",  # a fresh cache: every record is sent
    )


def test_the_command_checks_a_few_records_and_writes_strict_json(default_set, tmp_path):
    out = tmp_path / "report.json"
    with TeacherServer(answer=oracle(default_set)) as server:
        done = run_cli(
            "judge-check",
            "--limit",
            "12",
            "--output",
            str(out),
            *teacher_settings(server, tmp_path),
            env={KEY_ENV: "sk-test-judge-check"},
            timeout=120,
        )
        requests = server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(requests) == 12
    assert "<facts-" not in json.dumps([r.body for r in requests])
    assert "AUC correctness [95% CI]" in done.stdout and "asked blind" in done.stdout

    def no_nan(constant: str):
        raise AssertionError(f"{constant} in the report: not strict JSON")

    report = json.loads(out.read_text(), parse_constant=no_nan)
    assert report["records"]["total"] == 12 and len(report["per_record"]) == 12
    assert [r["task_id"] for r in report["per_record"]] == [r.task_id for r in default_set[:12]]
    assert report["teacher"]["requests"] == 12
    assert report["teacher"]["cost_usd"] is None  # the "judge" model has no known price


def test_the_command_without_a_teacher_says_how_to_configure_one(tmp_path):
    done = run_cli(
        "judge-check",
        "--limit",
        "2",
        *settings(teacher__api_key_env="RLAIF_TEST_UNSET_KEY", cache__dir=tmp_path),
        timeout=60,
    )
    assert done.returncode == 2
    assert "judge-check needs a teacher, and it is off" in done.stderr
    assert "RLAIF_TEST_UNSET_KEY" in done.stderr and "teacher.provider" in done.stderr


def test_the_command_builds_a_set_from_training_tasks_and_samples(tmp_path):
    tasks = [t for t in load_tasks(TRAIN) if t.id == "clamp_slice_in_place"]
    train = tmp_path / "train.jsonl"
    line = next(x for x in TRAIN.read_text().splitlines() if '"clamp_slice_in_place"' in x)
    train.write_text(line + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": tasks[0].id, "code": CLAMP_OK, "step": 1}) + "\n")
    out = tmp_path / "set.jsonl"
    args = ["judge-check", "--build", str(out), "--from-samples", str(samples)]
    done = run_cli(
        *args,
        "--per-class",
        "1",
        *settings(data__train=train, cache__dir=tmp_path / "cache"),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_labelled(out)
    assert sorted((r.source, r.outcome) for r in records) == [
        ("mutant", "compiles_fails"),
        ("reference", "all_pass"),
        ("student", "all_pass"),
    ]
    assert "wrote 3 labelled records" in done.stdout
    missing = run_cli("judge-check", "--build", str(out), timeout=60)
    assert missing.returncode == 2 and "--from-samples" in missing.stderr
