"""How much a frame says about its video: low for black, single-colour and static frames.

A frame that looks the same as its neighbour (cosine region-level similarity of at least
`STATIC_HIGH` one sample apart, a second at the default rate) is a held image: a black fade,
a single-colour slate, a title card, a frozen picture. Such frames match the same frames of
any other video exactly, so they must not make two videos a copy of each other; their weight
falls linearly from 1 at `STATIC_LOW` to `FLOOR` at `STATIC_HIGH`. Moving footage stays at 1
(on the real test clips, consecutive frames of moving scenes sit between 0.02 and 0.97;
black and title-card frames at 0.998 and above).

The floor keeps a wholly static video comparable with its own copies: coverage and strength
are weighted means, so uniform low weights cancel out there.
"""

from __future__ import annotations

import numpy as np
import torch

STATIC_LOW = 0.97
STATIC_HIGH = 0.995
FLOOR = 0.05


def frame_weights(regions: np.ndarray) -> np.ndarray:
    """[T, R, D] indexed region features -> float32 [T] informativeness weights in [FLOOR, 1]."""
    count = len(regions)
    if count < 2:
        return np.ones(count, dtype=np.float32)
    r = torch.from_numpy(np.ascontiguousarray(regions)).float()
    # Region-level Chamfer of each frame with the next, both ways, on the cosine scale.
    sim = torch.einsum("trd,tsd->trs", r[:-1], r[1:])
    energy = r.square().sum(dim=2).mean(dim=1)
    forward = sim.amax(dim=2).mean(dim=1)
    backward = sim.amax(dim=1).mean(dim=1)
    scale = torch.sqrt(torch.clamp(energy[:-1] * energy[1:], min=1e-12))
    step = ((forward + backward) / 2 / scale).numpy()
    # A frame is as static as its more similar neighbour.
    static = np.maximum(np.concatenate([step, [-1.0]]), np.concatenate([[-1.0], step]))
    weights = (STATIC_HIGH - static) / (STATIC_HIGH - STATIC_LOW)
    return np.clip(weights, FLOOR, 1.0).astype(np.float32)
