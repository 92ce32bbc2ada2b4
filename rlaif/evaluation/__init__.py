"""Measuring a model or a judge: held-out evaluation, statistics, offline scoring, judge-check.

`evaluate` (pass rates and pass@k on held-out tasks), `stats` (pure: pass@k, paired bootstrap),
`score` (reward terms of completions from a file), `judge_set` and `judge_check` (how far a
teacher agrees with the hidden tests). May import every package below the loop: the core modules,
`data`, `judges`, `student`, `training`, `records`, `rollout`.
"""
