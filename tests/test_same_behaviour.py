"""bench/same_behaviour.py, the check that a refactor leaves a run unchanged: two seeded tiny runs
of the same tree agree apart from timings (or the check would be noise), and a changed value in
either file is reported while a changed duration is not."""

from __future__ import annotations

import csv
import json

from bench import same_behaviour
from tests.conftest import REPO


def rewrite_csv(path, change) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    change(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_two_seeded_runs_agree_and_a_changed_value_is_reported(tmp_path):
    model = tmp_path / "tiny"
    same_behaviour.cli(REPO, "make-tiny-model", str(model), "--seed", "0")
    first = same_behaviour.train(REPO, model, tmp_path / "first", steps=2)
    second = same_behaviour.train(REPO, model, tmp_path / "second", steps=2)
    assert same_behaviour.differences(first, second) == []

    def slower(rows):  # what the clock decides is not a difference
        rows[0]["step_seconds"] = "99.0"

    rewrite_csv(second / "metrics.csv", slower)
    assert same_behaviour.differences(first, second) == []

    def other_loss(rows):
        rows[1]["policy_loss"] = "0.5"

    rewrite_csv(second / "metrics.csv", other_loss)
    lines = (second / "samples.jsonl").read_text().splitlines()
    sample = json.loads(lines[0])
    sample["advantage"] = 123.0
    lines[0] = json.dumps(sample)
    (second / "samples.jsonl").write_text("\n".join(lines) + "\n")
    found = same_behaviour.differences(first, second)
    assert len(found) == 2
    assert found[0].startswith("metrics.csv row 2 policy_loss:") and found[0].endswith("vs 0.5")
    assert found[1].startswith("samples.jsonl line 1:")
