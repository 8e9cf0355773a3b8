"""Behaviour of the training losses (ARCHITECTURE.md section 6) on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from model.losses import (
    HapVRLoss,
    LossConfig,
    LossWeights,
    frame_ap_loss,
    hard_negative_loss,
    infonce_loss,
    off_diagonal,
    quadlinear,
    quadlinear_ap,
    quadlinear_ap_loss,
    self_similarity_loss,
    similarity_regularisation,
    sshn_loss,
    teacher_pseudo_labels,
    unit_similarity,
)

SIGMA = 0.05


def exact_ap(scores: list[float], positive: list[bool]) -> float:
    """AP of one ranking, ties broken against the positives (negatives first)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], positive[i]))
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if positive[i]:
            hits += 1
            total += hits / rank
    return total / max(hits, 1)


def row(values: list[float]) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float32)


def mask_row(values: list[int]) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.bool)


# ---------------------------------------------------------------- QuadLinear surrogate


GRID = torch.linspace(-4 * SIGMA, 4 * SIGMA, 1601, dtype=torch.float64)  # contains -sigma and 0


def test_quadlinear_branches() -> None:
    x = torch.tensor([-1.0, -2 * SIGMA, -SIGMA, -SIGMA / 2, 0.0, SIGMA, 1.0], dtype=torch.float64)
    expected = [0.0, 0.0, 0.0, 0.25, 1.0, 3.0, 2.0 / SIGMA + 1.0]
    assert quadlinear(x, SIGMA).tolist() == pytest.approx(expected)


def test_quadlinear_upper_bounds_heaviside() -> None:
    g = quadlinear(GRID, SIGMA)
    step = (GRID > 0).double()
    assert bool((g >= step).all())
    assert bool((g >= 0).all())
    assert float(quadlinear(torch.tensor(0.0), SIGMA)) >= 1.0  # H(0) is 0 or 1 by convention; g covers both


def test_quadlinear_is_convex() -> None:
    g = quadlinear(GRID, SIGMA)
    second_differences = g[2:] - 2 * g[1:-1] + g[:-2]
    assert float(second_differences.min()) >= -1e-9
    # Midpoint convexity on random pairs across all three branches.
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(10_000, generator=gen, dtype=torch.float64) - 0.5) * 8 * SIGMA
    b = (torch.rand(10_000, generator=gen, dtype=torch.float64) - 0.5) * 8 * SIGMA
    lhs = quadlinear((a + b) / 2, SIGMA)
    rhs = (quadlinear(a, SIGMA) + quadlinear(b, SIGMA)) / 2
    assert bool((lhs <= rhs + 1e-12).all())


def test_quadlinear_is_continuous_at_the_joins() -> None:
    eps = 1e-9
    for point, value in ((-SIGMA, 0.0), (0.0, 1.0)):
        around = torch.tensor([point - eps, point, point + eps], dtype=torch.float64)
        assert quadlinear(around, SIGMA).tolist() == pytest.approx([value] * 3, abs=1e-6)
    # The slope matches at 0 too (2 / sigma on both sides): no kink where the branches meet.
    x = torch.tensor([-1e-7, 1e-7], dtype=torch.float64, requires_grad=True)
    quadlinear(x, SIGMA).sum().backward()
    assert x.grad.tolist() == pytest.approx([2 / SIGMA, 2 / SIGMA], rel=1e-4)


def test_quadlinear_is_non_decreasing() -> None:
    g = quadlinear(GRID, SIGMA)
    assert float((g[1:] - g[:-1]).min()) >= 0.0


def test_quadlinear_keeps_gradient_on_linear_branch() -> None:
    x = torch.tensor([0.01, 0.5, 5.0, 50.0], requires_grad=True)
    quadlinear(x, SIGMA).sum().backward()
    assert x.grad.tolist() == pytest.approx([2 / SIGMA] * 4)
    # A sigmoid surrogate of the same width has all but lost it for badly mis-ranked pairs.
    y = torch.tensor([5.0], requires_grad=True)
    torch.sigmoid(y / SIGMA).sum().backward()
    assert float(y.grad) < 1e-30


def test_quadlinear_has_no_gradient_far_below() -> None:
    x = torch.tensor([-10 * SIGMA, -2 * SIGMA], requires_grad=True)
    quadlinear(x, SIGMA).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- QuadLinear-AP


def test_exact_ap_helper_matches_hand_values() -> None:
    assert exact_ap([0.9, 0.7, 0.5, 0.3, 0.1], [True, False, True, False, False]) == pytest.approx(5 / 6)
    second = exact_ap([0.9, 0.7, 0.5, 0.3, 0.1], [False, True, False, True, True])
    assert second == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3)


def test_ap_with_exact_step_equals_hand_computed_ap() -> None:
    """The rank bookkeeping is exact once g is replaced by the step (rho = 1)."""
    sims = row([0.9, 0.7, 0.5, 0.3, 0.1])
    labels = mask_row([1, 0, 1, 0, 0])  # positives at ranks 1 and 3 of 5
    ap, has_positive = quadlinear_ap(sims, labels, rho=1.0, surrogate=lambda d: (d >= 0).float())
    assert bool(has_positive.all())
    assert float(ap) == pytest.approx((1 / 1 + 2 / 3) / 2)

    labels = mask_row([0, 1, 0, 1, 1])  # positives at ranks 2, 4 and 5 of 5
    ap, _ = quadlinear_ap(sims, labels, rho=1.0, surrogate=lambda d: (d >= 0).float())
    assert float(ap) == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3)


@pytest.mark.parametrize(
    ("sims", "labels"),
    [
        ([0.9, 0.6, 0.4, 0.1], [1, 1, 0, 0]),  # perfect ranking: AP = 1
        ([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 0]),  # a negative tied with a positive: AP = (1 + 2/3) / 2
        # Two negatives tied with a positive: AP = (1 + 1 + 3/5) / 3.
        ([0.9, 0.7, 0.4, 0.4, 0.4, 0.1], [1, 1, 1, 0, 0, 0]),
    ],
)
def test_quadlinear_ap_approaches_exact_ap_as_sigma_shrinks(sims: list[float], labels: list[int]) -> None:
    """rho = 1: the quadratic band's extra rank mass vanishes once sigma is below every gap.

    Exact only where no negative is strictly above a positive (ties count against the positive);
    see the next test for strict mis-rankings, where the linear branch deliberately overcounts.
    """
    target = 1.0 - exact_ap(sims, [bool(v) for v in labels])
    hand = {
        (1, 1, 0, 0): 0.0,
        (1, 0, 1, 0): 1 - (1 + 2 / 3) / 2,
        (1, 1, 1, 0, 0, 0): 1 - (1 + 1 + 3 / 5) / 3,
    }
    assert target == pytest.approx(hand[tuple(labels)])
    sigmas = (0.5, 0.2, 0.1, 0.01, 0.001)
    losses = [float(quadlinear_ap_loss(row(sims), mask_row(labels), sigma=sigma, rho=1.0)) for sigma in sigmas]
    assert all(a >= b - 1e-7 for a, b in zip(losses, losses[1:]))  # shrinks monotonically ...
    assert losses[0] > target + 0.01  # ... from a loose value ...
    assert losses[-1] == pytest.approx(target, abs=1e-6)  # ... to the exact 1 - AP
    assert all(loss >= target - 1e-7 for loss in losses)  # and never undershoots it


def test_quadlinear_ap_bounds_exact_ap_when_negatives_outrank_positives() -> None:
    """g > 1 above 0, so a negative strictly above a positive costs more than the exact AP says.

    Positives at ranks 1 and 3 of 5 (exact AP 5/6), gaps 0.2: for sigma < 0.2 the positive at rank 3
    has rank_pos = 2 and rank_all = 2 + g(0.2) = 3 + 0.4 / sigma.
    """
    sims, labels = row([0.9, 0.7, 0.5, 0.3, 0.1]), mask_row([1, 0, 1, 0, 0])
    for sigma in (0.1, 0.05, 0.01):
        loss = float(quadlinear_ap_loss(sims, labels, sigma=sigma, rho=1.0))
        assert loss == pytest.approx(1 - (1 + 2 / (3 + 0.4 / sigma)) / 2, rel=1e-5)
        assert loss > 1 - 5 / 6


def test_quadlinear_ap_random_rankings_upper_bound_one_minus_ap() -> None:
    gen = torch.Generator().manual_seed(1)
    sims = torch.rand(64, 12, generator=gen)
    labels = torch.rand(64, 12, generator=gen) < 0.3
    ap, has_positive = quadlinear_ap(sims, labels, sigma=0.01, rho=1.0)
    for q in range(64):
        if bool(has_positive[q]):
            assert float(ap[q]) <= exact_ap(sims[q].tolist(), labels[q].tolist()) + 1e-6


def test_perfect_ranking_gives_near_zero_loss() -> None:
    gen = torch.Generator().manual_seed(2)
    labels = torch.rand(16, 20, generator=gen) < 0.3
    labels[:, 0] = True
    sims = torch.where(labels, 0.7 + 0.3 * torch.rand(16, 20, generator=gen), 0.5 * torch.rand(16, 20, generator=gen))
    assert float(quadlinear_ap_loss(sims, labels, sigma=0.01)) == pytest.approx(0.0, abs=1e-6)
    assert float(quadlinear_ap_loss(sims, labels)) < 0.05  # default sigma, rho


def test_quadlinear_ap_loss_decreases_when_a_positive_moves_up() -> None:
    labels = mask_row([1, 0, 0, 1, 0])
    sims = row([0.9, 0.8, 0.7, 0.6, 0.1]).requires_grad_(True)
    loss = quadlinear_ap_loss(sims, labels)
    loss.backward()
    grad = sims.grad[0]
    assert float(grad[3]) < 0  # raising the mis-ranked positive lowers the loss
    assert float(grad[1]) > 0 and float(grad[2]) > 0  # the negatives above it are pushed down
    assert float(grad[4]) == 0  # a negative far below every positive is left alone

    loss = float(loss.detach())
    moved = sims.detach().clone()
    moved[0, 3] = 0.75
    assert float(quadlinear_ap_loss(moved, labels)) < loss
    moved[0, 3] = 0.95
    assert float(quadlinear_ap_loss(moved, labels)) < 0.01


def test_quadlinear_ap_respects_valid_mask_and_skips_rows_without_positives() -> None:
    sims = torch.tensor([[0.9, 0.2, 0.95, 0.1], [0.5, 0.4, 0.3, 0.2]])
    labels = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    valid = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    # Row 0 is perfect once the masked negative (0.95) is out; row 1 has no positive and is skipped.
    assert float(quadlinear_ap_loss(sims, labels, sigma=0.01, valid=valid)) == pytest.approx(0.0, abs=1e-6)
    assert float(quadlinear_ap_loss(sims, labels, sigma=0.01)) > 0.5
    garbage = sims.clone()
    garbage[0, 2] = float("nan")
    x = garbage.requires_grad_(True)
    loss = quadlinear_ap_loss(x, labels, sigma=0.01, valid=valid)
    loss.backward()
    assert math.isfinite(loss.item()) and bool(torch.isfinite(x.grad).all())
    assert float(x.grad[0, 2]) == 0.0

    no_positive = torch.zeros(2, 4, dtype=torch.bool)
    assert float(quadlinear_ap_loss(sims, no_positive)) == 0.0


def test_off_diagonal_excludes_self_pairs() -> None:
    sims = torch.tensor([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1], [0.9, 0.1, 1.0]])
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    mask = off_diagonal(3)
    assert mask.tolist() == [[False, True, True], [True, False, True], [True, True, False]]
    # Video 1 has only itself as positive: no row for it; the other two rank each other first.
    assert float(quadlinear_ap_loss(sims, labels, sigma=0.01, valid=mask)) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- frame-level AP (inner)


def test_teacher_pseudo_labels_take_top_and_bottom_rates() -> None:
    teacher = torch.tensor([[[0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.0]]])
    positives, negatives = teacher_pseudo_labels(teacher)
    # 10 frames: round(3.5) = 4 each side, middle band {0.5, 0.4} ignored.
    assert torch.nonzero(positives[0, 0]).flatten().tolist() == [0, 3, 6, 8]
    assert torch.nonzero(negatives[0, 0]).flatten().tolist() == [1, 4, 5, 9]

    t_mask = torch.tensor([[1, 1, 1, 0, 1, 1, 0, 1, 1, 1]], dtype=torch.bool)  # 8 valid: 3 each side
    q_mask = torch.tensor([[True]])
    positives, negatives = teacher_pseudo_labels(teacher, q_mask, t_mask)
    assert torch.nonzero(positives[0, 0]).flatten().tolist() == [0, 2, 8]
    assert torch.nonzero(negatives[0, 0]).flatten().tolist() == [1, 5, 9]

    tiny = teacher_pseudo_labels(torch.tensor([[[0.3, 0.9]]]))
    assert tiny[0].tolist() == [[[False, True]]] and tiny[1].tolist() == [[[True, False]]]
    single = teacher_pseudo_labels(torch.tensor([[[0.3]]]))
    assert not bool(single[0].any()) and not bool(single[1].any())

    with pytest.raises(ValueError):
        teacher_pseudo_labels(teacher, rate_top=0.6, rate_bottom=0.6)


def _frame_batch(seed: int = 3, pairs: int = 3, tq: int = 6, tt: int = 10):
    gen = torch.Generator().manual_seed(seed)
    frame_sims = torch.rand(pairs, tq, tt, generator=gen) * 2 - 1
    teacher = torch.rand(pairs, tq, tt, generator=gen)
    q_mask = torch.ones(pairs, tq, dtype=torch.bool)
    t_mask = torch.ones(pairs, tt, dtype=torch.bool)
    q_mask[1, 4:] = False
    t_mask[2, 7:] = False
    return frame_sims, teacher, q_mask, t_mask


def test_frame_ap_loss_ignores_middle_band() -> None:
    frame_sims, teacher, q_mask, t_mask = _frame_batch()
    positives, negatives = teacher_pseudo_labels(teacher, q_mask, t_mask)
    middle = ~(positives | negatives)
    assert bool(middle[q_mask[:, :, None] & t_mask[:, None, :]].any())
    base = frame_ap_loss(frame_sims, teacher, q_mask, t_mask)
    changed = torch.where(middle, torch.full_like(frame_sims, 5.0), frame_sims)
    assert float(frame_ap_loss(changed, teacher, q_mask, t_mask)) == pytest.approx(float(base), abs=1e-7)
    # Control: the same change on labelled entries does move the loss.
    changed = torch.where(negatives, torch.full_like(frame_sims, 5.0), frame_sims)
    assert float(frame_ap_loss(changed, teacher, q_mask, t_mask)) > float(base) + 0.1


def test_frame_ap_loss_ignores_masked_frames() -> None:
    frame_sims, teacher, q_mask, t_mask = _frame_batch()
    base = frame_ap_loss(frame_sims, teacher, q_mask, t_mask)
    masked = ~(q_mask[:, :, None] & t_mask[:, None, :])
    noisy = torch.where(masked, torch.full_like(frame_sims, float("nan")), frame_sims).requires_grad_(True)
    noisy_teacher = torch.where(masked, torch.full_like(teacher, 100.0), teacher)
    loss = frame_ap_loss(noisy, noisy_teacher, q_mask, t_mask)
    assert loss.item() == pytest.approx(float(base), abs=1e-7)
    loss.backward()
    assert bool(torch.isfinite(noisy.grad).all())
    assert bool((noisy.grad[masked] == 0).all())
    assert bool((noisy.grad[~masked] != 0).any())


def test_frame_ap_loss_follows_teacher_order() -> None:
    _, teacher, q_mask, t_mask = _frame_batch()
    agree = frame_ap_loss(teacher * 2 - 1, teacher, q_mask, t_mask, sigma=1e-4)
    disagree = frame_ap_loss(1 - teacher * 2, teacher, q_mask, t_mask, sigma=1e-4)
    assert float(agree) == pytest.approx(0.0, abs=1e-6)
    assert float(disagree) > 0.9


def test_frame_ap_loss_averages_frames_then_pairs() -> None:
    frame_sims, teacher, q_mask, t_mask = _frame_batch()
    perfect = frame_ap_loss(teacher[:1], teacher[:1], sigma=1e-4)
    assert float(perfect) == pytest.approx(0.0, abs=1e-6)
    short_q = q_mask[1:2].clone()
    short_q[0, 1:] = False  # one labelled frame only
    bad = frame_ap_loss(frame_sims[1:2], teacher[1:2], short_q, t_mask[1:2])
    both = frame_ap_loss(
        torch.cat([teacher[:1], frame_sims[1:2]]),
        teacher[:2],
        torch.cat([q_mask[:1], short_q]),
        t_mask[:2],
        sigma=1e-4,
    )
    bad_small_sigma = frame_ap_loss(frame_sims[1:2], teacher[1:2], short_q, t_mask[1:2], sigma=1e-4)
    assert float(bad) > 0
    assert float(both) == pytest.approx(float(bad_small_sigma) / 2, abs=1e-6)


# ---------------------------------------------------------------- InfoNCE


def test_infonce_hand_computed() -> None:
    sims = torch.tensor([[1.0, 0.8, 0.2], [0.8, 1.0, 0.5], [0.2, 0.5, 1.0]])
    labels = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    loss = infonce_loss(sims, labels, temperature=0.1, valid=off_diagonal(3))
    # Row 0: -log(e^8 / (e^8 + e^2)); row 1: -log(e^8 / (e^8 + e^5)); row 2 has no positive.
    expected = (math.log1p(math.exp(-6)) + math.log1p(math.exp(-3))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_infonce_other_positives_stay_out_of_the_denominator() -> None:
    sims = torch.tensor([[0.0, 0.9, 0.4, 0.6]])
    labels = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    valid = torch.tensor([[0, 1, 1, 1]], dtype=torch.bool)
    t = 0.5
    loss = infonce_loss(sims, labels, temperature=t, valid=valid)
    pair = [-math.log(math.exp(p / t) / (math.exp(p / t) + math.exp(0.6 / t))) for p in (0.9, 0.4)]
    assert loss.item() == pytest.approx(sum(pair) / 2, rel=1e-5)


def test_infonce_default_temperature_is_stable() -> None:
    sims = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    loss = infonce_loss(sims, labels, valid=off_diagonal(3))  # row 0 has no negative
    loss.backward()
    assert math.isfinite(loss.item()) and bool(torch.isfinite(sims.grad).all())
    # 4 positive pairs: row 0's two have no negative (0 each); row 1: log(1 + e^(1/0.03)) ~ 1/0.03;
    # row 2: the positive ties its negative, log(2).
    assert loss.item() == pytest.approx((1 / 0.03 + math.log(2)) / 4, rel=1e-5)


# ---------------------------------------------------------------- SSHN


def test_sshn_hand_computed() -> None:
    sims = torch.tensor([[1.0, 0.9, 0.3, 0.6], [0.9, 1.0, 0.2, 0.1], [0.3, 0.2, 1.0, 0.5], [0.6, 0.1, 0.5, 1.0]])
    labels = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    self_sims = torch.tensor([0.9, 1.0, 0.5, 0.8])
    valid = off_diagonal(4)
    hardest = [0.6, 0.2, 0.5, 0.6]
    expected_hn = sum(-math.log(1 - h) for h in hardest) / 4
    expected_self = sum(-math.log(s) for s in self_sims.tolist()) / 4
    assert float(hard_negative_loss(sims, labels, valid=valid)) == pytest.approx(expected_hn, rel=1e-5)
    assert float(self_similarity_loss(self_sims)) == pytest.approx(expected_self, rel=1e-5)
    total = sshn_loss(sims, labels, self_sims, valid=valid)
    assert float(total) == pytest.approx(expected_hn + expected_self, rel=1e-5)


def test_sshn_gradient_reaches_only_the_hardest_negative_and_is_clamped() -> None:
    sims = torch.tensor([[0.0, 0.2, 1.0, 0.4]], requires_grad=True)
    labels = torch.tensor([[1, 0, 0, 0]], dtype=torch.bool)
    loss = hard_negative_loss(sims, labels, valid=torch.tensor([[0, 1, 0, 1]], dtype=torch.bool))
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(0.6), rel=1e-5)  # masked 1.0 is not a candidate
    assert sims.grad[0].tolist() == pytest.approx([0, 0, 0, 1 / 0.6], rel=1e-5)
    certain = hard_negative_loss(torch.tensor([[0.5, 1.0]]), torch.tensor([[1, 0]], dtype=torch.bool))
    zero_self = self_similarity_loss(torch.tensor([0.0, 1.0]))
    assert math.isfinite(float(certain)) and math.isfinite(float(zero_self))
    assert float(self_similarity_loss(torch.ones(3))) == 0.0


# ---------------------------------------------------------------- regularisation


def test_regularisation_zero_inside_and_linear_outside() -> None:
    inside = torch.linspace(-1, 1, 101)
    assert float(similarity_regularisation(inside)) == 0.0
    x = torch.tensor([[-2.0, -1.0, -0.5, 0.0], [1.0, 1.5, 3.0, 0.9]], requires_grad=True)
    loss = similarity_regularisation(x)
    assert loss.item() == pytest.approx(1.0 + 0.5 + 2.0)
    loss.backward()
    assert x.grad.tolist() == [[-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]


def test_regularisation_ignores_masked_entries() -> None:
    x = torch.tensor([[[2.0, 5.0], [float("nan"), -3.0]]], requires_grad=True)
    mask = torch.tensor([[[True, False], [False, True]]])
    loss = similarity_regularisation(x, mask)
    assert loss.item() == pytest.approx(1.0 + 2.0)
    loss.backward()
    assert x.grad.tolist() == [[[1.0, 0.0], [0.0, -1.0]]]
    row_mask = torch.tensor([[True, False]])  # broadcast over the last axis
    assert float(similarity_regularisation(x.detach()[:, :1], row_mask)) == pytest.approx(1.0)


# ---------------------------------------------------------------- total


def _training_batch(seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    clips = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    labels = clips[:, None] == clips[None, :]
    video_sims = torch.rand(8, 8, generator=gen)
    self_sims = 0.8 + 0.2 * torch.rand(8, generator=gen)
    frame_sims, teacher, q_mask, t_mask = _frame_batch(seed, pairs=8, tq=8, tt=8)
    raw = torch.randn(8, 2, 2, generator=gen) * 2
    raw_mask = torch.ones(8, 2, 2, dtype=torch.bool)
    raw_mask[0, 1] = False
    return dict(
        video_sims=video_sims,
        labels=labels,
        self_sims=self_sims,
        frame_sims=frame_sims,
        teacher_sims=teacher,
        q_mask=q_mask,
        t_mask=t_mask,
        raw=raw,
        raw_mask=raw_mask,
    )


def test_default_weights_and_config_match_the_spec() -> None:
    assert LossWeights() == LossWeights(infonce=1.0, inner=6.0, ap=4.0, sshn=3.0, reg=1.0)
    cfg = LossConfig()
    assert (cfg.ap_sigma, cfg.ap_rho, cfg.inner_sigma, cfg.inner_rho) == (0.05, 0.1, 0.05, 5.0)
    assert (cfg.rate_top, cfg.rate_bottom, cfg.temperature) == (0.35, 0.35, 0.03)


@pytest.mark.parametrize("weights", [LossWeights(), LossWeights(infonce=0.5, inner=2.0, ap=1.5, sshn=0.0, reg=10.0)])
def test_total_is_the_weighted_sum_of_terms(weights: LossWeights) -> None:
    batch = _training_batch()
    batch["video_sims"].requires_grad_(True)
    batch["frame_sims"].requires_grad_(True)
    terms = HapVRLoss(weights)(**batch)
    names = ("infonce", "inner", "ap", "sshn", "reg")
    assert set(terms) == {*names, "hard_negative", "self", "total"}
    expected = sum(getattr(weights, name) * terms[name] for name in names)
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["sshn"].item() == pytest.approx((terms["hard_negative"] + terms["self"]).item(), rel=1e-6)
    assert all(terms[name].item() > 0 for name in names)
    terms["total"].backward()
    assert bool(torch.isfinite(batch["video_sims"].grad).all())
    assert bool(torch.isfinite(batch["frame_sims"].grad).all())


def test_total_matches_the_individual_functions_and_config() -> None:
    batch = _training_batch()
    cfg = LossConfig(ap_sigma=0.1, ap_rho=0.5, temperature=0.2, inner_rho=2.0, rate_top=0.25, rate_bottom=0.5)
    terms = HapVRLoss(config=cfg)(**batch)
    valid = off_diagonal(8)
    s, y = batch["video_sims"], batch["labels"]
    assert float(terms["ap"]) == pytest.approx(float(quadlinear_ap_loss(s, y, sigma=0.1, rho=0.5, valid=valid)))
    assert float(terms["infonce"]) == pytest.approx(float(infonce_loss(s, y, temperature=0.2, valid=valid)))
    inner = frame_ap_loss(
        batch["frame_sims"],
        batch["teacher_sims"],
        batch["q_mask"],
        batch["t_mask"],
        rate_top=0.25,
        rate_bottom=0.5,
        sigma=0.05,
        rho=2.0,
    )
    assert float(terms["inner"]) == pytest.approx(float(inner))
    assert float(terms["reg"]) == pytest.approx(float(similarity_regularisation(batch["raw"], batch["raw_mask"])))


def test_total_never_looks_at_the_diagonal() -> None:
    batch = _training_batch()
    base = HapVRLoss()(**batch)
    batch["video_sims"] = batch["video_sims"].clone()
    batch["video_sims"].fill_diagonal_(0.0)
    changed = HapVRLoss()(**batch)
    assert float(changed["total"]) == pytest.approx(float(base["total"]))


def test_total_valid_mask_removes_pairs() -> None:
    batch = _training_batch()
    valid = torch.ones(8, 8, dtype=torch.bool)
    valid[:, 5] = False
    valid[5, :] = False
    terms = HapVRLoss()(**batch, valid=valid)
    keep = [i for i in range(8) if i != 5]
    s = batch["video_sims"][keep][:, keep]
    y = batch["labels"][keep][:, keep]
    assert float(terms["ap"]) == pytest.approx(float(quadlinear_ap_loss(s, y, valid=off_diagonal(7))))
    assert float(terms["infonce"]) == pytest.approx(float(infonce_loss(s, y, valid=off_diagonal(7))))
    assert float(terms["hard_negative"]) == pytest.approx(float(hard_negative_loss(s, y, valid=off_diagonal(7))))


def test_total_optional_inputs_give_zero_terms() -> None:
    batch = _training_batch()
    terms = HapVRLoss()(batch["video_sims"], batch["labels"], batch["self_sims"])
    assert float(terms["inner"]) == 0.0 and float(terms["reg"]) == 0.0
    with pytest.raises(ValueError):
        HapVRLoss()(batch["video_sims"], batch["labels"], batch["self_sims"], frame_sims=batch["frame_sims"])


def test_unit_similarity_maps_the_hardtanh_range() -> None:
    assert unit_similarity(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]
