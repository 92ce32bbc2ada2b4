"""bench/learning.py: the learning preset, the acceptance rule, the table and its place in
RESULTS.md, rebuilding from saved evaluations, and a --quick run end to end on a tiny model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import learning
from rlaif.config import load
from rlaif.stats import Paired
from tests.conftest import REPO, SECRET_VARS


def test_ks_are_one_the_powers_of_two_and_n():
    assert learning.ks_for(1) == [1]
    assert learning.ks_for(4) == [1, 2, 4]
    assert learning.ks_for(6) == [1, 2, 4, 6]
    assert learning.ks_for(8) == [1, 2, 4, 8]


def test_the_learning_preset_is_config_yaml_with_a_longer_run():
    base, learn = load(REPO / "config.yaml"), load(REPO / "configs/learn.yaml")
    changed = {
        f"{section}.{key}"
        for section in vars(base)
        for key in vars(getattr(base, section))
        if getattr(getattr(base, section), key) != getattr(getattr(learn, section), key)
    }
    # Each of these is explained in configs/learn.yaml; anything else would be an undocumented
    # change to the recipe that is supposed to show the defaults learn.
    assert changed == {
        "run.output_dir",
        "student.generate_batch_size",
        "trainer.tasks_per_step",
        "trainer.max_steps",
        "trainer.learning_rate",
        "trainer.warmup_steps",
        "checkpoint.every",
        "checkpoint.keep",
    }
    assert 20 <= learn.trainer.max_steps <= 40  # about an hour at ~145 s a step
    # The same file as --preset on top of config.yaml gives the same config: the --set values it
    # becomes keep their types (5.0e-06 stays a float).
    assert (
        load(REPO / "config.yaml", learning.preset_overrides(REPO / "configs/learn.yaml")) == learn
    )
    assert "trainer.max_steps=24" in learning.preset_overrides(REPO / "configs/learn.yaml")


def test_preset_values_keep_their_yaml_types(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("trainer:\n  learning_rate: 5.0e-6\n  lr_schedule: constant\n")
    overrides = learning.preset_overrides(preset)
    assert overrides == ["trainer.learning_rate=5.0e-06", "trainer.lr_schedule=constant"]
    assert load(None, overrides).trainer.learning_rate == 5e-6
    preset.write_text("trainer: 3\n")
    with pytest.raises(learning.BenchError, match="section"):
        learning.preset_overrides(preset)


def paired(metric: str, before: float, after: float, low: float, high: float) -> Paired:
    return Paired(metric, before, after, after - before, (0, 1), (0, 1), (low, high))


@pytest.mark.parametrize(
    "reward_ci, compile_ci, passes",
    [
        ((0.4, 3.0), (0.02, 0.2), True),  # both rises' intervals lie above 0
        ((0.0, 3.0), (0.02, 0.2), False),  # the reward's interval touches 0
        ((-0.5, 3.0), (0.02, 0.2), False),
        ((0.4, 3.0), (-0.01, 0.2), False),  # compile rate up, but not beyond its interval
        ((0.4, 3.0), (-0.2, -0.05), False),  # compile rate down
    ],
)
def test_the_acceptance_rule(reward_ci, compile_ci, passes):
    result = {
        "mean_reward": paired("mean_reward", 1.0, 2.5, *reward_ci),
        "compile_rate": paired("compile_rate", 0.20, 0.30, *compile_ci),
        "pass@1": paired("pass@1", 0.05, 0.08, -0.02, 0.07),
    }
    ok, why = learning.verdict(result)
    assert ok is passes
    assert "mean reward +1.50" in why and f"CI low {reward_ci[0]:+.2f}" in why
    assert f"CI low {compile_ci[0]:+.3f}" in why
    assert "pass@1 +0.030 [-0.020, +0.070]" in why  # reported, not required


def test_the_section_is_created_then_replaced_and_the_rest_kept(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## rustc\n\nkeep me\n")
    first = learning.replace_section(results.read_text(), "table one")
    assert first.startswith("# Benchmark results\n\n## rustc\n\nkeep me\n\n## Does it learn?")
    assert f"{learning.BEGIN}\ntable one\n{learning.END}\n" in first
    # A section after it stays too, and a second run replaces only what the markers hold.
    second = learning.replace_section(first + "\n## later\n\nalso kept\n", "table two")
    assert "table one" not in second and "table two" in second
    assert second.count(learning.BEGIN) == 1 and second.count("## Does it learn?") == 1
    assert "keep me" in second and second.endswith("## later\n\nalso kept\n")
    with pytest.raises(learning.BenchError, match="exactly one"):
        learning.replace_section(f"{learning.END}\n{learning.BEGIN}\n", "x")


def test_the_teacher_run_has_its_own_section_beside_the_compiler_only_one(tmp_path):
    text = learning.replace_section("# Benchmark results\n", "compiler-only table")
    both = learning.replace_section(text, "teacher table", learning.TEACHER_MARKERS)
    assert "compiler-only table" in both and "teacher table" in both
    assert both.index("## Does it learn?") < both.index("## Does the teacher help?")
    again = learning.replace_section(both, "teacher table 2", learning.TEACHER_MARKERS)
    assert "teacher table 2" in again and "compiler-only table" in again
    assert again.count("## Does the teacher help?") == 1


def test_the_teacher_paragraph_gives_its_share_of_the_reward_and_the_step_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    samples = [
        {"components": {"compile": 10.0, "teacher": 5.0, "per_error": -5.0}},
        {"components": {"compile": 0.0, "teacher": float("nan")}},  # an abstention: no term
        {"components": {"compile": 0.0, "teacher": None}},  # the same, as strict JSON writes it
    ]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    rows = [
        {"iteration": 1, "step_seconds": 100.0},
        {
            "iteration": 2,
            "step_seconds": 140.0,
            "teacher_requests": 7,
            "teacher_verdicts": 6,
            "teacher_abstained": 1,
            "teacher_latency_p50_s": 12.5,
        },
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = learning.teacher_paragraph(run)
    assert "25.0%" in text  # 5 of |10| + |5| + |-5| = 20; the abstention adds nothing
    assert "Requests 7, verdicts 6, abstentions 1, latency p50 12.5 s; 120 s per step" in text


def record(task: str, sample: int, reward: float, compiled: bool, passed: int) -> dict:
    return {
        "model": "runs/x/checkpoints/step_48",
        "task_id": task,
        "difficulty": "easy",
        "sample": sample,
        "completion": f"```rust\nfn f() -> i32 {{ {sample} }}\n```",
        "reward": reward,
        "components": {"compile": 10.0 if compiled else 0.0, "tests": 2.0 * passed},
        "parsed": True,
        "compiled": compiled,
        "errors": 0 if compiled else 1,
        "tests_passed": passed,
        "tests_total": 2 if compiled else 0,
    }


def save_evals(work, improve: bool) -> None:
    """12 tasks x 4 samples; after training every task gains one compiling, passing sample
    (or, with improve=False, nothing changes)."""
    before, after = [], []
    for t in range(12):
        for i in range(4):
            compiled = i < 1 + t % 3
            before.append(
                record(f"t{t}", i, 10.0 * compiled + t % 4, compiled, i % 3 if compiled else 0)
            )
            better = compiled or (improve and i == 3)
            gain = 2 if better and not compiled else i % 3 if compiled else 0
            after.append(
                record(
                    f"t{t}", i, 10.0 * better + t % 4 + 4 * (better and not compiled), better, gain
                )
            )
    work.mkdir(parents=True, exist_ok=True)
    (work / "before.jsonl").write_text("".join(json.dumps(r) + "\n" for r in before))
    (work / "after.jsonl").write_text("".join(json.dumps(r) + "\n" for r in after))
    meta = {
        "machine": {"cpu": "Test CPU", "cores": 2},
        "date": "2026-12-03 18:00 UTC",
        "command": "python bench/learning.py",
        "samples": 4,
        "tasks": 12,
        "seed": 0,
        "temperature": 0.8,
        "resamples": 1000,
        "before": {"model": "models/smollm2-135m-instruct", "seconds": 900.0},
        "train": {
            "command": "python -m rlaif train",
            "run_dir": str(work / "no-run"),
            "steps": 48,
            "seconds": 3300.0,
        },
        "after": {"model": "runs/x", "seconds": 930.0},
    }
    (work / "meta.json").write_text(json.dumps(meta))


def test_the_table_is_rebuilt_from_saved_evaluations(tmp_path, capsys):
    work, out, results = tmp_path / "work", tmp_path / "out", tmp_path / "RESULTS.md"
    save_evals(work, improve=True)
    results.write_text("# Benchmark results\n\nearlier blocks\n")
    args = ["--table", "--work", str(work), "--out", str(out), "--results", str(results)]
    assert learning.main(args) == 0
    text = results.read_text()
    assert (
        "earlier blocks" in text and "Test CPU (2 cores)" in text and "48 steps in 55.0 min" in text
    )
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    assert set(rows) >= {
        "mean_reward",
        "parse_rate",
        "compile_rate",
        "test_pass_rate",
        "pass@1",
        "pass@2",
        "pass@4",
    }
    # Compile rate: 24 of 48 samples before (1, 2 or 3 of 4 per task), 36 after: +0.25 on every
    # draw of tasks, so its interval is the point.
    assert "| compile_rate | 0.500 [" in rows["compile_rate"]
    assert "| +0.250 [+0.250, +0.250] |" in rows["compile_rate"]
    assert "**PASS**" in text and "PASS: mean reward" in capsys.readouterr().out
    samples = (out / "samples.md").read_text()
    assert samples.count("\n## ") == learning.SHOWN
    # The highest rewards come first: reward 17 is 10 (compiles) + 3 (t % 4) + 4.
    assert "reward 17.00" in samples.split("\n## 2.")[0]
    # Again, after a change: the section is replaced, not repeated.
    save_evals(work, improve=False)
    assert learning.main(args) == 1
    text = results.read_text()
    assert text.count(learning.BEGIN) == 1 and "**FAIL**" in text and "**PASS**" not in text
    assert "| +0.000 [+0.000, +0.000] |" in text


def test_missing_saved_evaluations_are_an_error_not_a_crash(tmp_path, capsys):
    assert learning.main(["--table", "--work", str(tmp_path)]) == 2
    assert "nothing saved" in capsys.readouterr().err
    args = ["--skip-before", "--work", str(tmp_path / "w"), "--results", str(tmp_path / "R.md")]
    assert learning.main(args) == 2  # refused before any model loads
    assert "no saved before-evaluation" in capsys.readouterr().err


def test_samples_markdown_fences_cannot_be_closed_by_the_completion():
    r = record("t", 0, 5.0, True, 1)
    r["completion"] = "text ```` more"
    md = learning.samples_markdown([r])
    assert "`````markdown\ntext ```` more\n`````" in md
    nan = {**record("u", 1, 0.0, False, 0), "reward": math.nan}
    assert learning.samples_markdown([nan, r]).index("`t`") < learning.samples_markdown(
        [nan, r]
    ).index("`u`")


def run_quick_bench(tiny_model_dir, work, *extra):
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    done = subprocess.run(
        [
            sys.executable,
            "bench/learning.py",
            "--quick",
            "--work",
            str(work),
            "--set",
            f"student.model={tiny_model_dir}",
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]  # PASS or FAIL, but it ran
    return done


def test_quick_run_end_to_end(tiny_model_dir, tmp_path):
    # 47 s here with the machine shared (load 4.9): the project's own eval, train and eval
    # commands in subprocesses, on the tiny model, 3 tasks x 2 samples, 2 steps.
    work = tmp_path / "work"
    done = run_quick_bench(tiny_model_dir, work)
    assert ("PASS:" in done.stdout) != ("FAIL:" in done.stdout)
    meta = json.loads((work / "meta.json").read_text())
    assert meta["train"]["steps"] == 2 and meta["tasks"] == 3 and meta["samples"] == 2
    before = [json.loads(line) for line in (work / "before.jsonl").read_text().splitlines()]
    after = [json.loads(line) for line in (work / "after.jsonl").read_text().splitlines()]
    assert len(before) == len(after) == 6
    assert after[0]["model"].endswith("checkpoints/step_2")
    text = (work / "RESULTS.md").read_text()  # the smoke test leaves bench/RESULTS.md alone
    assert learning.BEGIN in text and "| mean_reward |" in text
    assert (work / "learning" / "reward.png").is_file()
    assert (work / "learning" / "samples.md").is_file()

    # A second run reusing this one's before-evaluation trains and evaluates its own run (the
    # copy of the saved files once renamed the run after the last file copied).
    again = tmp_path / "again"
    run_quick_bench(tiny_model_dir, again, "--before-from", str(work))
    meta_again = json.loads((again / "meta.json").read_text())
    assert (again / "before.jsonl").read_text() == (work / "before.jsonl").read_text()
    assert meta_again["before"] == meta["before"]
    run_dir = Path(meta_again["train"]["run_dir"])
    assert run_dir.name.startswith("learn-") and meta_again["train"]["steps"] == 2
    after_again = [json.loads(line) for line in (again / "after.jsonl").read_text().splitlines()]
    assert after_again[0]["model"].endswith(f"{run_dir.name}/checkpoints/step_2")
