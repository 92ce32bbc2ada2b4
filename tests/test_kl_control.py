"""The KL coefficient's controllers: a series of observed KLs gives exact betas."""

from __future__ import annotations

import math

import pytest

from rlaif.config import ConfigError, KLConfig, load
from rlaif.training.kl_control import AdaptiveKL, EmaKL, FixedKL, make_kl_controller


def run(controller, kls):
    betas = []
    for kl in kls:
        controller.update(kl)
        betas.append(controller.value)
    return betas


def test_adaptive_follows_ziegler_with_the_error_clipped():
    # beta 0.1, target 0.02, one step of a 10-step horizon: beta *= 1 + e / 10
    # 0.03:  e = 0.03/0.02 - 1 = 0.5 -> clipped 0.2  -> 0.1 * (1 + 0.02) = 0.102
    # 0.01:  e = -0.5 -> -0.2 -> 0.102 * 0.98 = 0.09996
    # 0.021: e = 0.05 (inside the clip) -> 0.09996 * (1 + 0.005) = 0.1004598
    # 0.0:   e = -1 -> -0.2 -> 0.1004598 * 0.98 = 0.098450604
    betas = run(AdaptiveKL(0.1, target=0.02, horizon=10), [0.03, 0.01, 0.021, 0.0])
    assert betas == pytest.approx([0.102, 0.09996, 0.1004598, 0.098450604])


def test_the_default_adaptive_controller_moves_beta_visibly_within_a_short_run():
    # The defaults (coef 0.05, target 0.02, horizon 10 steps) with the KL held at 2x the target:
    # e = 2 - 1 = 1 -> clipped 0.2 -> beta *= 1 + 0.2 / 10 = 1.02 a step; after 20 steps
    # 1.02^20 = 1.48595, so beta goes 0.05 -> 0.074297 (+49%). Held at half the target it falls
    # by 0.98^20 = 0.66761.
    defaults = KLConfig(controller="adaptive")
    assert (defaults.coef, defaults.target, defaults.horizon) == (0.05, 0.02, 10.0)
    rising = make_kl_controller(defaults)
    betas = run(rising, [2 * defaults.target] * 20)
    assert betas[-1] == pytest.approx(0.05 * 1.02**20)
    assert betas[-1] == pytest.approx(0.074297, abs=1e-6)
    falling = make_kl_controller(defaults)
    assert run(falling, [defaults.target / 2] * 20)[-1] == pytest.approx(0.05 * 0.98**20)


@pytest.mark.parametrize("controller", ["adaptive", "ema"])
def test_a_controller_that_cannot_leave_zero_is_refused(controller):
    with pytest.raises(ConfigError, match=r"kl.coef=0.0: the .* controller multiplies beta") as e:
        load(None, [f"kl.controller={controller}", "kl.coef=0"])
    assert "kl.controller=fixed" in str(e.value)  # the message says how to fix it
    load(None, ["kl.controller=fixed", "kl.coef=0"])  # no penalty at all is allowed


def test_ema_follows_the_seed_rule():
    # beta 0.1, target 0.02, gain 10, ema from 0:
    # 0.1: ema = 0.9 * 0 + 0.1 * 0.1 = 0.01 -> 0.1 exp(10 (0.01 - 0.02)) = 0.1 e^-0.1 = 0.0904837
    # 0.3: ema = 0.009 + 0.03 = 0.039        -> 0.0904837 e^(10 * 0.019) = 0.0904837 e^0.19
    #                                          = 0.1094174
    controller = EmaKL(0.1, target=0.02, gain=10.0)
    betas = run(controller, [0.1, 0.3])
    assert betas == pytest.approx([0.1 * math.exp(-0.1), 0.1 * math.exp(-0.1 + 0.19)])
    assert betas == pytest.approx([0.0904837, 0.1094174], abs=1e-7)
    assert controller.kl_ema == pytest.approx(0.039)


def test_ema_beta_is_clamped_to_the_seeds_range():
    # 100: ema = 10 -> beta * e^(10 * 9.98) overflows the range -> 1.0
    assert run(EmaKL(0.1, target=0.02, gain=10.0), [100.0]) == [1.0]
    # 0 with gain 1000: beta * e^(1000 * -0.02) = 0.1 e^-20 -> clamped up to 0.01
    assert run(EmaKL(0.1, target=0.02, gain=1000.0), [0.0]) == [0.01]


def test_fixed_never_moves_and_nan_never_moves_anyone():
    assert run(FixedKL(0.05), [0.0, 5.0]) == [0.05, 0.05]
    assert run(AdaptiveKL(0.1, 0.02, 10), [math.nan]) == [0.1]
    ema = EmaKL(0.1, 0.02, 10.0)
    assert run(ema, [math.nan]) == [0.1] and ema.kl_ema == 0.0


@pytest.mark.parametrize("kind", ["fixed", "adaptive", "ema"])
def test_state_round_trip_continues_identically(kind):
    config = KLConfig(coef=0.1, controller=kind, target=0.02, horizon=10.0, gain=10.0)
    first = make_kl_controller(config)
    run(first, [0.05, 0.01])
    resumed = make_kl_controller(config)
    resumed.load_state_dict(first.state_dict())
    assert run(resumed, [0.04, 0.0]) == run(first, [0.04, 0.0])
    assert (
        type(first).__name__ == {"fixed": "FixedKL", "adaptive": "AdaptiveKL", "ema": "EmaKL"}[kind]
    )
