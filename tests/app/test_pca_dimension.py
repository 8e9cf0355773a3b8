"""A checkpoint whose PCA keeps an odd number of dimensions (fitted on a small folder) is served.

The real model end to end: the encoder is exported anew for the checkpoint, so the run is long.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.components import build_components
from tests.app.apptools import Media, assert_consistent

pytestmark = pytest.mark.slow


def test_a_pca_of_287_dimensions_is_served_with_an_approximate_index(
    service_factory,  # type: ignore[no-untyped-def]
    media: Media,
    tmp_path: Path,
) -> None:
    from model.checkpoint import ModelBundle, fingerprint, load_default, save_checkpoint
    from model.encoders.pca import PCAWhitening

    shipped = load_default()
    pca = PCAWhitening(shipped.pca.mean, shipped.pca.projection[:, :287].clone())
    checkpoint = save_checkpoint(tmp_path / "pca287.safetensors", ModelBundle.training_free(pca, shipped.backbone))
    # 20 frame vectors a video: the third one takes the index past 40 and makes it IVF-PQ.
    service = service_factory(factory=build_components, checkpoint=checkpoint, index_threshold=40)
    original = service.ingest(media.video("original.mp4", seed=1, seconds=20, fps=2, size=(160, 120)))
    copy = service.ingest(media.reencoded("copy.mp4", seed=1, seconds=20, fps=2, size=(160, 120)))
    other = service.ingest(media.video("other.mp4", seed=2, seconds=20, fps=2, size=(160, 120)))
    assert {video["status"] for video in (original, copy, other)} == {"ready"}
    assert copy["checkpoint"] == fingerprint(checkpoint)
    assert service.backend.library._index.kind == "ivfpq"
    assert service.backend.library.store.get(copy["id"]).dim == 287
    hits = service.client.get("/search", params={"video_id": original["id"]}).json()["data"]
    assert hits[0]["video_id"] == copy["id"]
    assert assert_consistent(service) == {original["id"], copy["id"], other["id"]}
