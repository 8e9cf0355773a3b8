"""The checkpoint file: round trip, metadata, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError, ModelBundle, load_checkpoint, save_checkpoint
from model.encoders.pca import PCAWhitening
from model.encoders.registry import BACKBONES
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity

CHANNELS = BACKBONES["efficientnet_lite0"].channels


def make_pca(dim: int = 64) -> PCAWhitening:
    generator = torch.Generator().manual_seed(0)
    return PCAWhitening(torch.randn(CHANNELS, generator=generator), torch.randn(CHANNELS, dim, generator=generator))


def trained_bundle(dim: int = 64) -> ModelBundle:
    torch.manual_seed(1)
    network = HapVRSimilarity(SimilarityConfig(dim=dim, symmetric=True))
    provenance = {"steps": 10, "seed": 1, "data": "clips/"}
    return ModelBundle("efficientnet_lite0", make_pca(dim), network, mode="trained", provenance=provenance)


def test_round_trip_keeps_weights_config_and_provenance(tmp_path: Path) -> None:
    bundle = trained_bundle()
    path = save_checkpoint(tmp_path / "model.safetensors", bundle)
    loaded = load_checkpoint(path)
    assert loaded.mode == "trained"
    assert loaded.provenance == {"steps": 10, "seed": 1, "data": "clips/"}
    assert loaded.similarity.config == bundle.similarity.config
    for name, value in bundle.similarity.state_dict().items():
        assert torch.equal(value, loaded.similarity.state_dict()[name]), name
    assert torch.equal(loaded.pca.projection, bundle.pca.projection)
    videos = torch.nn.functional.normalize(torch.randn(2, 8, 9, 64), dim=-1)
    with torch.inference_mode():
        expected = bundle.similarity.eval()(videos[:1], videos[1:])
        assert torch.allclose(loaded.similarity(videos[:1], videos[1:]), expected)


def test_training_free_bundle_has_no_network_weights(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "pca.safetensors", ModelBundle.training_free(make_pca(32)))
    loaded = load_checkpoint(path)
    assert loaded.mode == "training-free"
    assert loaded.similarity.config == SimilarityConfig.training_free(dim=32)
    assert list(loaded.similarity.parameters()) == []


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file_is_a_clear_error(tmp_path: Path, keep: float) -> None:
    path = save_checkpoint(tmp_path / "model.safetensors", trained_bundle())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00\x01 this is not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_rejected(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a hapvr-search checkpoint"):
        load_checkpoint(path)


def test_mismatched_weights_are_rejected(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(tmp_path / "model.safetensors", trained_bundle())
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    tensors["similarity.comparator.conv1.weight"] = torch.zeros(16, 1, 3, 3)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


def test_pca_that_does_not_fit_the_backbone_is_rejected(tmp_path: Path) -> None:
    bundle = trained_bundle()
    bundle.pca = PCAWhitening(torch.zeros(100), torch.zeros(100, 64))
    path = save_checkpoint(tmp_path / "model.safetensors", bundle)
    with pytest.raises(CheckpointError, match="does not fit backbone"):
        load_checkpoint(path)
