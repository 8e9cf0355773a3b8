"""Similarity regularisation on the comparator's pre-activation output (ARCHITECTURE.md section 6).

The comparator ends in a Hardtanh, whose gradient is zero outside [-1, 1]; this term pulls
escaped values back so they keep learning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_regularisation(raw: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sum over elements of relu(x - 1) + relu(-1 - x); mask (bool, broadcastable to raw) drops entries.

    A sum, not a mean, as specified: its size grows with the batch and the matrix size.
    """
    x = raw.float()
    if mask is not None:
        # Zero masked entries before the relu so padding (even NaN/inf) adds nothing, gradient included.
        x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return (F.relu(x - 1.0) + F.relu(-1.0 - x)).sum()
