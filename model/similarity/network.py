"""The HAP-VR hierarchical similarity network (ARCHITECTURE.md section 5).

Region features go through `index` (attention) once, when a video is indexed; every
comparison method takes indexed features. A comparison builds the frame-to-frame matrix F
with region-level TopK-Chamfer, refines it with the comparator CNN into G, and reduces G with
video-level TopK-Chamfer to one score per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from model.similarity.config import SimilarityConfig


class RegionAttention(nn.Module):
    """w = sigmoid(u . tanh(W x + b)); x <- w * x, one weight per region vector."""

    def __init__(self, dim: int, uniform_start: bool = False) -> None:
        super().__init__()
        self.project = nn.Linear(dim, dim)
        self.context = nn.Linear(dim, 1, bias=False)
        if uniform_start:
            nn.init.zeros_(self.context.weight)  # every weight 0.5: one common scale, the ranking untouched

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.sigmoid(self.context(torch.tanh(self.project(x))))
        return x * weights


# Input columns on each side of a comparator tile that reach its outputs: an output cell covers 4
# input columns and sees 7 more on each side (conv3 at 1/4 resolution, conv2 at 1/2, conv1, with
# pooling between); 8 keeps every tile on the pooling grid.
HALO = 8


class VideoComparator(nn.Module):
    """Small CNN over the frame-to-frame matrix; learns temporal structure (diagonals, runs).

    Padded cells are zeroed after every layer, and a pooled cell is valid only when all of its
    inputs were, so a padded video scores exactly as it would alone. With `residual`, the output
    is F max-pooled to the output's resolution plus a learned correction that starts at zero.
    """

    # Cells of F (batch x rows x columns) one pass takes at most, unless tiles of 4 columns need
    # more: 1M cells bound conv1's output to 128 MB. A 600-frame clip searched against a library
    # holding a 7,000-frame video peaked the service at 2.5 GB in one pass, 1.90 GB in tiles of
    # 2M cells and 1.84 GB in tiles of 1M (bench/results/memory.md).
    tile_cells = 1_000_000

    def __init__(self, residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.head = nn.Conv2d(128, 1, 1)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.head.weight)
            assert self.head.bias is not None, "the head is built with a bias"
            nn.init.zeros_(self.head.bias)

    def forward(self, frame_sim: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """[B, Tq, Tt] similarities and validity -> pre-activation [B, Tq/4, Tt/4] and its validity.

        Wide matrices go through in column tiles of about `tile_cells` cells, each with HALO
        columns of context on both sides, so the result is exactly that of one pass while memory
        stays bounded: conv1's output takes 32 float32 channels per cell (128 B), and one pass over
        a 600 x 7,000 pair held 537 MB (a 7,000 x 7,000 pair, 6.3 GB).
        """
        batch, rows, cols = frame_sim.shape
        step = max(4, self.tile_cells // max(1, batch * rows) // 4 * 4)  # on the pooling grid
        if cols <= step + 2 * HALO:
            return self._forward(frame_sim, mask)
        out_cols = cols // 4
        raws, valids = [], []
        for start in range(0, cols, step):
            low, high = max(0, start - HALO), min(cols, start + step + HALO)
            raw, valid = self._forward(frame_sim[:, :, low:high], mask[:, :, low:high])
            first = (start - low) // 4
            count = min(step // 4, out_cols - start // 4)
            raws.append(raw[:, :, first : first + count])
            valids.append(valid[:, :, first : first + count])
        return torch.cat(raws, dim=2), torch.cat(valids, dim=2)

    def _forward(self, frame_sim: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """One pass of the network over the whole of [B, Tq, Tt]."""
        valid = mask.unsqueeze(1).to(frame_sim.dtype)
        x = frame_sim.unsqueeze(1) * valid
        prior = _pool(_pool(x)) if self.residual else None
        # Pooling before the ReLU gives the same values (ReLU is monotonic) on 4x fewer elements.
        x, valid = _pool(self.conv1(x)), _pool_mask(valid)
        x = torch.relu(x) * valid
        x, valid = _pool(self.conv2(x)), _pool_mask(valid)
        x = torch.relu(x) * valid
        x = torch.relu(self.conv3(x)) * valid
        raw = self.head(x)
        if prior is not None:
            raw = raw + prior
        raw = raw * valid
        return raw.squeeze(1), valid.squeeze(1) > 0


def _pool(x: Tensor) -> Tensor:
    return nnf.max_pool2d(x, 2, 2)


def _pool_mask(valid: Tensor) -> Tensor:
    # Min-pool: a cell survives only if every input frame was real, matching floor pooling alone.
    return -nnf.max_pool2d(-valid, 2, 2)


@dataclass
class SimilarityOutput:
    """Scores and the intermediate matrices a caller may want (segments, losses)."""

    score: Tensor  # [B] in [-1, 1]
    frame_sim: Tensor  # F [B, Tq, Tt], zero where padded
    frame_mask: Tensor  # [B, Tq, Tt] bool
    video_sim: Tensor  # G [B, Tq', Tt'] after hardtanh (equals F in training-free mode)
    video_mask: Tensor  # [B, Tq', Tt'] bool
    video_sim_raw: Tensor | None  # comparator output before hardtanh, for the regulariser


def topk_chamfer(sim: Tensor, row_mask: Tensor, col_mask: Tensor, rate: float) -> Tensor:
    """Mean over valid rows of the mean of the top k valid columns, k = max(1, round(cols * rate)).

    sim [B, I, J], row_mask [B, I], col_mask [B, J] -> [B]. k is taken per batch item from its
    own number of valid columns, so padding never changes a score.
    """
    valid_cols = col_mask.sum(dim=1)
    if bool((valid_cols == 0).any()) or bool((row_mask.sum(dim=1) == 0).any()):
        raise ValueError("every compared video needs at least one valid frame")
    k = torch.clamp(torch.round(valid_cols.to(sim.dtype) * rate), min=1).long()
    k_max = int(k.max())
    masked = sim.masked_fill(~col_mask.unsqueeze(1), float("-inf"))
    top = masked.topk(k_max, dim=2).values
    keep = torch.arange(k_max, device=sim.device) < k.view(-1, 1, 1)
    row_scores = top.masked_fill(~keep, 0.0).sum(dim=2) / k.view(-1, 1).to(sim.dtype)
    row_scores = row_scores.masked_fill(~row_mask, 0.0)
    return row_scores.sum(dim=1) / row_mask.sum(dim=1).to(sim.dtype)


class HapVRSimilarity(nn.Module):
    """Learned video-to-video similarity over region features [T, R, D]."""

    def __init__(self, config: SimilarityConfig | None = None) -> None:
        super().__init__()
        self.config = config or SimilarityConfig()
        residual = self.config.residual
        self.attention = RegionAttention(self.config.dim, uniform_start=residual) if self.config.attention else None
        self.comparator = VideoComparator(residual) if self.config.comparator else None

    def index(self, regions: Tensor) -> Tensor:
        """Index-time work: attention-weight each region vector ([..., R, D] -> same shape)."""
        if self.attention is None:
            return regions
        return self.attention(regions)

    def frame_similarity(
        self, query: Tensor, target: Tensor, query_mask: Tensor | None = None, target_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Region-level TopK-Chamfer: [B|1, Tq, R, D] x [B, Tt, R, D] -> F [B, Tq, Tt] and its mask."""
        batch = max(query.shape[0], target.shape[0])
        tq, regions, dim = query.shape[1:]
        tt = target.shape[1]
        query_mask = _full_mask(query_mask, query.shape[0], tq, query.device)
        target_mask = _full_mask(target_mask, target.shape[0], tt, target.device)
        if query.shape[0] == 1:
            # One query against many targets: a single large GEMM runs far closer to the
            # machine's matmul rate than a batch of small ones.
            region_sim = torch.mm(query.reshape(tq * regions, dim), target.reshape(-1, dim).t())
            region_sim = region_sim.view(tq, regions, batch, tt, regions).permute(2, 0, 1, 3, 4)
        else:
            region_sim = torch.matmul(
                query.reshape(query.shape[0], tq * regions, dim),
                target.reshape(target.shape[0], tt * regions, dim).transpose(1, 2),
            ).view(batch, tq, regions, tt, regions)
        k = self.config.k_regions
        if k == 1:
            best = region_sim.max(dim=4).values  # [B, Tq, R, Tt]
        else:
            best = region_sim.topk(k, dim=4).values.mean(dim=4)
        frame_sim = best.mean(dim=2)
        mask = query_mask.unsqueeze(2) & target_mask.unsqueeze(1)
        mask = mask.expand(batch, tq, tt)
        return frame_sim.masked_fill(~mask, 0.0), mask

    def compare(
        self, query: Tensor, target: Tensor, query_mask: Tensor | None = None, target_mask: Tensor | None = None
    ) -> SimilarityOutput:
        """Full comparison of indexed videos; a query batch of 1 is broadcast over the targets."""
        frame_sim, frame_mask = self.frame_similarity(query, target, query_mask, target_mask)
        return self.video_level(frame_sim, frame_mask)

    def video_level(self, frame_sim: Tensor, frame_mask: Tensor) -> SimilarityOutput:
        """From frame-to-frame matrices F [B, Tq, Tt] (zero where masked) to one score per pair:
        the comparator and hardtanh when the network has them, then video-level TopK-Chamfer
        (both directions when symmetric)."""
        if self.comparator is None:
            raw, video_sim, video_mask = None, frame_sim, frame_mask
        else:
            raw, video_mask = self.comparator(frame_sim, frame_mask)
            video_sim = nnf.hardtanh(raw)
        rows = video_mask.any(dim=2)
        cols = video_mask.any(dim=1)
        score = topk_chamfer(video_sim, rows, cols, self.config.rho_v)
        if self.config.symmetric:
            reverse = topk_chamfer(video_sim.transpose(1, 2), cols, rows, self.config.rho_v)
            score = (score + reverse) / 2
        return SimilarityOutput(score, frame_sim, frame_mask, video_sim, video_mask, raw)

    def forward(
        self, query: Tensor, target: Tensor, query_mask: Tensor | None = None, target_mask: Tensor | None = None
    ) -> Tensor:
        return self.compare(query, target, query_mask, target_mask).score

    def one_to_many(self, query: Tensor, targets: list[Tensor]) -> SimilarityOutput:
        """One indexed query [Tq, R, D] against indexed targets of any lengths."""
        query_batch, query_mask = self.batch([query])
        target_batch, target_mask = self.batch(targets)
        return self.compare(query_batch, target_batch, query_mask, target_mask)

    def all_pairs(self, videos: Tensor, mask: Tensor, chunk: int = 8) -> SimilarityOutput:
        """Every pair of a training batch: [N, T, R, D] -> outputs whose leading dims are [N, N]."""
        count = videos.shape[0]
        outputs = [
            self.compare(
                videos[start : start + chunk].repeat_interleave(count, dim=0),
                videos.repeat(min(chunk, count - start), 1, 1, 1),
                mask[start : start + chunk].repeat_interleave(count, dim=0),
                mask.repeat(min(chunk, count - start), 1),
            )
            for start in range(0, count, chunk)
        ]

        def join(parts: list[Tensor]) -> Tensor:
            return torch.cat(parts).view(count, count, *parts[0].shape[1:])

        raw_parts = [output.video_sim_raw for output in outputs if output.video_sim_raw is not None]
        return SimilarityOutput(
            join([output.score for output in outputs]),
            join([output.frame_sim for output in outputs]),
            join([output.frame_mask for output in outputs]),
            join([output.video_sim for output in outputs]),
            join([output.video_mask for output in outputs]),
            join(raw_parts) if raw_parts else None,  # every chunk has one, or (no comparator) none does
        )

    def batch(self, videos: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Pad videos [T, R, D] to one tensor [B, Tmax, R, D] with a validity mask [B, Tmax].

        Videos shorter than `min_frames` are stretched (each frame repeated, order kept) so the
        comparator's two poolings still see a defined matrix.
        """
        videos = [stretch_to_min_frames(video, self.config.min_frames) for video in videos]
        lengths = torch.tensor([video.shape[0] for video in videos], device=videos[0].device)
        batch = pad_sequence(videos, batch_first=True)
        mask = torch.arange(batch.shape[1], device=batch.device) < lengths.unsqueeze(1)
        return batch, mask


def stretch_to_min_frames(video: Tensor, min_frames: int) -> Tensor:
    """Repeat frames of a too-short video evenly up to `min_frames`; longer videos pass as they are."""
    length = video.shape[0]
    if length == 0:
        raise ValueError("a video needs at least one frame")
    if length >= min_frames:
        return video
    index = torch.arange(min_frames, device=video.device) * length // min_frames
    return video[index]


def stretched_frame_index(length: int, min_frames: int) -> list[int]:
    """Original frame of each row of a stretched video (identity when no stretch happened)."""
    if length >= min_frames:
        return list(range(length))
    return [i * length // min_frames for i in range(min_frames)]


def frame_vectors(indexed: Tensor) -> Tensor:
    """One unit vector per frame for the vector index: the normalised mean of its regions."""
    return nnf.normalize(indexed.float().mean(dim=-2), dim=-1)


def _full_mask(mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    return mask
