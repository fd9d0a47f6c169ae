import math

import pytest
import torch
import torch.nn.functional as F

from hfkd.losses import (
    DISTILLATION_LOSSES,
    distillation_loss,
    get_distillation_loss,
    hard_label_ce,
    logit_mse,
    reverse_kl,
    soft_target_kl,
)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, generator=g) * 3, torch.randn(8, 3, generator=g) * 3


@pytest.mark.parametrize("name", sorted(DISTILLATION_LOSSES))
def test_zero_for_identical_logits(name, logits):
    s, _ = logits
    assert get_distillation_loss(name)(s, s.clone(), 3.0).abs().item() < 1e-6


def test_kl_matches_definition_with_t_squared(logits):
    s, t = logits
    T = 4.0
    p_t = F.softmax(t / T, -1)
    expected = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean() * T**2
    assert torch.allclose(soft_target_kl(s, t, T), expected, atol=1e-6)
    # per-row / sum / batchmean agree
    rows = soft_target_kl(s, t, T, reduction="none")
    assert rows.shape == (8,)
    assert torch.allclose(rows.sum(), soft_target_kl(s, t, T, reduction="sum"))
    assert torch.allclose(rows.mean(), soft_target_kl(s, t, T, reduction="batchmean"))


def test_t_squared_scaling_keeps_gradients_comparable(logits):
    # For large T the KL's gradient w.r.t. the student logits scales like 1/T^2; the T^2 factor undoes that.
    s, t = logits
    grads = []
    for T in (8.0, 16.0):
        s_ = s.clone().requires_grad_(True)
        soft_target_kl(s_, t, T).backward()
        grads.append(s_.grad.norm().item())
    # grad ~ (s - t) / (N * C) ... independent of T in the high-temperature limit: ratio close to 1, not 4
    assert grads[0] / grads[1] == pytest.approx(1.0, rel=0.05)
    # and the value itself carries T^2 relative to the plain KL
    T = 2.0
    plain = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")
    assert soft_target_kl(s, t, T).item() == pytest.approx(plain.item() * T**2, rel=1e-5)


def test_reverse_kl_and_mse(logits):
    s, t = logits
    assert torch.allclose(reverse_kl(s, t, 2.0), soft_target_kl(t, s, 2.0))
    assert torch.allclose(logit_mse(s, t), ((s - t) ** 2).mean())


def test_hard_ce_ignores_minus_100_rows(logits):
    s, _ = logits
    labels = torch.tensor([0, 1, 2, -100, 0, -100, 1, 2])
    keep = labels != -100
    expected = F.cross_entropy(s[keep], labels[keep])
    assert torch.allclose(hard_label_ce(s, labels), expected)
    assert hard_label_ce(s, labels, reduction="none")[~keep].abs().sum() == 0
    # all rows unlabeled: zero, not NaN
    assert hard_label_ce(s, torch.full((8,), -100)).item() == 0.0


def test_alpha_limits_and_mixture(logits):
    s, t = logits
    labels = torch.tensor([0, 1, 2, -100, 0, -100, 1, 2])
    kd = soft_target_kl(s, t, 2.0)
    ce = hard_label_ce(s, labels)
    assert torch.allclose(distillation_loss(s, t, labels, 2.0, alpha=1.0).loss, kd)
    assert torch.allclose(distillation_loss(s, t, labels, 2.0, alpha=0.0).loss, ce)
    out = distillation_loss(s, t, labels, 2.0, alpha=0.3)
    assert torch.allclose(out.loss, 0.3 * kd + 0.7 * ce)
    assert torch.allclose(out.loss_kd, kd) and torch.allclose(out.loss_ce, ce)


def test_unlabeled_rows_feed_only_the_kd_term(logits):
    s, t = logits
    s = s.clone().requires_grad_(True)
    labels = torch.tensor([0, 1, 2, -100, 0, -100, 1, 2])
    distillation_loss(s, t, labels, 2.0, alpha=0.0).loss.backward()
    assert s.grad[labels == -100].abs().sum() == 0  # no CE gradient on unlabeled rows
    s.grad = None
    distillation_loss(s, t, labels, 2.0, alpha=1.0).loss.backward()
    assert s.grad[labels == -100].abs().sum() > 0  # the KD term reaches them


def test_errors():
    with pytest.raises(ValueError, match="distillation_loss='js'.*choose one of"):
        get_distillation_loss("js")
    with pytest.raises(ValueError, match="share one label space"):
        soft_target_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    assert math.isfinite(soft_target_kl(torch.full((2, 3), 1e4), torch.full((2, 3), -1e4), 1.0).item())
