"""Report: a real run's plots and summary, TensorBoard files, periodic eval columns, and a
hand-written run with other columns (a teacher, no samples) to check what is drawn or skipped."""

from __future__ import annotations

import csv
import hashlib
import json
import math

import pytest

from rlaif import strict_json
from rlaif.records.metrics import NAMESPACES, metric_name
from rlaif.records.report import write_report
from tests.conftest import run_cli, settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    done = run_cli(
        *settings(
            student__model=tiny_model_dir,
            student__max_new_tokens=16,
            trainer__samples_per_prompt=2,
            trainer__max_steps=3,
            teacher__provider="none",
            logging__tensorboard="true",
            eval__every=2,
            eval__max_tasks=2,
            cache__dir=out / "cache",
            run__output_dir=out,
            run__name="reported",
        )
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "reported"


def test_report_writes_one_distinct_png_per_plot_and_a_summary(run_dir):
    done = run_cli("report", str(run_dir), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = run_dir / "report"
    pngs = sorted(report.glob("*.png"))
    names = {p.stem for p in pngs}
    # The teacher was off: its plot is skipped with a note; every other plot has data.
    assert names == {"reward", "pass_rates", "kl", "curriculum", "step_time", "eval"}
    assert "skipped: teacher.png: no teacher scores" in done.stdout
    hashes = set()
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, png
        hashes.add(hashlib.sha256(data).hexdigest())
    assert len(hashes) == len(pngs)  # no two plots are the same picture

    summary = (report / "README.md").read_text()
    assert summary.startswith("# Report: reported")
    assert "3 steps logged (1 to 3), 12 completions" in summary
    assert "| reward/mean |" in summary and "| eval/pass@1 |" in summary
    for name in names:
        assert f"![{name}]({name}.png)" in summary
    assert "- teacher.png: no teacher scores" in summary
    best = summary.split("## Best completions")[1].split("## Worst completions")[0]
    worst = summary.split("## Worst completions")[1]
    assert best.count("### ") == 3 and worst.count("### ") == 3
    rewards = [json.loads(line)["reward"] for line in (run_dir / "samples.jsonl").open()]
    assert f"reward {max(rewards):.2f}" in best.split("### 2.")[0]
    assert f"reward {min(rewards):.2f}" in worst.split("### 2.")[0]


def test_tensorboard_event_files_hold_the_logged_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert [e.step for e in accumulator.Scalars("reward/mean")] == [1, 2, 3]
    assert [e.step for e in accumulator.Scalars("perf/step_seconds")] == [1, 2, 3]
    assert [e.step for e in accumulator.Scalars("eval/pass_at_1")] == [2]  # eval.every = 2
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert accumulator.Scalars("kl/mean")[2].value == pytest.approx(logged[2]["kl/mean"], rel=1e-6)
    assert {tag.split("/")[0] for tag in tags} <= set(NAMESPACES)
    assert "iteration" not in tags and "train/iteration" not in tags


def test_the_csv_keeps_the_flat_names_and_the_jsonl_namespaces_every_key(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    header = list(rows[0])
    assert header[:3] == ["iteration", "avg_reward", "reward_std"]
    assert all("/" not in column for column in header)
    for row, line in zip(rows, logged, strict=True):
        assert list(line) == [metric_name(c) for c in header]  # iteration first, same order
        assert list(line)[0] == "iteration"
        assert {k.split("/")[0] for k in list(line)[1:]} <= set(NAMESPACES), list(line)
        for column, cell in row.items():
            # An empty cell (no value) and "nan" (NaN) are both null in metrics.jsonl.
            expected = float(cell) if cell else math.nan
            logged = strict_json.number(line[metric_name(column)])
            assert logged == pytest.approx(expected, rel=1e-5, nan_ok=True), column


def test_periodic_eval_fills_its_columns_every_n_steps(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    filled = [r["iteration"] for r in rows if r["eval_pass@1"] != ""]
    assert filled == ["2"]
    row = rows[1]
    assert 0 <= float(row["eval_compile_rate"]) <= 1 and float(row["eval_seconds"]) > 0
    assert {"eval_pass@1", "eval_pass@2", "eval_test_pass_rate"} <= set(row)


def test_a_resumed_older_run_with_a_teacher_and_no_samples_file(tmp_path):
    # Hand-written rows: the teacher scored, abstained on step 2; no samples.jsonl, no eval.
    # Steps 1 and 2 were logged before the names were namespaced, step 3 after a resume.
    rows = [
        {
            "iteration": i,
            "avg_reward": 1.0 * i,
            "reward_std": 0.5,
            "compile_success_rate": 0.25 * i,
            "kl": 0.01 * i,
            "kl_coef": 0.05,
            "teacher_score_mean": 0.5 if i != 2 else math.nan,
            "teacher_abstain_rate": 0.0 if i != 2 else 1.0,
            "step_seconds": 2.0,
            "gen_seconds": 1.0,
            "train_seconds": 0.5,
        }
        for i in (1, 2, 3)
    ]
    rows[2] = {metric_name(k): v for k, v in rows[2].items()}
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + '{"iteration": 4, "avg_')  # cut by a kill
    report = write_report(tmp_path)
    assert sorted(p.stem for p in report.plots) == [
        "kl",
        "pass_rates",
        "reward",
        "step_time",
        "teacher",
    ]
    assert sorted(n.split(":")[0] for n in report.notes) == ["curriculum.png", "eval.png"]
    summary = report.summary.read_text()
    assert "0 completions" in summary and "(none scored)" in summary
    # kl: first 0.01, last 0.03, lowest 0.01 at step 1, mean 0.02.
    assert "| kl/mean | 0.01 | 0.03 | 0.01 (1) | 0.02 |" in summary
    assert "| reward/mean | 1 | 3 | 3 (3) | 2 |" in summary
    assert "Time: 6.0 s over 3 steps" in summary


def test_report_on_a_directory_without_metrics_is_an_error(tmp_path):
    done = run_cli("report", str(tmp_path), timeout=60)
    assert done.returncode == 2 and "no metrics.jsonl" in done.stderr
