"""The HAP-VR training objective: every loss term and their weighted sum (ARCHITECTURE.md section 6)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from model.losses.hard_negative import hard_negative_loss, self_similarity_loss
from model.losses.infonce import infonce_loss
from model.losses.inner_ap import frame_ap_loss
from model.losses.quadlinear import off_diagonal, quadlinear_ap_loss, zero_loss
from model.losses.regularisation import similarity_regularisation


class LossWeights(BaseModel):
    """Weight of each term in the total; a field name is also the term's key in HapVRLoss's output."""

    model_config = ConfigDict(extra="forbid")

    infonce: float = 1.0
    inner: float = 6.0
    ap: float = 4.0
    sshn: float = 3.0
    reg: float = 1.0


class LossConfig(BaseModel):
    """Hyper-parameters of the terms (defaults from ARCHITECTURE.md section 6)."""

    model_config = ConfigDict(extra="forbid")

    ap_sigma: float = 0.05
    ap_rho: float = 0.1
    inner_sigma: float = 0.05
    inner_rho: float = 5.0
    rate_top: float = 0.35
    rate_bottom: float = 0.35
    temperature: float = 0.03
    eps: float = 1e-6


def unit_similarity(scores: Tensor) -> Tensor:
    """Map network scores in [-1, 1] to [0, 1] (hardtanh / 2 + 0.5), the scale the video losses expect."""
    return scores / 2.0 + 0.5


class HapVRLoss(nn.Module):
    """Computes every loss term of a training batch and their weighted sum.

    Output keys: the LossWeights fields ("infonce", "inner", "ap", "sshn", "reg"), the two parts of
    "sshn" ("hard_negative", "self") for logging, and "total" = sum of weight * term.
    """

    def __init__(self, weights: LossWeights | None = None, config: LossConfig | None = None) -> None:
        super().__init__()
        self.weights = weights if weights is not None else LossWeights()
        self.config = config if config is not None else LossConfig()

    def forward(
        self,
        video_sims: Tensor,
        labels: Tensor,
        self_sims: Tensor,
        frame_sims: Tensor | None = None,
        teacher_sims: Tensor | None = None,
        q_mask: Tensor | None = None,
        t_mask: Tensor | None = None,
        raw: Tensor | None = None,
        raw_mask: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms of one batch.

        video_sims [N, N] in [0, 1] (in-batch, see unit_similarity), labels [N, N] bool (same clip),
        self_sims [N] in [0, 1] (each video against itself). The diagonal of video_sims is always
        excluded; valid [N, N] optionally excludes more pairs. frame_sims / teacher_sims [P, Tq, Tt]
        with q_mask [P, Tq], t_mask [P, Tt] are the positive pairs' frame matrices (network F and
        frozen teacher); raw is the comparator's pre-Hardtanh output with raw_mask broadcastable to
        it. Omitted frame inputs or raw give a 0 term.
        """
        if video_sims.dim() != 2 or video_sims.shape[0] != video_sims.shape[1]:
            raise ValueError(f"video_sims must be square [N, N], got {tuple(video_sims.shape)}")
        if (frame_sims is None) != (teacher_sims is None):
            raise ValueError("frame_sims and teacher_sims must be given together")
        cfg = self.config
        pair_valid = off_diagonal(video_sims.shape[0], device=video_sims.device)
        if valid is not None:
            pair_valid = pair_valid & valid.bool()

        hard_negative = hard_negative_loss(video_sims, labels, valid=pair_valid, eps=cfg.eps)
        self_term = self_similarity_loss(self_sims, eps=cfg.eps)
        terms: dict[str, Tensor] = {
            "infonce": infonce_loss(video_sims, labels, temperature=cfg.temperature, valid=pair_valid),
            "ap": quadlinear_ap_loss(video_sims, labels, sigma=cfg.ap_sigma, rho=cfg.ap_rho, valid=pair_valid),
            "sshn": hard_negative + self_term,
            "hard_negative": hard_negative,
            "self": self_term,
        }
        if frame_sims is not None and teacher_sims is not None:
            terms["inner"] = frame_ap_loss(
                frame_sims,
                teacher_sims,
                q_mask,
                t_mask,
                rate_top=cfg.rate_top,
                rate_bottom=cfg.rate_bottom,
                sigma=cfg.inner_sigma,
                rho=cfg.inner_rho,
            )
        else:
            terms["inner"] = zero_loss(video_sims)
        terms["reg"] = similarity_regularisation(raw, raw_mask) if raw is not None else zero_loss(video_sims)

        total = torch.zeros((), dtype=torch.float32, device=video_sims.device)
        for name in type(self.weights).model_fields:
            total = total + getattr(self.weights, name) * terms[name]
        terms["total"] = total
        return terms
