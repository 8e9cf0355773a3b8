"""PCA whitening of region vectors, learned from data.

    x -> normalize((x - mean) @ V[:, :D] diag(1 / sqrt(d[:D] + eps)))

with d, V the eigenvalues and eigenvectors of the covariance of the training vectors,
largest first. The layer holds only `mean` [C] and `projection` [C, D] (the whitening scale
folded into the eigenvectors); checkpoints store them as "pca.mean" and "pca.projection".
Fitting accumulates first and second moments in float64, so any number of frames can be
streamed through `CovarianceAccumulator` in constant memory.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

STATE_PREFIX = "pca."


class CovarianceAccumulator:
    """Streams [M, C] batches into a count, mean and covariance (float64).

    Moments are taken around the first batch's mean, which keeps the sums small and the
    covariance accurate when the data mean is large next to its spread.
    """

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.count = 0
        self._shift: torch.Tensor | None = None
        self._sum = torch.zeros(channels, dtype=torch.float64)
        self._outer = torch.zeros(channels, channels, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        features = torch.as_tensor(features).reshape(-1, self.channels).to(torch.float64)
        if features.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = features.mean(dim=0)
        centred = features - self._shift
        self.count += centred.shape[0]
        self._sum += centred.sum(dim=0)
        self._outer += centred.T @ centred

    def mean(self) -> torch.Tensor:
        if self._shift is None:
            raise ValueError("no vectors were added")
        return self._shift + self._sum / self.count

    def covariance(self) -> torch.Tensor:
        """Unbiased sample covariance [C, C]."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 vectors, got {self.count}")
        centred_mean = self._sum / self.count
        scatter = self._outer - self.count * torch.outer(centred_mean, centred_mean)
        return scatter / (self.count - 1)

    def fit(self, dim: int = 512, eps: float = 1e-5) -> PCAWhitening:
        """The whitening layer for the vectors seen so far (see `PCAWhitening.fit`)."""
        if self.count < 2:
            raise ValueError(
                f"PCA whitening needs at least 2 sample vectors, got {self.count}; "
                "give it more frames"
            )
        if dim < 1:
            raise ValueError(f"PCA dim must be positive, got {dim}")
        # Centred data of M vectors spans at most M - 1 directions; past them the
        # eigenvalues are noise that whitening would blow up.
        rank = min(self.channels, self.count - 1)
        if dim > rank:
            logger.warning(
                "PCA dim %d capped to %d: only %d sample vectors of width %d",
                dim, rank, self.count, self.channels,
            )
            dim = rank
        eigenvalues, eigenvectors = torch.linalg.eigh(self.covariance())
        order = torch.argsort(eigenvalues, descending=True)[:dim]
        eigenvalues = eigenvalues[order].clamp_min(0.0)
        eigenvectors = eigenvectors[:, order]
        # Eigenvectors are defined up to sign: fix it so fits of the same data agree.
        pivot = eigenvectors.abs().argmax(dim=0)
        signs = torch.sign(eigenvectors[pivot, torch.arange(dim)])
        eigenvectors = eigenvectors * torch.where(signs == 0, 1.0, signs)
        projection = eigenvectors / torch.sqrt(eigenvalues + eps)
        return PCAWhitening(self.mean().float(), projection.float())


class PCAWhitening(nn.Module):
    """Learned whitening [..., C] -> L2-normalised [..., D]."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor) -> None:
        super().__init__()
        if mean.dim() != 1 or projection.dim() != 2 or projection.shape[0] != mean.shape[0]:
            raise ValueError(
                f"PCA mean [C] and projection [C, D] disagree: {tuple(mean.shape)}, "
                f"{tuple(projection.shape)}"
            )
        self.register_buffer("mean", mean.detach().to(torch.float32).clone())
        self.register_buffer("projection", projection.detach().to(torch.float32).clone())

    @property
    def in_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    @classmethod
    def fit(cls, features: torch.Tensor, dim: int = 512, eps: float = 1e-5) -> PCAWhitening:
        """Fit on sample vectors [M, C] (any leading shape is flattened).

        `dim` is capped at min(C, M - 1), with a logged warning, since fewer vectors do not
        determine more directions; fewer than 2 vectors is an error.
        """
        features = torch.as_tensor(features)
        accumulator = CovarianceAccumulator(int(features.shape[-1]))
        accumulator.update(features)
        return accumulator.fit(dim=dim, eps=eps)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) @ projection, before the final L2 normalisation."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"PCA expects vectors of width {self.in_dim}, got {x.shape[-1]}")
        return (x - self.mean) @ self.projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.whiten(x), dim=-1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint stores, under their checkpoint names."""
        return {
            STATE_PREFIX + "mean": self.mean.detach().clone().contiguous(),
            STATE_PREFIX + "projection": self.projection.detach().clone().contiguous(),
        }

    @classmethod
    def from_state_tensors(cls, tensors: dict[str, torch.Tensor]) -> PCAWhitening:
        """Rebuild from checkpoint tensors; a clear error when they are missing."""
        try:
            return cls(tensors[STATE_PREFIX + "mean"], tensors[STATE_PREFIX + "projection"])
        except KeyError as error:
            raise ValueError(f"checkpoint has no PCA tensor {error.args[0]!r}") from None
