"""Resume: 2 steps + resume for 2 equals 4 steps straight; config changes that alter training are
refused; the logs are trimmed to the checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from safetensors.torch import load_file

from rlaif import config as config_module
from rlaif.config import Config, ConfigError, RunConfig, TrainerConfig
from rlaif.records.checkpoint import (
    RNG_FILE,
    STATE_FILE,
    TRAINER_FILE,
    CheckpointError,
    tasks_fingerprint,
)
from rlaif.records.resume import check_config, check_tasks, locate, trim_logs
from rlaif.types import Task
from tests.conftest import run_cli, settings


def train(tiny_model_dir, out, name, *extra):
    done = run_cli(
        *settings(
            student__model=tiny_model_dir,
            student__max_new_tokens=16,
            trainer__samples_per_prompt=2,
            # A large rate: a resume that lost the optimizer's moments or the RNG would move the
            # weights by ~1e-3, far beyond the 1e-6 the test allows.
            trainer__learning_rate=0.001,
            teacher__provider="none",
            pipeline__torch_threads=1,  # a fixed thread policy: the same float sums every time
            checkpoint__every=0,
            cache__dir=out / "cache",
            run__output_dir=out,
            run__name=name,
            logging__progress="false",
        ),
        *extra,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _varies(key: str) -> bool:
    # Wall-clock times and what follows from them (throughput, the share of scoring hidden,
    # jobs in flight), and whether rustc's result came from the cache: the resumed run meets
    # results the first run cached. Nothing else may differ.
    timed = ("perf/samples_per_s", "perf/score_hidden_frac")
    return (
        key.endswith("seconds")
        or "_in_flight_" in key
        or key in ("cached", "rust/cached_rate", *timed)
    )


def without_timings(path):
    """Rows of a JSONL log without the fields allowed to differ between the runs."""
    rows = []
    for line in path.read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if not _varies(k)}
        if isinstance(row.get("rust"), dict):
            row["rust"] = {k: v for k, v in row["rust"].items() if not _varies(k)}
        rows.append(json.dumps(row))  # as text: NaN == NaN there
    return rows


def test_resume_from_step_two_equals_four_steps_straight(tiny_model_dir, tmp_path):
    # The straight run also checkpoints after step 2. A copy of it, cut back to that checkpoint
    # (later checkpoint and log rows removed by the resume) and resumed, must reach the same
    # step 4: weights, optimizer moments, LR schedule, KL controller, curriculum and RNGs all
    # restored. The config stays the same: a larger max_steps would re-spread the cosine decay.
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    train(
        tiny_model_dir,
        tmp_path,
        "straight",
        *(
            "--set",
            "trainer.max_steps=4",
            "--set",
            "checkpoint.every=2",
            "--set",
            "checkpoint.keep=0",
        ),
    )
    shutil.copytree(straight, split)
    done = run_cli("--resume", str(split / "checkpoints" / "step_2"), "--set", "run.name=split")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "removed newer checkpoints: step_4" in done.stdout

    straight = tmp_path / "straight"
    a = load_file(straight / "checkpoints" / "step_4" / "model.safetensors")
    b = load_file(split / "checkpoints" / "step_4" / "model.safetensors")
    start = load_file(tiny_model_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name
    # ...and the weights did move, so the comparison above means something.
    assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-4

    rows = without_timings(split / "metrics.jsonl")
    assert [json.loads(r)["iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows == without_timings(straight / "metrics.jsonl")
    assert without_timings(split / "samples.jsonl") == without_timings(straight / "samples.jsonl")
    csv_rows = (split / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 5 and csv_rows[0] == (straight / "metrics.csv").read_text().split()[0]
    state = json.loads((split / "checkpoints" / "step_4" / STATE_FILE).read_text())
    assert state["policy_version"] == 4 and state["metrics_rows"] == 4


def saved_run(tmp_path, name="r", step=2, **trainer):
    """A run directory with one checkpoint's state and config (enough for the checks below)."""
    config = Config(
        run=RunConfig(name=name, output_dir=str(tmp_path)), trainer=TrainerConfig(**trainer)
    )
    checkpoint = tmp_path / name / "checkpoints" / f"step_{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / STATE_FILE).write_text(json.dumps({"step": step}))
    for name in (TRAINER_FILE, RNG_FILE):
        (checkpoint / name).write_bytes(b"")  # present; these checks never read them
    config_module.save(config, checkpoint / "config.yaml")
    return checkpoint, config


def test_changes_that_alter_training_are_refused_by_name(tmp_path):
    checkpoint, saved = saved_run(tmp_path)
    done = run_cli(
        "--resume",
        str(tmp_path / "r"),
        "--set",
        "trainer.learning_rate=0.1",
        "--set",
        "rewards.compile=3",
        "--set",
        "trainer.max_steps=20",
        timeout=60,
    )
    assert done.returncode == 2
    assert f"cannot resume from {checkpoint}" in done.stderr
    assert "trainer.learning_rate: 5e-06 -> 0.1" in done.stderr
    assert "rewards.compile: 10.0 -> 3.0" in done.stderr
    assert "max_steps:" not in done.stderr  # allowed, so not listed as a problem

    changed = Config(
        run=RunConfig(name="r", output_dir=str(tmp_path)),
        trainer=TrainerConfig(max_steps=20),
        logging=config_module.LoggingConfig(progress=False),
    )
    assert check_config(saved, changed, checkpoint) == [
        "trainer.max_steps: 8 -> 20 (the cosine learning-rate decay now spans the new max_steps)",
        "logging.progress: True -> False",
    ]


def test_resume_without_a_path_finds_the_named_run_or_the_newest(tmp_path):
    first, _ = saved_run(tmp_path, name="older", step=3)
    saved_run(tmp_path, name="older", step=1)
    newest, _ = saved_run(tmp_path, name="newer", step=5)
    for path in (first, first.parent / "step_1"):  # certainly older than `newest`
        os.utime(path / STATE_FILE, (1_000_000, 1_000_000))
    (tmp_path / "empty").mkdir()  # a run without checkpoints is never picked

    named = Config(run=RunConfig(name="older", output_dir=str(tmp_path)))
    assert locate(None, named).checkpoint == first  # its newest checkpoint: step 3, not 1
    unnamed = Config(run=RunConfig(output_dir=str(tmp_path)))
    assert locate(None, unnamed).checkpoint == newest  # written last
    assert locate(str(first.parent / "step_1"), None).step == 1  # one checkpoint, named
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        locate(str(tmp_path / "empty"), None)
    (first / RNG_FILE).unlink()  # as the first version wrote them: weights and counters only
    with pytest.raises(CheckpointError, match="lacks rng.pt"):
        locate(str(first), None)


def test_rows_logged_after_the_checkpoint_are_dropped(tmp_path):
    # Step 1 logged before the names were namespaced (a run resumed since), 2 and 3 after.
    logged = [{"iteration": 1, "kl": 0.1}, *({"iteration": i, "kl/mean": 0.1} for i in (2, 3))]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in logged)
        + '{"iteration": 4, "k'  # a line cut short by a kill
    )
    (tmp_path / "metrics.csv").write_text("iteration,kl\n1,0.1\n2,0.1\n3,0.1\n4,0.")
    samples = [{"step": s, "sample": i} for s in (1, 2, 3) for i in (0, 1)]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))

    dropped = trim_logs(tmp_path, 2)
    # metrics: steps 3 and the cut 4 go; samples: step 3's two lines go.
    assert dropped == {"metrics.jsonl": 2, "samples.jsonl": 2, "metrics.csv": 2}
    assert [json.loads(x)["iteration"] for x in (tmp_path / "metrics.jsonl").open()] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == ["iteration,kl", "1,0.1", "2,0.1"]
    assert [json.loads(x)["step"] for x in (tmp_path / "samples.jsonl").open()] == [1, 1, 2, 2]


def test_changed_training_tasks_are_refused(tmp_path):
    tasks = [Task("a", "p", "t", "easy"), Task("b", "p", "t", "hard")]
    (tmp_path / STATE_FILE).write_text(json.dumps({"tasks_fingerprint": tasks_fingerprint(tasks)}))
    check_tasks(tmp_path, tasks, "train.jsonl")  # the same tasks: fine
    with pytest.raises(ConfigError, match="training tasks in train.jsonl changed"):
        check_tasks(tmp_path, tasks[::-1], "train.jsonl")
