"""Checkpoints: `runs/<name>/checkpoints/step_N/`, a `save_pretrained` folder plus trainer state.

A checkpoint is written into a temporary sibling folder and renamed into place, so a crash while
writing never leaves a half-written `step_N` behind. This first version saves the policy, the
tokenizer and the trainer's counters; optimizer and RNG state for exact resume build on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STATE_FILE = "trainer_state.json"


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, state: dict) -> Path:
    """Write checkpoints/step_{step} atomically and return its path."""
    final = run_dir / "checkpoints" / f"step_{step}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final
