"""InfoNCE over the in-batch video similarity matrix (ARCHITECTURE.md section 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.losses.quadlinear import zero_loss


def infonce_loss(
    sims: Tensor,
    labels: Tensor,
    temperature: float = 0.03,
    valid: Tensor | None = None,
) -> Tensor:
    """Mean over valid positive pairs (q, p) of -log(e^(s_qp/t) / (e^(s_qp/t) + sum_n e^(s_qn/t))).

    sims [N, M], labels [N, M] bool; n runs over the valid negatives of row q only (other positives
    are not in the denominator). valid [N, M] (default: all) removes pairs entirely; pass
    off_diagonal(N) for an in-batch matrix so a video is not its own positive. A row without
    negatives contributes log(1) = 0 per positive. Returns 0 (with a graph) if there is no positive.
    """
    if sims.dim() != 2 or labels.shape != sims.shape:
        raise ValueError(f"sims and labels must both be [N, M], got {tuple(sims.shape)} and {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    labels = labels.bool()
    valid = torch.ones_like(labels) if valid is None else valid.bool().expand_as(labels)
    positive = labels & valid
    negative = ~labels & valid
    if not bool(positive.any()):
        return zero_loss(sims)

    logits = sims.float() / temperature
    # The finite floor (instead of -inf) keeps logsumexp and its gradient NaN-free on rows
    # without negatives; it contributes exp(floor - lse) = 0 wherever a real negative exists.
    floor = torch.finfo(logits.dtype).min / 2
    neg_lse = torch.logsumexp(torch.where(negative, logits, torch.full_like(logits, floor)), dim=-1, keepdim=True)
    # -log(e^a / (e^a + e^b)) = softplus(b - a)
    per_pair = F.softplus(neg_lse - torch.where(positive, logits, torch.zeros_like(logits)))
    return per_pair[positive].mean()
