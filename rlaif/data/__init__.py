"""Tasks: reading task files (`tasks`), and proving them with rustc before training (`check`).

May import: the core modules (`rlaif.types`, `config`, `strict_json`, `cache`) and `rlaif.judges`
(the check runs reference solutions through the rustc judge).
"""
