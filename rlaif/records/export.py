"""Export a checkpoint as a plain model folder, which `AutoModelForCausalLM.from_pretrained` loads
without this project, without peft and without the optimizer state.

A checkpoint (`checkpoint.py`) holds what an exact resume needs: the policy as `save_pretrained`
wrote it, plus trainer.pt, rng.pt, trainer_state.json and config.yaml. With full fine-tuning the
policy is a whole model; with LoRA (`trainer.lora_r > 0`) it is the adapter alone, which loads
only through peft, on top of the base model. `export_checkpoint` writes the model and tokenizer
and nothing else. A LoRA checkpoint needs `merge=True` (`--merge`): the adapter is merged into the
base model its config names (`student.model`, which must still be where training found it), each
adapted weight becoming W + (alpha / r) B A, and the result is saved as a plain model. Without it
a LoRA checkpoint is refused, since an adapter folder is not a model a plain loader takes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from rlaif import config as config_module
from rlaif.records.checkpoint import CONFIG_FILE, STATE_FILE, CheckpointError, latest_checkpoint

ADAPTER_FILE = "adapter_config.json"  # what peft's save_pretrained writes beside the adapter


def export_checkpoint(path: str | Path, out: str | Path, merge: bool = False) -> str:
    """Write checkpoint `path` (or a run directory: its newest) to `out` as a plain model folder.

    Returns what was done, for the command line. Raises CheckpointError when `path` is no
    complete checkpoint, `out` already holds files, or a LoRA checkpoint comes without `merge`.
    """
    from rlaif.student.model import (  # transformers: only once the checks passed
        load_student,
        pick_dtype,
    )

    checkpoint, out = _checkpoint_dir(Path(path)), Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out} is not empty: export into a new folder")
    saved = config_module.load(checkpoint / CONFIG_FILE)
    cpu = torch.device("cpu")
    dtype = pick_dtype(saved.student.dtype, cpu)
    if (checkpoint / ADAPTER_FILE).is_file():
        if not merge:
            raise CheckpointError(
                f"{checkpoint} holds a LoRA adapter, not a model: add --merge to merge it into "
                f"its base model ({saved.student.model}) and write a plain model"
            )
        base, tokenizer = load_student(saved.student, cpu, dtype)
        model = _merged(base, checkpoint)
        what = f"LoRA adapter of {checkpoint} merged into {saved.student.model}"
    else:
        student = dataclasses.replace(saved.student, model=str(checkpoint))
        model, tokenizer = load_student(student, cpu, dtype)
        what = f"model of {checkpoint}" + (" (full weights: nothing to merge)" if merge else "")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return f"{what} -> {out}"


def _checkpoint_dir(path: Path) -> Path:
    """A checkpoint folder as given, or a run directory's newest checkpoint."""
    if (path / "checkpoints").is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"{path}: the run has no complete checkpoint to export")
        return newest
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
    return path


def _merged(base: torch.nn.Module, checkpoint: Path) -> torch.nn.Module:
    try:
        from peft import PeftModel
    except ImportError:
        raise CheckpointError(
            f"{checkpoint} holds a LoRA adapter: merging it needs peft: pip install 'rlaif[peft]'"
        ) from None
    return PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()
