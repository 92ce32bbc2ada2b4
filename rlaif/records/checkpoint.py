"""Checkpoints: `runs/<name>/checkpoints/step_N/`, everything an exact resume needs.

A checkpoint folder holds
  - the policy and tokenizer, as `save_pretrained` writes them (a full model; with LoRA, what the
    policy's own `save_pretrained` writes: the adapter), so `from_pretrained` loads it as is;
  - `trainer.pt`: `Trainer.state_dict()` (optimizer and whatever else the trainer keeps);
  - `rng.pt`: the RNG states (python, numpy, torch CPU, and CUDA or MPS when present);
  - `trainer_state.json`: the step, the policy version, the task sampler's state, how many
    metrics rows the run had written, and a fingerprint of the training tasks;
  - `config.yaml`: the resolved config the run had.

Atomic: it is written into `step_N.partial` and renamed to `step_N` once complete, so a folder
named `step_N` is always whole and a kill at any moment leaves the earlier ones intact. Old
checkpoints are retired the same way round: renamed away first, then deleted. Not covered: power
loss (nothing is fsynced; a crash of the process, `kill -9` included, is).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from rlaif import config as config_module
from rlaif.config import Config
from rlaif.types import Task

STATE_FILE = "trainer_state.json"
TRAINER_FILE = "trainer.pt"
RNG_FILE = "rng.pt"
CONFIG_FILE = "config.yaml"
STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was asked for; the message names the path."""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back (the weights stay on disk until `load_policy_weights`)."""

    path: Path
    step: int
    policy_version: int
    trainer: dict
    sampler: dict
    rng: dict
    metrics_rows: int


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model,
    tokenizer,
    trainer_state: dict,
    sampler_state: dict,
    config: Config,
    metrics_rows: int,
    tasks: list[Task],
) -> Path:
    """Write checkpoints/step_{step} atomically and return its path."""
    final = run_dir / "checkpoints" / f"step_{step}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    _torch_save(trainer_state, partial / TRAINER_FILE)
    _torch_save(rng_state(), partial / RNG_FILE)
    config_module.save(config, partial / CONFIG_FILE)
    state = {
        "step": step,
        "policy_version": trainer_state.get("version"),
        "sampler": sampler_state,
        "metrics_rows": metrics_rows,
        "tasks_fingerprint": tasks_fingerprint(tasks),
    }
    # Written last: a folder without it was never finished (and is never renamed into place).
    (partial / STATE_FILE).write_text(json.dumps(state, indent=2))
    _replace_dir(partial, final)
    return final


def _torch_save(obj, path: Path) -> None:
    torch.save(obj, path)


def _replace_dir(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is moved aside first and deleted after."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint's state files (tensors on the CPU; `load_state_dict` moves them)."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
    state = json.loads(state_file.read_text())
    # weights_only: a checkpoint is data; unpickling arbitrary objects from it would run code.
    trainer = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
    rng = torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)
    return Checkpoint(
        path=path,
        step=int(state["step"]),
        policy_version=int(state["policy_version"]),
        trainer=trainer,
        sampler=state["sampler"],
        rng=rng,
        metrics_rows=int(state["metrics_rows"]),
    )


def load_policy_weights(policy: torch.nn.Module, path: Path) -> None:
    """Copy a checkpoint's weights into the live policy, in place (its optimizer keeps them).

    A LoRA policy (a peft model) gets its adapter weights; any other model its full state dict,
    read through `from_pretrained` so sharded files and tied weights are handled as on load.
    """
    if (path / "adapter_config.json").is_file():
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        device = next(policy.parameters()).device
        set_peft_model_state_dict(policy, load_peft_weights(str(path), device=str(device)))
        return
    dtype = next(policy.parameters()).dtype
    saved = type(policy).from_pretrained(path, dtype=dtype)
    policy.load_state_dict(saved.state_dict())


def rng_state() -> dict:
    """Every RNG a step draws from. numpy's key array is stored as a list (plain data)."""
    state: dict = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def _as_tuples(value):
    # random.setstate wants (version, tuple of ints, gauss); a round trip may turn tuples to lists.
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def tasks_fingerprint(tasks: list[Task]) -> str:
    """A short hash of the training tasks in order, so a resume notices a changed task file."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(json.dumps([task.id, task.prompt, task.tests]).encode())
    return digest.hexdigest()[:16]


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first. Partial and retired folders do not count."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (0 keeps all) and any unfinished folder."""
    doomed = [path for _, path in list_checkpoints(run_dir)]
    doomed = doomed[:-keep] if keep else []
    return _retire(run_dir, doomed)


def remove_after(run_dir: Path, step: int) -> list[Path]:
    """Delete the checkpoints newer than `step` (a resume from `step` makes them stale)."""
    return _retire(run_dir, [path for s, path in list_checkpoints(run_dir) if s > step])


def _retire(run_dir: Path, doomed: list[Path]) -> list[Path]:
    root = run_dir / "checkpoints"
    # Leftovers of a crash: an unfinished checkpoint, or one caught between rename and delete.
    leftovers = [
        p for p in root.glob("step_*") if p.suffix in (".partial", ".old", ".trash") and p.is_dir()
    ]
    for path in doomed:
        # Renamed first, so a kill during the delete never leaves a half-deleted `step_N`.
        trash = path.with_name(path.name + ".trash")
        path.rename(trash)
        shutil.rmtree(trash)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
