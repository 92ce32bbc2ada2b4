"""Controllers of the KL coefficient beta: fixed, adaptive (Ziegler et al.) and the seed's EMA rule.

Pure and stateful: `value` is the beta to use for the next update, `update(kl)` takes the KL that
update (one training step) measured, as a mean per completion token. Each controller's state is a
small dict (`state_dict` / `load_state_dict`) so a resumed run continues with the same beta.

  fixed     beta never changes.
  adaptive  Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences"; as in
            OpenRLHF's kl_controller.py and verl's core_algos.py):
            e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e / horizon).
            Ziegler's rule counts n / horizon in samples (horizon 10000 against 512-sample
            batches: ~20 steps). Here `horizon` is in training steps, the unit a user sets
            `max_steps` in: with the default 10, a KL held at twice the target raises beta by
            2% a step, x1.02^20 = 1.486 in 20 steps. Counted in samples against the default
            8-sample steps, Ziegler's 10000 moved beta by at most 0.016% a step.
  ema       the Python RLAIF seed: kl_ema <- 0.9 kl_ema + 0.1 KL (from 0);
            beta <- clamp(beta * exp(gain * (kl_ema - target)), 0.01, 1.0).
"""

from __future__ import annotations

import math
from typing import Protocol

from rlaif.config import KLConfig

ADAPTIVE_CLIP = 0.2  # Ziegler's bound on the proportional error
EMA_DECAY = 0.9
EMA_BETA_MIN, EMA_BETA_MAX = 0.01, 1.0  # the seed's clamp


class KLController(Protocol):
    value: float

    def update(self, kl: float) -> None: ...
    def state_dict(self) -> dict[str, float]: ...
    def load_state_dict(self, state: dict[str, float]) -> None: ...


class FixedKL:
    """beta stays at `coef`. The base of the others: its state is beta alone."""

    def __init__(self, coef: float):
        self.value = coef

    def update(self, kl: float) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKL(FixedKL):
    def __init__(self, coef: float, target: float, horizon: float):
        super().__init__(coef)
        self.target, self.horizon = target, horizon  # horizon: in training steps

    def update(self, kl: float) -> None:
        if math.isnan(kl):  # nothing was measured: keep beta rather than poison it
            return
        error = min(max(kl / self.target - 1.0, -ADAPTIVE_CLIP), ADAPTIVE_CLIP)
        self.value *= 1.0 + error / self.horizon


class EmaKL(FixedKL):
    def __init__(self, coef: float, target: float, gain: float):
        super().__init__(coef)
        self.target, self.gain = target, gain
        self.kl_ema = 0.0

    def update(self, kl: float) -> None:
        if math.isnan(kl):
            return
        self.kl_ema = EMA_DECAY * self.kl_ema + (1.0 - EMA_DECAY) * kl
        beta = self.value * math.exp(self.gain * (self.kl_ema - self.target))
        self.value = min(max(beta, EMA_BETA_MIN), EMA_BETA_MAX)

    def state_dict(self) -> dict[str, float]:
        return {**super().state_dict(), "kl_ema": self.kl_ema}

    def load_state_dict(self, state: dict[str, float]) -> None:
        super().load_state_dict(state)
        self.kl_ema = float(state["kl_ema"])


def make_kl_controller(config: KLConfig) -> KLController:
    if config.controller == "adaptive":
        return AdaptiveKL(config.coef, config.target, config.horizon)
    if config.controller == "ema":
        return EmaKL(config.coef, config.target, config.gain)
    return FixedKL(config.coef)
