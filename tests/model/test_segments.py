"""The cosine scale of the frame-to-frame similarity matrix."""

from __future__ import annotations

import numpy as np

from model.similarity.segments import cosine_scaled, frame_energy


def test_cosine_scaled_undoes_attention_shrinking_and_keeps_unit_features() -> None:
    rng = np.random.default_rng(0)
    query = rng.normal(size=(5, 9, 16)).astype(np.float32)
    target = rng.normal(size=(7, 9, 16)).astype(np.float32)
    query /= np.linalg.norm(query, axis=-1, keepdims=True)
    target /= np.linalg.norm(target, axis=-1, keepdims=True)
    cosine = np.einsum("iod,jpd->iojp", query, target).max(axis=3).mean(axis=1)
    assert np.allclose(cosine_scaled(cosine, frame_energy(query), frame_energy(target)), cosine, atol=1e-6)
    # Attention weighs all regions of a frame alike here: 0.6 in the query, 0.4 to 0.9 in the target.
    weights = np.linspace(0.4, 0.9, 7, dtype=np.float32)[:, None, None]
    shrunk_query, shrunk_target = 0.6 * query, weights * target
    shrunk = np.einsum("iod,jpd->iojp", shrunk_query, shrunk_target).max(axis=3).mean(axis=1)
    assert shrunk.max() < 0.6 * cosine.max() + 1e-6
    assert np.allclose(
        cosine_scaled(shrunk, frame_energy(shrunk_query), frame_energy(shrunk_target)), cosine, atol=1e-5
    )
