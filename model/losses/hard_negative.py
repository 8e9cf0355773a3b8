"""Hard-negative + self loss (SSHN, ARCHITECTURE.md section 6).

The hard-negative term pushes the most similar unrelated video of each row away from 1; the self
term pins every video's similarity to itself at 1, so the [0, 1] scale keeps its meaning.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.losses.quadlinear import zero_loss


def hard_negative_loss(
    sims: Tensor,
    labels: Tensor,
    valid: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Mean over rows with >= 1 valid negative of -log(1 - max negative s); sims [N, M] in [0, 1].

    1 - max is clamped to [eps, 1]; the gradient of max reaches only the hardest negative.
    Returns 0 (with a graph) if no row has a negative.
    """
    if sims.dim() != 2 or labels.shape != sims.shape:
        raise ValueError(f"sims and labels must both be [N, M], got {tuple(sims.shape)} and {tuple(labels.shape)}")
    valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid.bool().expand_as(labels)
    negative = ~labels.bool() & valid
    has_negative = negative.any(-1)
    if not bool(has_negative.any()):
        return zero_loss(sims)
    sims = sims.float()
    hardest = torch.where(negative, sims, torch.full_like(sims, float("-inf"))).amax(-1)
    hardest = hardest[has_negative]
    return -torch.log(torch.clamp(1.0 - hardest, min=eps, max=1.0)).mean()


def self_similarity_loss(self_sims: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean of -log(s_ii) over self_sims [N] in [0, 1] (each video against itself), clamped to [eps, 1]."""
    if self_sims.numel() == 0:
        return zero_loss(self_sims)
    return -torch.log(torch.clamp(self_sims.float(), min=eps, max=1.0)).mean()


def sshn_loss(
    sims: Tensor,
    labels: Tensor,
    self_sims: Tensor,
    valid: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """hard_negative_loss + self_similarity_loss (both means, added unweighted)."""
    return hard_negative_loss(sims, labels, valid=valid, eps=eps) + self_similarity_loss(self_sims, eps=eps)
