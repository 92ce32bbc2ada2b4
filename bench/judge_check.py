"""The judge-check floor: what a teacher that knows nothing scores, beside the configured one.

A judge that guesses has an AUC of 0.5 and a Spearman's rho of 0 on average; on a set of ~100
records it lands somewhere near them, within an interval as wide as the set allows. That is the
floor a real teacher must clear: its AUC interval should sit above the emulator's point and
clear of 0.5. The emulator is tests/teacher_server.py on loopback, answering each request with a
rubric verdict whose correctness is drawn at random, seeded by the code it grades (so the same
set gives the same numbers whatever order the requests arrive in), through the real `Teacher`
and openai SDK, as `python -m rlaif judge-check` runs it (rlaif/evaluation/judge_check.py).

    python bench/judge_check.py                        # the emulator alone (~10 s)
    python bench/judge_check.py --config my.yaml       # and the configured teacher beside it

With --config the configured teacher grades the same records (asked blind, as the command asks
it; its API key from the variable teacher.api_key_env names) and both appear in one Markdown
table. Latency for the emulator is loopback overhead only, not a model's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's rlaif, and the test server
from teacher_server import TeacherServer, user_text  # noqa: E402

from rlaif import config as config_module  # noqa: E402
from rlaif.config import TeacherConfig  # noqa: E402
from rlaif.data.tasks import load_tasks  # noqa: E402
from rlaif.evaluation.judge_check import (  # noqa: E402
    auc_text,
    blind_teacher_config,
    cost_text,
    latency_text,
    render_table,
    run_judge_check,
)
from rlaif.evaluation.judge_set import DEFAULT_SET, read_labelled  # noqa: E402
from rlaif.judges.teacher.setup import make_teacher  # noqa: E402

KEY_ENV = "RLAIF_BENCH_KEY"
_CODE = re.compile(r"<candidate_code-(\w+)>\n(.*)\n</candidate_code-\1>", re.DOTALL)


def coin_verdict(seed: int):
    """An `answer` for TeacherServer: correctness 0-10 at random, seeded by the graded code;
    the other criteria at random too, so the weighted score is no better informed."""

    def answer(body) -> str:
        found = _CODE.search(user_text(body))
        rng = random.Random(f"{seed}:{found.group(2) if found else ''}")
        names = ("correctness", "quality", "idiomaticity", "efficiency", "documentation")
        return json.dumps({name: rng.randint(0, 10) for name in names} | {"reason": "coin"})

    return answer


def emulator_report(records, tasks, tasks_path: str, seed: int, latency_s: float) -> dict:
    with TeacherServer(answer=coin_verdict(seed), latency_s=latency_s) as server:
        config = TeacherConfig(
            provider="openai-compatible",
            model="emulator",
            api_key_env=KEY_ENV,
            base_url=server.openai_url,
            requests_per_minute=0,
            tokens_per_minute=0,
            concurrency=8,
        )
        teacher, status = make_teacher(blind_teacher_config(config), environ={KEY_ENV: "bench"})
        assert teacher is not None, status
        return run_judge_check(records, tasks, tasks_path, teacher, seed=seed)


def configured_report(path: str, overrides: list[str], records, seed: int) -> tuple[str, dict]:
    config = config_module.load(path, overrides)
    tasks = {t.id: t for t in load_tasks(config.data.train)}
    teacher, status = make_teacher(blind_teacher_config(config.teacher), cache_config=config.cache)
    if teacher is None:
        raise SystemExit(f"--config {path}: the teacher is off ({status})")
    name = f"{config.teacher.provider} {teacher.config.model}"  # a local teacher: its model file
    return name, run_judge_check(records, tasks, config.data.train, teacher, seed=seed)


def markdown(rows: list[tuple[str, dict]]) -> str:
    """One Markdown table, a row per judge."""
    lines = [
        "| judge | AUC correctness [95% CI] | Spearman | abstained | p50 / p95 latency | cost |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, report in rows:
        rho = report["spearman_correctness_tests"]["value"]
        abstained = report["abstained"]
        lines.append(
            f"| {name} | {auc_text(report['auc_correctness'])} | "
            f"{'n/a' if math.isnan(rho) else f'{rho:.3f}'} | "
            f"{abstained['count']} ({abstained['rate']:.1%}) | {latency_text(report['teacher'])} "
            f"| {cost_text(report['teacher'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", default=str(REPO / DEFAULT_SET), help="labelled set, JSONL")
    parser.add_argument("--limit", type=int, help="the first N records only")
    parser.add_argument("--config", help="also check the teacher this YAML config names")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="--config")
    parser.add_argument("--seed", type=int, default=0, help="the coin's seed and the bootstrap's")
    parser.add_argument("--latency-s", type=float, default=0.0, help="the emulator's delay")
    args = parser.parse_args()

    records = read_labelled(args.input)[: args.limit]
    train = str(REPO / "data" / "train.jsonl")
    tasks = {t.id: t for t in load_tasks(train)}
    console = Console(highlight=False, soft_wrap=True)
    floor = emulator_report(records, tasks, train, args.seed, args.latency_s)
    rows = [("emulator (random verdicts)", floor)]
    if args.config:
        rows.append(configured_report(args.config, args.overrides, records, args.seed))
    for name, report in rows:
        console.print(render_table(report, title=f"judge-check: {name}"))
    print(f"\n{len(records)} records of {args.input}\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
