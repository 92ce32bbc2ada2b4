"""The update's math, checked against numbers worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from rlaif.training.algo import (
    abstained,
    batch_normalize,
    clipped_policy_loss,
    group_advantages,
    kl_per_token,
    lr_factor,
    token_logprobs,
    token_weights,
    truncated_is_weights,
)

# One group of 4 with two judges; the teacher abstained on the first sample.
# rust = 1, 2, 3, 6 -> mean 3 -> centred -2, -1, 0, 3
# teacher = nan, 2, 4, 6 -> mean over the 3 known = 4 -> centred 0 (abstained), -2, 0, 2
# total c = -2, -3, 0, 5 (mean 0)
WITH_NAN = torch.tensor([[[1.0, math.nan], [2.0, 2.0], [3.0, 4.0], [6.0, 6.0]]])
SINGLE = torch.tensor([[[1.0], [2.0], [3.0], [6.0]]])  # centred -2, -1, 0, 3


def close(tensor: torch.Tensor, expected) -> bool:
    return torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype))


def test_whitening_of_one_group():
    # rewards 1, 2, 3: mean 2, unbiased std 1 -> A = (-1, 0, 1) / (1 + 1e-4)
    adv, zero = group_advantages(torch.tensor([[[1.0], [2.0], [3.0]]]), eps=1e-4)
    assert torch.allclose(adv, torch.tensor([[-1.0, 0.0, 1.0]]) / 1.0001)
    assert not zero.any()


def test_abstained_term_is_left_out_of_its_own_baseline():
    # c = -2, -3, 0, 5; unbiased var = (4 + 9 + 0 + 25) / 3 = 38/3 -> std 3.5590
    adv, zero = group_advantages(WITH_NAN, eps=1e-4)
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


def test_no_std_keeps_the_centred_rewards_on_their_scale():
    # Dr. GRPO: A = c, not divided by anything: -2, -3, 0, 5 (with the abstention), -2, -1, 0, 3
    adv, _ = group_advantages(WITH_NAN, mode="no_std")
    assert adv.tolist() == [[-2.0, -3.0, 0.0, 5.0]]
    adv, _ = group_advantages(SINGLE, mode="no_std")
    assert adv.tolist() == [[-2.0, -1.0, 0.0, 3.0]]


def test_rloo_uses_the_mean_of_the_other_samples():
    # 1, 2, 3, 6 (sum 12): A_i = r_i - (12 - r_i) / 3
    #   1 - 11/3 = -8/3; 2 - 10/3 = -4/3; 3 - 9/3 = 0; 6 - 6/3 = 4   (= 4/3 of the centred values)
    adv, _ = group_advantages(SINGLE, mode="rloo")
    assert torch.allclose(adv, torch.tensor([[-8 / 3, -4 / 3, 0.0, 4.0]]))
    # Teacher 2, 4, 6 known (sum 12), baseline over the 2 others: 2 - 5 = -3; 4 - 4 = 0; 6 - 3 = 3;
    # the abstained first sample's teacher term is 0. Totals: -8/3, -4/3 - 3, 0, 4 + 3.
    adv, _ = group_advantages(WITH_NAN, mode="rloo")
    assert torch.allclose(adv, torch.tensor([[-8 / 3, -13 / 3, 0.0, 7.0]]))


def test_rloo_term_known_for_one_sample_only_has_no_baseline_and_counts_zero():
    # rust 1, 3 -> leave-one-out: 1 - 3 = -2, 3 - 1 = 2; teacher known only for sample 2: 0
    rewards = torch.tensor([[[1.0, math.nan], [3.0, 0.7]]])
    adv, _ = group_advantages(rewards, mode="rloo")
    assert adv.tolist() == [[-2.0, 2.0]]


def test_robust_scales_by_mad_and_squashes_with_tanh():
    # c = -2, -1, 0, 3; median(c) = (-1 + 0) / 2 = -0.5; |c + 0.5| = 1.5, 0.5, 0.5, 3.5
    # -> MAD = (0.5 + 1.5) / 2 = 1.0; s = 1.4826 * 1.0 + 1e-8; A = tanh(c / s / 2.5)
    adv, _ = group_advantages(SINGLE, mode="robust")
    s = 1.4826 * 1.0 + 1e-8
    expected = [math.tanh(c / s / 2.5) for c in (-2.0, -1.0, 0.0, 3.0)]
    assert adv[0].tolist() == pytest.approx(expected)
    assert expected[3] == pytest.approx(0.6693, abs=1e-4)  # tanh(3 / 3.7065)


def test_robust_advantages_are_bounded_by_the_tanh():
    # 0, 0, 1, 100: c = -25.25, -25.25, -24.25, 74.75 (mean 25.25); std whitening gives the
    # var = (2 * 25.25^2 + 24.25^2 + 74.75^2) / 3 = 7450.75 / 3, std 49.835: the outlier gets
    # 74.75 / 49.835 = 1.4999, while tanh keeps every robust advantage within [-1, 1].
    rewards = torch.tensor([[[0.0], [0.0], [1.0], [100.0]]])
    robust, _ = group_advantages(rewards, mode="robust")
    std, _ = group_advantages(rewards, mode="std")
    assert std[0, 3].item() == pytest.approx(74.75 / (math.sqrt(7450.75 / 3) + 1e-4), rel=1e-5)
    assert robust.abs().max() <= 1.0 and robust[0, 3] > 0.99


@pytest.mark.parametrize("mode", ["std", "no_std", "rloo", "robust"])
def test_equal_rewards_teach_nothing_and_are_counted_in_every_mode(mode):
    # group 0: all 2.0 -> zero std -> advantage exactly 0; group 1: 0, 1 -> one up, one down
    rewards = torch.tensor([[[2.0], [2.0]], [[0.0], [1.0]]])
    adv, zero = group_advantages(rewards, mode=mode)
    assert zero.tolist() == [True, False]
    assert adv[0].tolist() == [0.0, 0.0]
    assert adv[1, 1] > 0 > adv[1, 0]


@pytest.mark.parametrize("mode", ["std", "no_std", "rloo", "robust"])
def test_a_group_where_every_judge_abstained_gets_zero_advantage(mode):
    rewards = torch.full((1, 3, 1), math.nan)
    adv, zero = group_advantages(rewards, mode=mode)
    assert adv.tolist() == [[0.0, 0.0, 0.0]] and zero.item()


# Every judge abstained on the first sample: it is left out of the group's mean and spread.
# Known rewards 1, 2, 3 -> mean 2 -> centred -1, 0, 1 over 3 samples (the abstained one is 0 and
# does not count): unbiased std = sqrt((1 + 0 + 1) / 2) = 1.0, not sqrt(2 / 3) = 0.8165 as it
# would be if the abstention counted as a 0 (advantages then 22% too large).
ABSTAINED = torch.tensor([[[math.nan], [1.0], [2.0], [3.0]]])


def test_an_abstained_sample_is_left_out_of_the_std():
    adv, zero = group_advantages(ABSTAINED, eps=1e-4, mode="std")
    assert torch.allclose(adv, torch.tensor([[0.0, -1.0, 0.0, 1.0]]) / 1.0001)
    assert not zero.any()


def test_an_abstained_sample_gets_zero_in_no_std_and_rloo():
    # no_std: A = c = 0 (abstained), -1, 0, 1
    adv, _ = group_advantages(ABSTAINED, mode="no_std")
    assert adv.tolist() == [[0.0, -1.0, 0.0, 1.0]]
    # rloo over the 3 known: 1 - (2 + 3) / 2 = -1.5; 2 - (1 + 3) / 2 = 0; 3 - (1 + 2) / 2 = 1.5
    adv, _ = group_advantages(ABSTAINED, mode="rloo")
    assert adv.tolist() == [[0.0, -1.5, 0.0, 1.5]]


def test_an_abstained_sample_is_left_out_of_the_median_and_mad():
    # live c = -1, 0, 1: median 0; |c - 0| = 1, 0, 1 -> MAD 1 -> s = 1.4826 + 1e-8;
    # A = tanh(+-1 / 1.4826 / 2.5) = tanh(+-0.26980) = +-0.26344. Counting the abstention as a
    # 0 would give c = 0, -1, 0, 1: MAD 0.5 and A = +-tanh(0.53959) = +-0.49264.
    adv, zero = group_advantages(ABSTAINED, mode="robust")
    a = math.tanh(1 / (1.4826 * 1.0 + 1e-8) / 2.5)
    assert adv[0].tolist() == pytest.approx([0.0, -a, 0.0, a])
    assert adv[0, 3].item() == pytest.approx(0.26344, abs=1e-5)
    assert not zero.any()


@pytest.mark.parametrize("mode", ["std", "no_std", "rloo", "robust"])
def test_a_group_with_one_answer_teaches_nothing(mode):
    # One known reward compares with nothing: the group is flagged and every advantage is 0.
    adv, zero = group_advantages(torch.tensor([[[math.nan], [5.0], [math.nan]]]), mode=mode)
    assert zero.tolist() == [True] and adv.tolist() == [[0.0, 0.0, 0.0]]


def test_batch_normalize_leaves_abstained_samples_at_zero():
    # live values -1, 3, 2, -2, 4 (the abstained 0 is not one): mean 1.2; squares of the
    # deviations 4.84 + 3.24 + 0.64 + 10.24 + 7.84 = 26.8 -> var 26.8 / 4 = 6.7, std 2.58844
    adv = torch.tensor([[0.0, -1.0, 3.0], [2.0, -2.0, 4.0]])
    mask = torch.tensor([[True, False, False], [False, False, False]])
    out = batch_normalize(adv, torch.tensor([False, False]), eps=1e-4, abstentions=mask)
    std = math.sqrt(6.7)
    assert out[0, 0].item() == 0.0
    assert torch.allclose(out[1], (adv[1] - 1.2) / (std + 1e-4))
    assert abstained(torch.tensor([[[math.nan, math.nan], [1.0, math.nan]]])).tolist() == [
        [True, False]
    ]


def test_unknown_advantage_mode_is_refused():
    with pytest.raises(ValueError, match="unknown advantage mode"):
        group_advantages(SINGLE, mode="zscore")


def test_batch_normalize_whitens_live_groups_and_leaves_dead_ones_at_zero():
    # live values 1, -1, 3, -3: mean 0, unbiased var (1 + 1 + 9 + 9) / 3 = 20/3 -> std 2.5820
    adv = torch.tensor([[1.0, -1.0], [3.0, -3.0], [0.0, 0.0]])
    zero = torch.tensor([False, False, True])
    out = batch_normalize(adv, zero, eps=1e-4)
    std = math.sqrt(20 / 3)
    assert torch.allclose(out[:2], adv[:2] / (std + 1e-4))
    assert out[2].tolist() == [0.0, 0.0]


def test_token_logprobs_by_hand():
    # Position 0 has logits 1, 2, 3 at T = 1: log sum e^z = ln(e + e^2 + e^3) = ln 30.19287
    # = 3.40761, so log p(token 2) = 3 - 3.40761 = -0.40761 and log p(token 0) = -2.40761;
    # p = 0.09003, 0.24473, 0.66524 -> H = 0.09003 * 2.40761 + 0.24473 * 1.40761
    # + 0.66524 * 0.40761 = 0.83240. Position 1 (logits 3, 1, 0) predicts token 0:
    # ln(e^3 + e + 1) = ln 23.80383 = 3.16985 -> log p = -0.16985.
    logits = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]]])  # [1, K=2, V=3]
    at = torch.tensor([[0, 1, 0]])  # [1, C=3]: the third token is predicted at position 0 too
    targets = torch.tensor([[2, 0, 0]])
    logp, ent = token_logprobs(logits, at, targets, 1.0, entropy=True)
    assert logp[0].tolist() == pytest.approx([-0.40761, -0.16985, -2.40761], abs=1e-5)
    assert ent[0, 0].item() == pytest.approx(0.83240, abs=1e-5)
    # T = 2 halves the logits: ln(e^0.5 + e + e^1.5) = 2.18027 -> log p(token 2) = -0.68027
    logp, ent = token_logprobs(logits, at, targets, 2.0)
    assert logp[0, 0].item() == pytest.approx(-0.68027, abs=1e-5) and ent is None


def test_token_logprobs_gradients_match_finite_differences(monkeypatch):
    # Chunks of one position (several chunks), a position that predicts two tokens (padding
    # slots share one), and gradients through both outputs, in float64 (gradcheck).
    monkeypatch.setattr("rlaif.training.algo.LOGPROB_CHUNK_ELEMENTS", 2 * 5)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)  # [n, K, V]
    at = torch.tensor([[0, 1, 2, 2], [1, 2, 2, 2]])  # [n, C]
    targets = torch.tensor([[1, 4, 0, 3], [2, 2, 0, 1]])

    def both(x):
        return token_logprobs(x, at, targets, 0.7, entropy=True, grad_entropy=True)

    assert torch.autograd.gradcheck(both, (logits,))
    logp, ent = token_logprobs(logits, at, targets, 0.7, entropy=True)
    assert logp.requires_grad and not ent.requires_grad  # logged only unless asked for


def test_kl_estimators_at_d_minus_one():
    # logp = 0, logp_ref = -1 -> d = -1: k1 = 1; k2 = 1/2; k3 = e^-1 + 1 - 1 = 0.3679
    logp, ref = torch.zeros(1, 1), -torch.ones(1, 1)
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_per_token(logp, ref, "k2").item() == pytest.approx(0.5)
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(math.exp(-1))
    with pytest.raises(ValueError):
        kl_per_token(logp, ref, "k4")


def test_kl_estimators_at_d_plus_two_and_the_clamp():
    # d = +2: k1 = -2 (k1 can be negative); k2 = 4/2 = 2; k3 = e^2 - 2 - 1 = 4.3891
    logp, ref = torch.zeros(1, 1), torch.full((1, 1), 2.0)
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(-2.0)
    assert kl_per_token(logp, ref, "k2").item() == pytest.approx(2.0)
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(math.exp(2) - 3)
    # d = 100 is clamped to 20: k3 = e^20 - 21, finite
    far = kl_per_token(logp, torch.full((1, 1), 100.0), "k3").item()
    assert far == pytest.approx(math.exp(20) - 21)


def test_kl_is_exactly_zero_when_policy_equals_reference():
    logp = torch.tensor([[-0.3, -2.0, -7.5]])
    for estimator in ("k1", "k2", "k3"):
        assert kl_per_token(logp, logp.clone(), estimator).abs().sum().item() == 0.0


def test_token_weights_for_each_aggregation():
    # lengths 2 and 4 in a width of 4; the minibatch holds 6 tokens in 2 sequences
    lengths = torch.tensor([2, 4])
    kwargs = dict(batch_tokens=6, batch_sequences=2, constant=8)
    token = token_weights(lengths, 4, "token", **kwargs)
    assert close(token, [[1 / 6, 1 / 6, 0, 0], [1 / 6] * 4])
    # sequence: 1 / (len * 2 sequences): 1/4 for the short one, 1/8 for the long one
    seq = token_weights(lengths, 4, "sequence", **kwargs)
    assert close(seq, [[0.25, 0.25, 0, 0], [0.125] * 4])
    # constant: 1 / (8 * 2) per real token, whatever the length
    const = token_weights(lengths, 4, "constant", **kwargs)
    assert close(const, [[1 / 16, 1 / 16, 0, 0], [1 / 16] * 4])
    with pytest.raises(ValueError):
        token_weights(lengths, 4, "prompt", **kwargs)


def test_truncated_is_weights_are_capped():
    # trainer - sampler = 0, log 3, -1 -> weights 1, min(3, 2) = 2, e^-1 = 0.3679
    old = torch.tensor([[0.0, math.log(3.0), -1.0]])
    w = truncated_is_weights(old, torch.zeros(1, 3), cap=2.0)
    assert close(w, [[1.0, 2.0, math.exp(-1)]])


def _loss(advantage: float, eps_high: float = 0.2, **kw):
    # Token 1: ratio e^(log 1.5 - 0) = 1.5, outside [0.8, 1.2]. Token 2: ratio 1. A third,
    # padded token (weight 0) carries a huge ratio that must not count.
    logp = torch.tensor([[math.log(1.5), -1.0, 5.0]], requires_grad=True)
    old = torch.tensor([[0.0, -1.0, 0.0]])
    weights = torch.tensor([[0.5, 0.5, 0.0]])  # token aggregation over 2 tokens
    parts = clipped_policy_loss(
        logp,
        old,
        logp.detach(),
        torch.tensor([advantage]),
        weights,
        eps_low=0.2,
        eps_high=eps_high,
        kl_coef=0.0,
        estimator="k3",
        **kw,
    )
    parts.loss.backward()
    return parts, logp.grad[0]


def test_clipped_loss_with_positive_advantage():
    # A = +1: token 1 -> -min(1.5, 1.2) = -1.2 (clipped: no gradient); token 2 -> -min(1, 1) = -1
    # loss = (-1.2 - 1) / 2 = -1.1; d loss / d logp_2 = -ratio * A / 2 = -0.5
    parts, grad = _loss(1.0)
    assert parts.loss.item() == pytest.approx(-1.1)
    assert parts.clipped.item() == 1 and parts.tokens.item() == 2
    assert parts.ratio_max.item() == pytest.approx(1.5)
    assert parts.ratio_sum.item() == pytest.approx(2.5)  # 1.5 + 1, the padded ratio left out
    assert grad.tolist() == pytest.approx([0.0, -0.5, 0.0])


def test_clipped_loss_with_negative_advantage_keeps_the_unclipped_term():
    # A = -1: token 1 -> -min(-1.5, -1.2) = 1.5 (the pessimistic, unclipped term), token 2 -> 1
    # loss = (1.5 + 1) / 2 = 1.25; gradient flows through token 1: -ratio * A / 2 = 0.75
    parts, grad = _loss(-1.0)
    assert parts.loss.item() == pytest.approx(1.25)
    assert parts.clipped.item() == 0
    assert grad.tolist() == pytest.approx([0.75, 0.5, 0.0])


def test_clip_higher_lets_a_positive_token_rise_further():
    # eps_high = 0.6: ratio 1.5 is inside [0.8, 1.6], so token 1 is not clipped:
    # loss = (-1.5 - 1) / 2 = -1.25; gradient on token 1 = -1.5 * 1 / 2 = -0.75
    parts, grad = _loss(1.0, eps_high=0.6)
    assert parts.loss.item() == pytest.approx(-1.25)
    assert parts.clipped.item() == 0
    assert grad.tolist() == pytest.approx([-0.75, -0.5, 0.0])


def test_low_clip_on_a_negative_advantage():
    # ratio e^(log 0.5) = 0.5 with A = -1: -min(-0.5, -clip(0.5, 0.8, 1.2)) = -min(-0.5, -0.8)
    # = 0.8: the clipped term wins, so no gradient; loss = 0.8 * weight 1
    logp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    parts = clipped_policy_loss(
        logp,
        torch.zeros(1, 1),
        logp.detach(),
        torch.tensor([-1.0]),
        torch.ones(1, 1),
        eps_low=0.2,
        eps_high=0.2,
        kl_coef=0.0,
        estimator="k3",
    )
    parts.loss.backward()
    assert parts.loss.item() == pytest.approx(0.8)
    assert parts.clipped.item() == 1 and logp.grad.item() == 0.0


def test_is_weights_scale_the_policy_term():
    # A = +1, weights on token 1 and 2 of 0.5 and 2: token 1 -> -1.2 * 0.5 = -0.6,
    # token 2 -> -1 * 2 = -2; loss = (-0.6 - 2) / 2 = -1.3; gradient on token 2 = -2 / 2 = -1
    parts, grad = _loss(1.0, is_weights=torch.tensor([[0.5, 2.0, 7.0]]))
    assert parts.loss.item() == pytest.approx(-1.3)
    assert grad.tolist() == pytest.approx([0.0, -1.0, 0.0])


def test_entropy_bonus_is_subtracted_per_token():
    # A = +1 as in the first test (loss -1.1) with entropies 2 and 4 and coef 0.1:
    # loss = -1.1 - 0.1 * (2 + 4) / 2 = -1.4; entropy_sum = 6 (padding's 9 left out)
    entropy = torch.tensor([[2.0, 4.0, 9.0]])
    parts, _ = _loss(1.0, entropy=entropy, entropy_coef=0.1)
    assert parts.loss.item() == pytest.approx(-1.4)
    assert parts.entropy_sum.item() == pytest.approx(6.0)


def test_kl_penalty_is_added_per_token_with_its_coefficient():
    # ratio 1, A = 0 -> pg = 0; d = -1 on both tokens -> k3 = e^-1 each; beta = 0.5
    # loss = 0.5 * 2 e^-1 / 2 tokens = 0.5 e^-1
    logp = torch.zeros(1, 2)
    parts = clipped_policy_loss(
        logp,
        logp,
        logp - 1.0,
        torch.tensor([0.0]),
        torch.full((1, 2), 0.5),
        eps_low=0.2,
        eps_high=0.2,
        kl_coef=0.5,
        estimator="k3",
    )
    assert parts.loss.item() == pytest.approx(0.5 * math.exp(-1))
    assert parts.kl_sum.item() == pytest.approx(2 * math.exp(-1))


def test_lr_warmup_then_cosine():
    # warmup 2 of 6 steps, floor 0.1: steps 0, 1 -> 1/2, 2/2; then p = (step - 2) / 4:
    # step 2 -> p 0 -> 1; step 4 -> p 0.5 -> 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55;
    # step 6 -> p 1 -> 0.1 (and stays there)
    f = [lr_factor(s, "cosine", 2, 6, 0.1) for s in (0, 1, 2, 4, 6, 9)]
    assert f == pytest.approx([0.5, 1.0, 1.0, 0.55, 0.1, 0.1])
    assert [lr_factor(s, "constant", 2, 6, 0.1) for s in (0, 1, 5)] == [0.5, 1.0, 1.0]
    assert lr_factor(0, "cosine", 0, 1, 0.1) == 1.0  # a single step runs at the peak
