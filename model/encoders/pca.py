"""PCA whitening of region vectors, learned from data.

    x -> normalize((x - mean) @ V[:, :D] diag(1 / sqrt(d[:D] + eps)))

with d, V the eigenvalues and eigenvectors of the covariance of the training vectors,
largest first. The layer holds only `mean` [C] and `projection` [C, D] (the whitening scale
folded into the eigenvectors); checkpoints store them as "pca.mean" and "pca.projection".
Fitting accumulates first and second moments in float64, so any number of frames can be
streamed through `CovarianceAccumulator` in constant memory; `fit_on_frames` is the one way
the project fits it from video frames (`hapvr fit-pca`, the trainer, the benchmarks).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from model.encoders.frame_encoder import FrameEncoder

logger = logging.getLogger(__name__)

STATE_PREFIX = "pca."
# Frames encoded at once by `fit_on_frames`: bounds the region features held before they
# enter the covariance.
ENCODE_CHUNK = 256


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
        """The whitening layer for the vectors seen so far (see `PCAWhitening.fit`).

        Raises ValueError, with a one-line reason, when no whitening can be fitted: fewer than
        2 vectors, non-finite values, or no variance at all (every vector the same).
        """
        if dim < 1:
            raise ValueError(f"PCA dim must be positive, got {dim}")
        if self.count < 2:
            raise ValueError(f"PCA whitening needs at least 2 sample vectors, got {self.count}; give it more frames")
        if not (torch.isfinite(self._sum).all() and torch.isfinite(self._outer).all()):
            raise ValueError("PCA whitening cannot be fitted: the sample vectors contain NaN or infinite values")
        mean = self.mean()
        eigenvalues, eigenvectors = _eigh_descending(self.covariance())
        # Centred data of M vectors spans at most M - 1 directions, fewer when vectors repeat;
        # past them the eigenvalues are rounding noise that whitening would blow up. Noise is
        # judged against the largest variance or the vectors' own size, whichever is larger.
        scale = max(float(eigenvalues[0]), float(mean.pow(2).sum()))
        usable = int((eigenvalues > _RANK_RTOL * scale).sum()) if scale > 0 else 0
        usable = min(usable, self.count - 1)
        if usable == 0:
            raise ValueError(
                f"PCA whitening cannot be fitted: all {self.count} sample vectors are identical (no variance)"
            )
        if dim > usable:
            logger.warning(
                "PCA dim %d capped to %d: %d sample vectors of width %d vary along only %d directions",
                dim,
                usable,
                self.count,
                self.channels,
                usable,
            )
            dim = usable
        logger.info("PCA whitening fitted on %d vectors of width %d, keeping %d dims", self.count, self.channels, dim)
        eigenvalues = eigenvalues[:dim].clamp_min(0.0)
        eigenvectors = eigenvectors[:, :dim]
        # Eigenvectors are defined up to sign: fix it so fits of the same data agree.
        pivot = eigenvectors.abs().argmax(dim=0)
        signs = torch.sign(eigenvectors[pivot, torch.arange(dim)])
        eigenvectors = eigenvectors * torch.where(signs == 0, 1.0, signs)
        projection = eigenvectors / torch.sqrt(eigenvalues + eps)
        return PCAWhitening(mean.float(), projection.float())


def fit_on_frames(
    frame_batches: Iterable[np.ndarray], encoder: FrameEncoder, dim: int = 512, eps: float = 1e-5
) -> PCAWhitening:
    """PCA whitening of the raw regions `encoder` gives for uint8 frames [N, H, W, 3].

    Batches of any length are encoded ENCODE_CHUNK frames at a time and streamed into one
    covariance, so memory stays at one C x C matrix whatever the number of frames. A fit needs
    at least 2 distinct frames (the regions of one picture say nothing about other pictures);
    otherwise, and as `CovarianceAccumulator.fit`, it raises ValueError with a one-line reason.
    An error raised by the iterable passes through.
    """
    if encoder.pca is not None:
        raise ValueError("fit PCA on raw regions: give an encoder without PCA")
    accumulator = CovarianceAccumulator(encoder.channels)
    count, first, distinct = 0, None, False
    for frames in frame_batches:
        for start in range(0, len(frames), ENCODE_CHUNK):
            chunk = np.asarray(frames[start : start + ENCODE_CHUNK])
            if len(chunk) == 0:
                continue
            if first is None:
                first = chunk[0].copy()
            if not distinct:
                distinct = any(not np.array_equal(frame, first) for frame in chunk)
            count += len(chunk)
            accumulator.update(torch.from_numpy(encoder.raw_regions(chunk)))
    if count == 0:
        raise ValueError("PCA whitening needs at least 2 distinct frames, got none")
    if not distinct:
        raise ValueError(f"PCA whitening cannot be fitted: all {count} frames are identical (no variance)")
    return accumulator.fit(dim=dim, eps=eps)


# An eigenvalue at or below this fraction of the largest is a direction without variance.
_RANK_RTOL = 1e-10
# Ridge added to the covariance's diagonal, relative to its mean eigenvalue (trace / C), and
# taken off the eigenvalues again: it only keeps the solver away from an exactly singular matrix.
_RIDGE = 1e-12


def _eigh_descending(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues [C] (largest first) and eigenvectors [C, C] of a covariance, in float64.

    The matrix is symmetrised and given a tiny ridge first. LAPACK's symmetric solver can fail
    to converge on large, rank-deficient matrices (seen with some BLAS builds); then numpy's
    solver, then an SVD (equal to the eigen-decomposition for a symmetric PSD matrix) is tried.
    """
    covariance = covariance.to(torch.float64)
    covariance = (covariance + covariance.T) / 2
    channels = covariance.shape[0]
    ridge = _RIDGE * float(torch.trace(covariance)) / channels
    covariance = covariance + ridge * torch.eye(channels, dtype=torch.float64)
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    except RuntimeError as error:  # torch.linalg.LinAlgError
        logger.warning("torch.linalg.eigh failed (%s); trying numpy", str(error).splitlines()[0])
        eigenvalues, eigenvectors = _eigh_fallback(covariance)
    order = torch.argsort(eigenvalues, descending=True)
    return eigenvalues[order] - ridge, eigenvectors[:, order]


def _eigh_fallback(covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy's symmetric solver, else an SVD; (eigenvalues, eigenvectors) in any order."""
    try:
        values, vectors = np.linalg.eigh(covariance.numpy())
        return torch.from_numpy(values), torch.from_numpy(vectors)
    except np.linalg.LinAlgError as error:
        logger.warning("numpy.linalg.eigh failed (%s); trying an SVD", error)
    try:
        vectors_u, values_s, _ = torch.linalg.svd(covariance)
    except RuntimeError as error:
        raise ValueError(f"PCA whitening cannot be fitted: no eigen-decomposition converged ({error})") from None
    return values_s, vectors_u


class PCAWhitening(nn.Module):
    """Learned whitening [..., C] -> L2-normalised [..., D]."""

    mean: torch.Tensor  # buffers, registered in __init__
    projection: torch.Tensor

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor) -> None:
        super().__init__()
        if mean.dim() != 1 or projection.dim() != 2 or projection.shape[0] != mean.shape[0]:
            raise ValueError(
                f"PCA mean [C] and projection [C, D] disagree: {tuple(mean.shape)}, {tuple(projection.shape)}"
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

        `dim` is capped, with a logged warning, at the number of directions the vectors vary
        along: at most min(C, M - 1), fewer when vectors repeat, since fewer vectors do not
        determine more directions. Fewer than 2 vectors, non-finite values or no variance at all
        is a ValueError with a one-line reason.
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
