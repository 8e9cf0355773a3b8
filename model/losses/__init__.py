"""Training losses of the HAP-VR similarity network (ARCHITECTURE.md section 6); pure torch."""

from __future__ import annotations

from model.losses.hard_negative import hard_negative_loss, self_similarity_loss, sshn_loss
from model.losses.infonce import infonce_loss
from model.losses.inner_ap import frame_ap_loss, teacher_pseudo_labels
from model.losses.quadlinear import heaviside, off_diagonal, quadlinear, quadlinear_ap, quadlinear_ap_loss
from model.losses.regularisation import similarity_regularisation
from model.losses.total import HapVRLoss, LossConfig, LossWeights, unit_similarity

__all__ = [
    "HapVRLoss",
    "LossConfig",
    "LossWeights",
    "frame_ap_loss",
    "hard_negative_loss",
    "heaviside",
    "infonce_loss",
    "off_diagonal",
    "quadlinear",
    "quadlinear_ap",
    "quadlinear_ap_loss",
    "self_similarity_loss",
    "similarity_regularisation",
    "sshn_loss",
    "teacher_pseudo_labels",
    "unit_similarity",
]
