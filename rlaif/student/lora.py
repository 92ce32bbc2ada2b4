"""LoRA: low-rank adapters on the student (peft), so that an update trains only them.

With adapters, the frozen reference of the KL penalty is the same model with its adapters
disabled, so no second copy of the weights is held (training/trainer.py).
"""

from __future__ import annotations

import torch

from rlaif.config import Config, ConfigError


def apply_lora(model: torch.nn.Module, config: Config) -> torch.nn.Module:
    """Wrap `model` with peft LoRA adapters per `trainer.lora_*`; only they will train."""
    t = config.trainer
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError(
            f"trainer.lora_r={t.lora_r}: LoRA needs peft: pip install 'rlaif[peft]' "
            "(or set trainer.lora_r=0)"
        ) from None
    names = t.lora_target_modules.strip()
    targets: str | list[str] = (
        names if names == "all-linear" else [n.strip() for n in names.split(",") if n.strip()]
    )
    lora = LoraConfig(
        r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module the model does not have
        raise ConfigError(f"trainer.lora_target_modules={names!r}: {exc}") from exc
