"""On real footage: edited copies score above unrelated clips with the default encoder.

Uses the training-free path (hierarchical Chamfer over the encoder's region features, no
comparator), which must work on its own before any training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model.checkpoint import ModelBundle, load_default
from model.embedding import VideoEmbedder

EDIT_KINDS = ("crop", "reencode", "hflip", "overlay")


@pytest.fixture(scope="module")
def pipeline() -> VideoEmbedder:
    shipped = load_default()
    return VideoEmbedder(ModelBundle.training_free(shipped.pca, backbone=shipped.backbone))


@pytest.fixture(scope="module")
def embedded_sources(pipeline: VideoEmbedder, source_clips: list[Path]) -> list[torch.Tensor]:
    return [torch.from_numpy(pipeline.embed(path).regions.astype("float32")) for path in source_clips]


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_edited_copy_beats_every_unrelated_clip(
    kind: str,
    pipeline: VideoEmbedder,
    source_clips: list[Path],
    embedded_sources: list[torch.Tensor],
    edited_copy: Callable[..., Path],
) -> None:
    similarity = pipeline.bundle.similarity
    failures = []
    for index, clip in enumerate(source_clips):
        copy = torch.from_numpy(pipeline.embed(edited_copy(kind, clip)).regions.astype("float32"))
        with torch.inference_mode():
            scores = similarity.one_to_many(copy, embedded_sources).score
        original = float(scores[index])
        best_unrelated = float(torch.cat([scores[:index], scores[index + 1 :]]).max())
        if original <= best_unrelated:
            failures.append(f"{clip.name}: original {original:.3f} <= unrelated {best_unrelated:.3f}")
    assert not failures, f"{kind} copies: " + "; ".join(failures)
