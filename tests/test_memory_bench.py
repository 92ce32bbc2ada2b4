"""bench/memory.py's table: each step's samples are the ones taken while it ran (the steps done
so far, as the sampler read them from metrics.csv); its columns are the resident memory as the
step began (step 1 begins with loading: none) and the peaks."""

from __future__ import annotations

from bench.memory import GIB, summary


def test_each_step_is_summarised_from_the_samples_taken_while_it_ran(tmp_path):
    log = tmp_path / "memory.log"
    lines = ["steps_done rss_bytes heap_bytes mmapped_bytes live_bytes free_bytes"]
    for done, rss, live, free in [
        (0, 5, 2, 1),
        (0, 9, 4, 3),
        (1, 7, 3, 2),
        (1, 6, 3, 4),
        (2, 8, 3, 1),
    ]:
        lines.append(f"{done} {rss * GIB} 0 0 {live * GIB} {free * GIB}")
    log.write_text("\n".join(lines) + "\n")
    (tmp_path / "metrics.csv").write_text("iteration,step_seconds\n1,90.4\n2,80.6\n")
    table = summary(log, tmp_path)
    assert table[2:] == [
        "| 1 | 90 | - | 9.00 | 4.00 | 3.00 |",
        "| 2 | 81 | 7.00 | 7.00 | 3.00 | 4.00 |",
    ]  # the samples after the last step (its checkpoint) are not a step's
