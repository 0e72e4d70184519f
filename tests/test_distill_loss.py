"""The distillation loss against values computed by hand (two classes, so every term has a closed form)."""

from __future__ import annotations

import math

import pytest
import torch

from tierswitch.distill.loss import distill_loss, probs_to_logits
from tierswitch.errors import ConfigError

# student logits [2, 0], teacher logits [0, 2], hard label 0, T = 2:
#   CE                 = -log(e^2 / (e^2 + 1))            = log(1 + e^-2)                       = 0.1269280
#   softmax(student/T) = softmax([1, 0]) = [s, 1 - s], s = e / (e + 1)                            = 0.7310586
#   softmax(teacher/T) = softmax([0, 1]) = [1 - s, s]
#   KL(teacher||student) = (1-s) log((1-s)/s) + s log(s/(1-s)) = (2s - 1) * log(s / (1 - s)) = 2s - 1 = 0.4621172
#   (log(s / (1 - s)) = 1 exactly, because s / (1 - s) = e)
S = math.e / (math.e + 1)
CE = math.log(1 + math.exp(-2))
KL_T2 = 2 * S - 1


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_hand_computed_value_with_temperature_two():
    loss = distill_loss(_t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0]), temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.5 * CE + 0.5 * 4 * KL_T2, rel=1e-6)  # = 0.9876982


def test_student_logits_are_divided_by_t_too():
    # The classic bug softens only the teacher: KL(softmax([0,1]) || softmax([2,0])) would be 1.0068, not 0.4621.
    p_t = [1 - S, S]
    p_s_wrong = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    wrong_kl = sum(a * math.log(a / b) for a, b in zip(p_t, p_s_wrong))
    loss = distill_loss(_t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0]), temperature=2.0, alpha=0.0)
    assert loss.item() == pytest.approx(4 * KL_T2, rel=1e-6)
    assert loss.item() != pytest.approx(4 * wrong_kl, rel=1e-3)


def test_alpha_one_is_plain_cross_entropy_and_alpha_zero_plain_soft_term():
    s, t, y = _t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0])
    assert distill_loss(s, t, y, alpha=1.0).item() == pytest.approx(CE, rel=1e-6)
    # T = 1: KL(softmax([0,2]) || softmax([2,0])) = (2q - 1) * 2 with q = e^2 / (e^2 + 1)
    q = math.exp(2) / (math.exp(2) + 1)
    assert distill_loss(s, t, y, alpha=0.0, temperature=1.0).item() == pytest.approx((2 * q - 1) * 2, rel=1e-6)


def test_ground_truth_label_drives_the_hard_term():
    s, t = _t([2.0, 0.0]), _t([0.0, 2.0])
    # label 1: CE = log(1 + e^2)
    loss = distill_loss(s, t, torch.tensor([1]), alpha=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2)), rel=1e-6)


def test_mse_on_centred_logits():
    # centred student [1, -1], centred teacher [-1, 1]: squared errors 4 and 4, mean 4; weight 0.1 adds 0.4
    s, t, y = _t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0])
    base = distill_loss(s, t, y, alpha=0.5, temperature=2.0)
    with_mse = distill_loss(s, t, y, alpha=0.5, temperature=2.0, mse_weight=0.1)
    assert (with_mse - base).item() == pytest.approx(0.4, rel=1e-6)
    shifted = distill_loss(s, t + 7.0, y, alpha=0.5, temperature=2.0, mse_weight=0.1)  # logits' offset is moot
    assert shifted.item() == pytest.approx(with_mse.item(), rel=1e-6)


def test_teacher_probabilities_become_logits_and_the_batch_is_averaged():
    probs = _t([1 - S, S])  # = softmax([0, 1]): the same teacher as the logits [0, 1]
    via_probs = distill_loss(_t([2.0, 0.0]), probs_to_logits(probs), torch.tensor([0]), temperature=2.0, alpha=0.0)
    via_logits = distill_loss(_t([2.0, 0.0]), _t([0.0, 1.0]), torch.tensor([0]), temperature=2.0, alpha=0.0)
    assert via_probs.item() == pytest.approx(via_logits.item(), rel=1e-5)
    one = distill_loss(_t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0]))
    two = distill_loss(_t([2.0, 0.0], [2.0, 0.0]), _t([0.0, 2.0], [0.0, 2.0]), torch.tensor([0, 0]))
    assert two.item() == pytest.approx(one.item(), rel=1e-6)


def test_gradient_flows_to_the_student_only():
    s = _t([2.0, 0.0]).requires_grad_()
    t = _t([0.0, 2.0]).requires_grad_()
    distill_loss(s, t.detach(), torch.tensor([0])).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"alpha": 1.5}, "distill.alpha"), ({"temperature": 0.0}, "distill.temperature"),
     ({"mse_weight": -1.0}, "distill.mse_weight")],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        distill_loss(_t([2.0, 0.0]), _t([0.0, 2.0]), torch.tensor([0]), **kwargs)
    assert info.value.field == field


def test_class_count_mismatch_is_explained():
    with pytest.raises(ConfigError, match="n_classes"):
        distill_loss(_t([2.0, 0.0, 1.0]), _t([0.0, 2.0]), torch.tensor([0]))
