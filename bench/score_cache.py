"""The score cache: 100 mixed completions scored cold (empty cache) and warm (same input again).

Goes through `score.score_requests`, the path of `python -m rlaif score` minus the process start
and the file I/O: every rustc job, the syntax-tree metrics and the reward terms (teacher off).
The 100 completions are the 32 of bench/rust_jobs.py, each also with one and two comment lines
appended so every completion is distinct code, plus the first four once more with a third.

    python bench/score_cache.py
"""

from __future__ import annotations

import tempfile
import time

import anyio
from rust_jobs import REPO, workload  # bench/ is on sys.path when run as a script

from rlaif.config import CacheConfig, Config
from rlaif.data.tasks import load_tasks
from rlaif.evaluation.score import score_requests
from rlaif.judges.rust.jobs import default_concurrency, find_toolchain


def requests() -> list[tuple[int, object, str]]:
    by_tests = {t.tests: t for t in load_tasks(REPO / "data/train.jsonl")}
    base = [(by_tests[tests], code) for _, code, tests in workload()]
    variants = [(task, code + "\n// variant 1") for task, code in base]
    variants += [(task, code + "\n// variant 1\n// variant 2") for task, code in base]
    variants += [(task, code + "\n// variant 3") for task, code in base[:4]]
    rows = (base + variants)[:100]
    return [(i + 1, task, "```rust\n" + code + "\n```") for i, (task, code) in enumerate(rows)]


def main() -> None:
    toolchain = find_toolchain()
    batch = requests()
    assert len(batch) == 100 and len({(t.id, c) for _, t, c in batch}) == 100
    with tempfile.TemporaryDirectory() as cache_dir:
        config = Config(cache=CacheConfig(dir=cache_dir))
        n = default_concurrency(config.rust)
        runs = []
        for name in ("cold", "warm"):
            t0 = time.perf_counter()
            scored, stats = anyio.run(score_requests, config, batch, toolchain, None, n)
            runs.append(time.perf_counter() - t0)
            print(
                f"{name}: {runs[-1]:.3f} s for {len(scored)} completions "
                f"({stats['cache_hits']} hits, {stats['cache_misses']} misses)"
            )
    print(f"rustc jobs at once: {n}; warm is {runs[0] / runs[1]:.0f}x faster than cold")


if __name__ == "__main__":
    main()
