"""The update's math, checked against numbers worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from rlaif.algo import clipped_policy_loss, group_advantages, kl_per_token


def test_whitening_of_one_group():
    # rewards 1, 2, 3: mean 2, unbiased std 1 -> A = (-1, 0, 1) / (1 + 1e-4)
    adv, zero = group_advantages(torch.tensor([[[1.0], [2.0], [3.0]]]), eps=1e-4)
    assert torch.allclose(adv, torch.tensor([[-1.0, 0.0, 1.0]]) / 1.0001)
    assert not zero.any()


def test_abstained_term_is_left_out_of_its_own_baseline():
    # rust = 1, 2, 3, 6 -> mean 3 -> centred -2, -1, 0, 3
    # teacher = nan, 2, 4, 6 -> mean over the 3 known = 4 -> centred 0 (abstained), -2, 0, 2
    # total = -2, -3, 0, 5; mean 0; unbiased var = (4 + 9 + 0 + 25) / 3 = 38/3 -> std 3.5590
    rewards = torch.tensor([[[1.0, math.nan], [2.0, 2.0], [3.0, 4.0], [6.0, 6.0]]])
    adv, zero = group_advantages(rewards, eps=1e-4)
    std = math.sqrt(38 / 3)
    expected = torch.tensor([[-2.0, -3.0, 0.0, 5.0]]) / (std + 1e-4)
    assert torch.allclose(adv, expected)
    assert not torch.isnan(adv).any() and not zero.any()


def test_without_nans_it_equals_whitening_the_summed_reward():
    rewards = torch.tensor([[[1.0, 0.5], [4.0, 0.0], [2.0, 1.0]]])  # sums 1.5, 4, 3
    adv, _ = group_advantages(rewards)
    total = rewards.sum(-1)
    expected = (total - total.mean()) / (total.std() + 1e-4)
    assert torch.allclose(adv, expected)


def test_equal_rewards_teach_nothing_and_are_counted():
    # group 0: all 2.0 -> zero std -> advantage exactly 0; group 1: 0, 1 -> +-0.7071 / ...
    rewards = torch.tensor([[[2.0], [2.0]], [[0.0], [1.0]]])
    adv, zero = group_advantages(rewards)
    assert zero.tolist() == [True, False]
    assert adv[0].tolist() == [0.0, 0.0]
    assert adv[1, 1] > 0 > adv[1, 0]


def test_a_group_where_every_judge_abstained_gets_zero_advantage():
    rewards = torch.full((1, 3, 1), math.nan)
    adv, zero = group_advantages(rewards)
    assert adv.tolist() == [[0.0, 0.0, 0.0]] and zero.item()


def test_kl_estimators_at_d_minus_one():
    # logp = 0, logp_ref = -1 -> d = -1: k1 = 1; k2 = 1/2; k3 = e^-1 + 1 - 1 = 0.3679
    logp, ref = torch.zeros(1, 1), -torch.ones(1, 1)
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_per_token(logp, ref, "k2").item() == pytest.approx(0.5)
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(math.exp(-1))
    with pytest.raises(ValueError):
        kl_per_token(logp, ref, "k4")


def test_kl_is_exactly_zero_when_policy_equals_reference():
    logp = torch.tensor([[-0.3, -2.0, -7.5]])
    for estimator in ("k1", "k2", "k3"):
        assert kl_per_token(logp, logp.clone(), estimator).abs().sum().item() == 0.0


def _loss(advantage: float):
    # Token 1: ratio e^(log 1.5 - 0) = 1.5, outside [0.8, 1.2]. Token 2: ratio 1. A third,
    # padded token carries a huge ratio that the mask must hide.
    logp = torch.tensor([[math.log(1.5), -1.0, 5.0]], requires_grad=True)
    old = torch.tensor([[0.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    parts = clipped_policy_loss(
        logp,
        old,
        logp.detach(),
        torch.tensor([advantage]),
        mask,
        clip_eps=0.2,
        kl_coef=0.0,
        estimator="k3",
        batch_tokens=2,
    )
    parts.loss.backward()
    return parts, logp.grad[0]


def test_clipped_loss_with_positive_advantage():
    # A = +1: token 1 -> -min(1.5, 1.2) = -1.2 (clipped: no gradient); token 2 -> -min(1, 1) = -1
    # loss = (-1.2 - 1) / 2 = -1.1; d loss / d logp_2 = -ratio * A / 2 = -0.5
    parts, grad = _loss(1.0)
    assert parts.loss.item() == pytest.approx(-1.1)
    assert parts.clipped.item() == 1
    assert grad.tolist() == pytest.approx([0.0, -0.5, 0.0])


def test_clipped_loss_with_negative_advantage_keeps_the_unclipped_term():
    # A = -1: token 1 -> -min(-1.5, -1.2) = 1.5 (the pessimistic, unclipped term), token 2 -> 1
    # loss = (1.5 + 1) / 2 = 1.25; gradient flows through token 1: -ratio * A / 2 = 0.75
    parts, grad = _loss(-1.0)
    assert parts.loss.item() == pytest.approx(1.25)
    assert parts.clipped.item() == 0
    assert grad.tolist() == pytest.approx([0.75, 0.5, 0.0])


def test_kl_penalty_is_added_per_token_with_its_coefficient():
    # ratio 1, A = 0 -> pg = 0; d = -1 on both tokens -> k3 = e^-1 each; beta = 0.5
    # loss = 0.5 * 2 e^-1 / 2 tokens = 0.5 e^-1
    logp = torch.zeros(1, 2)
    parts = clipped_policy_loss(
        logp,
        logp,
        logp - 1.0,
        torch.tensor([0.0]),
        torch.ones(1, 2),
        clip_eps=0.2,
        kl_coef=0.5,
        estimator="k3",
        batch_tokens=2,
    )
    assert parts.loss.item() == pytest.approx(0.5 * math.exp(-1))
    assert parts.kl_sum.item() == pytest.approx(2 * math.exp(-1))
