"""The training loop: one anyio event loop that overlaps generation, scoring and updates.

`pipeline` (the loop, and one training step in order), `run` (what a run holds: models, judges,
logger, checkpoints), `stop` (clean stops on SIGINT and SIGTERM), `blind` (stop a run whose judges
stopped answering). May import every package but `rlaif.cli`.
"""
