"""QuadLinear surrogate of the step function and the QuadLinear-AP loss (ARCHITECTURE.md section 6).

The surrogate replaces the Heaviside step H(s_qj - s_qi) for positive-negative pairs so that AP
becomes differentiable. Unlike a sigmoid it is an upper bound of the step and keeps a constant
gradient for badly mis-ranked pairs (its linear branch), so hard mistakes still get corrected.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def quadlinear(x: Tensor, sigma: float = 0.05) -> Tensor:
    """g(x) = 0 for x < -sigma; (x/sigma + 1)^2 on [-sigma, 0]; 2x/sigma + 1 for x > 0 (elementwise)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    # Clamping first keeps the quadratic branch at 0 (and its gradient at 0) below -sigma.
    quadratic = (torch.clamp(x / sigma + 1.0, min=0.0)) ** 2
    linear = 2.0 * x / sigma + 1.0
    return torch.where(x > 0, linear, quadratic)


def heaviside(x: Tensor) -> Tensor:
    """Strict step: 1 where x > 0, else 0 (ties count as not ranked above). Carries no gradient."""
    return (x > 0).to(x.dtype)


def quadlinear_ap(
    sims: Tensor,
    labels: Tensor,
    sigma: float = 0.05,
    rho: float = 0.1,
    valid: Tensor | None = None,
    surrogate: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-row smooth AP of sims [N, M] against bool labels [N, M]; returns (ap [N], has_positive [N]).

    Only entries with valid [N, M] (default: all) take part, as rankers and as ranked items. For a
    row q and a valid positive i:
        rank_pos(i) = 1 + sum_{valid positive j != i} rho * H(s_qj - s_qi)
        rank_all(i) = rank_pos(i) + sum_{valid negative j} g(s_qj - s_qi)
        AP_q = mean_i rank_pos(i) / rank_all(i)
    H is the strict step (no gradient), so gradients flow only through positive-negative pairs.
    Rows without a valid positive get ap = 0 and has_positive = False; callers skip them.
    surrogate replaces g (default quadlinear with this sigma), e.g. an exact step for evaluation.

    Note: g grows linearly above 0 (2x/sigma + 1), so a negative ranked above a positive counts
    more than 1 and counts more as sigma shrinks. With rho = 1 the result is a lower bound of the
    exact AP (ties counted against the positive); it equals it in the limit only where no negative
    is strictly above a positive. That extra weight is the point: mis-ranked pairs keep a gradient.

    Computed in float32 in one shot over an [N, M, M] tensor: memory O(N * M^2) (a few such
    tensors are kept for backward), fine for 2B x 2B video batches and frame rows of ~32 frames.
    """
    if sims.dim() != 2 or labels.shape != sims.shape:
        raise ValueError(f"sims and labels must both be [N, M], got {tuple(sims.shape)} and {tuple(labels.shape)}")
    sims = sims.float()
    labels = labels.bool()
    if valid is None:
        valid = torch.ones_like(labels)
    else:
        valid = valid.bool().expand_as(labels)
    # Invalid entries may hold anything (padding, inf); replace them so they cannot leak NaNs.
    sims = torch.where(valid, sims, torch.zeros_like(sims))
    positive = labels & valid
    negative = ~labels & valid
    n_items = sims.shape[1]

    # diff[q, i, j] = s_qj - s_qi: how far item j is ranked above item i.
    diff = sims[:, None, :] - sims[:, :, None]
    not_self = ~torch.eye(n_items, dtype=torch.bool, device=sims.device)
    pairs = valid[:, :, None] & not_self[None]
    pos_pairs = pairs & positive[:, None, :]
    neg_pairs = pairs & negative[:, None, :]

    zero = torch.zeros((), dtype=sims.dtype, device=sims.device)
    above_pos = torch.where(pos_pairs, rho * heaviside(diff), zero).sum(-1)
    step = surrogate(diff) if surrogate is not None else quadlinear(diff, sigma)
    above_neg = torch.where(neg_pairs, step, zero).sum(-1)
    rank_pos = 1.0 + above_pos
    rank_all = rank_pos + above_neg
    ratio = torch.where(positive, rank_pos / rank_all, zero)

    n_pos = positive.sum(-1)
    ap = ratio.sum(-1) / n_pos.clamp(min=1).to(sims.dtype)
    return ap, n_pos > 0


def quadlinear_ap_loss(
    sims: Tensor,
    labels: Tensor,
    sigma: float = 0.05,
    rho: float = 0.1,
    valid: Tensor | None = None,
) -> Tensor:
    """1 - mean AP over rows with >= 1 valid positive (see quadlinear_ap); 0 if no row has one.

    For a square in-batch matrix pass valid = off_diagonal(N) so a video is not ranked against itself.
    """
    ap, has_positive = quadlinear_ap(sims, labels, sigma=sigma, rho=rho, valid=valid)
    if not bool(has_positive.any()):
        return zero_loss(sims)
    return 1.0 - ap[has_positive].mean()


def off_diagonal(n: int, device: torch.device | str | None = None) -> Tensor:
    """Bool [n, n] mask that is False on the diagonal: excludes self pairs in in-batch matrices."""
    return ~torch.eye(n, dtype=torch.bool, device=device)


def zero_loss(x: Tensor) -> Tensor:
    """A float32 scalar 0 attached to x's graph (an empty sum), so NaN/inf padding cannot leak in."""
    return x.float().reshape(-1)[:0].sum()
