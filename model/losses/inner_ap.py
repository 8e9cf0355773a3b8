"""Frame-level noise-robust AP (the "inner" loss, ARCHITECTURE.md section 6).

There are no frame-level labels in self-supervised training, so a frozen teacher's frame cosine
similarities supply pseudo labels: per query frame, its most similar target frames are positives
and its least similar negatives. The middle band is ignored because that is where the teacher is
least trustworthy; this is what makes the loss robust to label noise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.losses.quadlinear import quadlinear_ap, zero_loss


def _frame_masks(
    shape: torch.Size, q_mask: Tensor | None, t_mask: Tensor | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    n_pairs, n_query, n_target = shape
    if q_mask is None:
        q_mask = torch.ones(n_pairs, n_query, dtype=torch.bool, device=device)
    if t_mask is None:
        t_mask = torch.ones(n_pairs, n_target, dtype=torch.bool, device=device)
    if q_mask.shape != (n_pairs, n_query) or t_mask.shape != (n_pairs, n_target):
        raise ValueError(
            f"masks must be [P, Tq] and [P, Tt] for sims {tuple(shape)}, "
            f"got {tuple(q_mask.shape)} and {tuple(t_mask.shape)}"
        )
    return q_mask.bool(), t_mask.bool()


def teacher_pseudo_labels(
    teacher_sims: Tensor,
    q_mask: Tensor | None = None,
    t_mask: Tensor | None = None,
    rate_top: float = 0.35,
    rate_bottom: float = 0.35,
) -> tuple[Tensor, Tensor]:
    """Pseudo positives and negatives, both bool [P, Tq, Tt], from finite teacher sims [P, Tq, Tt].

    With n valid target frames in a pair: n_top = round(rate_top * n) and n_bottom =
    round(rate_bottom * n), each at least 1, n_top <= n - 1 and n_bottom <= n - n_top, so every
    labelled row has both kinds. Pairs with fewer than 2 valid target frames and masked query
    frames get no labels. Ties in the teacher are broken by frame index (stable sort).
    """
    if teacher_sims.dim() != 3:
        raise ValueError(f"teacher_sims must be [P, Tq, Tt], got {tuple(teacher_sims.shape)}")
    if not (0.0 < rate_top < 1.0 and 0.0 < rate_bottom < 1.0 and rate_top + rate_bottom <= 1.0):
        raise ValueError(f"need 0 < rates < 1 and rate_top + rate_bottom <= 1, got {rate_top}, {rate_bottom}")
    q_mask, t_mask = _frame_masks(teacher_sims.shape, q_mask, t_mask, teacher_sims.device)

    n_valid = t_mask.sum(-1)  # [P]
    n_top = torch.floor(rate_top * n_valid + 0.5).long().clamp(min=1)
    n_top = torch.minimum(n_top, (n_valid - 1).clamp(min=0))
    n_bottom = torch.floor(rate_bottom * n_valid + 0.5).long().clamp(min=1)
    n_bottom = torch.minimum(n_bottom, n_valid - n_top)

    # Rank valid target frames by teacher similarity, best first; masked ones sort last.
    minus_inf = torch.tensor(float("-inf"), device=teacher_sims.device)
    keys = torch.where(t_mask[:, None, :], teacher_sims.float(), minus_inf)
    order = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    rank = torch.argsort(order, dim=-1)  # rank[p, i, j] = position of frame j, 0 = most similar

    usable = (n_valid >= 2)[:, None, None] & q_mask[:, :, None] & t_mask[:, None, :]
    positives = usable & (rank < n_top[:, None, None])
    negatives = usable & (rank >= (n_valid - n_bottom)[:, None, None])  # masked ranks: cut by usable
    return positives, negatives


def frame_ap_loss(
    frame_sims: Tensor,
    teacher_sims: Tensor,
    q_mask: Tensor | None = None,
    t_mask: Tensor | None = None,
    rate_top: float = 0.35,
    rate_bottom: float = 0.35,
    sigma: float = 0.05,
    rho: float = 5.0,
) -> Tensor:
    """1 - AP of the network's frame sims [P, Tq, Tt] against teacher pseudo labels; scalar.

    Each labelled query frame is one QuadLinear-AP row (middle band and masked frames left out
    through the valid mask). AP is averaged over the labelled frames of a pair, then over pairs,
    so long and short pairs weigh the same. Returns 0 (with a graph) if no pair has a labelled frame.
    """
    if frame_sims.shape != teacher_sims.shape:
        raise ValueError(f"frame_sims {tuple(frame_sims.shape)} and teacher_sims {tuple(teacher_sims.shape)} differ")
    positives, negatives = teacher_pseudo_labels(teacher_sims, q_mask, t_mask, rate_top, rate_bottom)
    n_pairs, n_query, n_target = frame_sims.shape
    rows = n_pairs * n_query
    ap, labelled = quadlinear_ap(
        frame_sims.reshape(rows, n_target),
        positives.reshape(rows, n_target),
        sigma=sigma,
        rho=rho,
        valid=(positives | negatives).reshape(rows, n_target),
    )
    ap = ap.reshape(n_pairs, n_query)
    labelled = labelled.reshape(n_pairs, n_query)
    frames = labelled.sum(-1)
    pair_ap = torch.where(labelled, ap, torch.zeros_like(ap)).sum(-1) / frames.clamp(min=1).to(ap.dtype)
    has_frames = frames > 0
    if not bool(has_frames.any()):
        return zero_loss(frame_sims)
    return 1.0 - pair_ap[has_frames].mean()
