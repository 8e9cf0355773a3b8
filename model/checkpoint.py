"""One checkpoint format: safetensors tensors + JSON metadata.

Tensors: `pca.mean`, `pca.projection` (the frozen whitening) and `similarity.*` (the
trainable network's state, absent in training-free mode). Metadata (string values, as
safetensors requires): format name and version, backbone, similarity config, mode, and the
training provenance. Loading checks all of it, so a wrong or damaged file fails loudly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.encoders.pca import PCAWhitening
from model.encoders.registry import BACKBONES
from model.fileio import atomic_path
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity

FORMAT_NAME = "hapvr-search-checkpoint"
FORMAT_VERSION = 1
MODES = ("training-free", "untrained", "trained")
DEFAULT_CHECKPOINT = Path(__file__).with_name("checkpoints") / "default.safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, damaged or does not fit this code."""


@dataclass
class ModelBundle:
    """Everything needed to embed and compare videos: backbone name, PCA, similarity network."""

    backbone: str
    pca: PCAWhitening
    similarity: HapVRSimilarity
    mode: str = "training-free"
    provenance: dict[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = None  # a local file for backbones whose weights no package ships

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; known: {sorted(BACKBONES)}")

    @classmethod
    def training_free(cls, pca: PCAWhitening, backbone: str = "efficientnet_lite0", **kwargs: Any) -> ModelBundle:
        config = SimilarityConfig.training_free(dim=pca.dim)
        return cls(backbone=backbone, pca=pca, similarity=HapVRSimilarity(config).eval(), **kwargs)

    def frame_encoder(self, **options: Any):  # -> FrameEncoder; imported late: onnxruntime is heavy
        from model.encoders.frame_encoder import FrameEncoder

        return FrameEncoder(backbone=self.backbone, pca=self.pca, weights=self.backbone_weights, **options)

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "backbone": self.backbone,
            "mode": self.mode,
            "similarity": json.dumps(self.similarity.config.to_dict()),
            "provenance": json.dumps(self.provenance, sort_keys=True),
        }


def save_checkpoint(path: str | Path, bundle: ModelBundle) -> Path:
    """Write atomically: a reader never sees half a file."""
    path = Path(path)
    tensors = {name: value.cpu() for name, value in bundle.pca.state_tensors().items()}
    for name, value in bundle.similarity.state_dict().items():
        tensors[f"similarity.{name}"] = value.detach().contiguous().cpu()
    # 0644: a checkpoint is meant to be shared (the temp file is created 0600).
    with atomic_path(path, mode=0o644) as temporary:
        save_file(tensors, str(temporary), metadata=bundle.metadata())
    return path


def load_checkpoint(path: str | Path, backbone_weights: str | None = None) -> ModelBundle:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated): {error}") from None

    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a hapvr-search checkpoint (format={metadata.get('format')!r})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has checkpoint format version {metadata.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    try:
        config = SimilarityConfig.from_dict(json.loads(metadata["similarity"]))
        provenance = json.loads(metadata.get("provenance", "{}"))
        backbone = metadata["backbone"]
        mode = metadata["mode"]
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path} has malformed metadata: {error}") from None
    if backbone not in BACKBONES:
        raise CheckpointError(f"{path} needs backbone {backbone!r}, which this code does not know")

    try:
        pca = PCAWhitening.from_state_tensors(tensors)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    expected_channels = BACKBONES[backbone].channels
    if (pca.in_dim, pca.dim) != (expected_channels, config.dim):
        raise CheckpointError(
            f"{path}: PCA of shape {(pca.in_dim, pca.dim)} does not fit backbone {backbone!r} "
            f"({expected_channels} channels) and dim {config.dim}"
        )
    state = {
        name.removeprefix("similarity."): value for name, value in tensors.items() if name.startswith("similarity.")
    }
    unexpected = [name for name in tensors if not name.startswith(("similarity.", "pca."))]
    if unexpected:
        raise CheckpointError(f"{path} holds tensors this code does not know: {unexpected[:5]}")

    similarity = HapVRSimilarity(config)
    try:
        similarity.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: network weights do not match its config: {error}") from None
    similarity.eval()
    try:
        return ModelBundle(backbone, pca, similarity, mode, provenance, backbone_weights)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None


def load_default(path: str | Path | None = None) -> ModelBundle:
    """The configured checkpoint, or the one shipped with the package."""
    return load_checkpoint(path or DEFAULT_CHECKPOINT)


def fingerprint(path: str | Path | None = None) -> str:
    """Identity of the configured checkpoint (`path`, or the shipped one): the first 16 hex digits of
    its sha256. Features made by two checkpoints are comparable only when these agree, so the
    service records it with every video it indexes. Hashing the 5 MB default takes about 10 ms.
    """
    import hashlib

    resolved = Path(path) if path is not None else DEFAULT_CHECKPOINT
    digest = hashlib.sha256()
    try:
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise CheckpointError(f"checkpoint {resolved.name} is unreadable: {error.strerror}") from None
    return digest.hexdigest()[:16]
