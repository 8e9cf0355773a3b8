"""Training the frame descriptor for copy detection (`hapvr train-descriptor`).

The backbone stays frozen; what is learned is the projection from its region features to the
descriptor. The projection starts as the checkpoint's PCA whitening P0 and becomes
P0 (I + M), with M a D x D matrix that starts at zero, so step 0 is today's descriptor and the
result is again a whitening layer of the same shape: the checkpoint format, the similarity
network and the index are unchanged, and every older checkpoint still loads.

Recipe (SSCD-style, on the similarity the model uses between frames):
- data: frames sampled from the training videos; each gets `views` copies: view 0 the frame as
  it is, the others 1 to 3 random copy edits (model.train.copy_edits), flipped with `flip_p`;
- the backbone's regions of every view are computed once (the expensive part) and kept, so the
  steps run on cached features and take milliseconds;
- loss: InfoNCE over the frame-to-frame Chamfer similarity (mean over one frame's regions of
  the best match among the other's, both directions averaged) between two views of a frame,
  every other frame of the batch a negative, including frames of the same recording at other
  times (only those within `near_seconds` of it are left out); plus a KoLeo term that spreads the
  frames' pooled descriptors over the sphere;
- validation: frames of held-out stretches of every video (never trained on); each edited view
  is a query over the unedited views, with the same-video neighbours within `near_seconds`
  left out; the step with the best mean reciprocal rank is kept (ties: the earliest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.checkpoint import ModelBundle
from model.encoders.frame_encoder import center_crop
from model.encoders.pca import PCAWhitening
from model.fileio import atomic_path
from model.train.copy_edits import copy_view

logger = logging.getLogger(__name__)

FEATURES_FILE = "views.npz"
ENCODE_BATCH = 32  # frames whose views are encoded in one call


@dataclass(frozen=True)
class DescriptorConfig:
    """Every setting of a run (the command's flags)."""

    fps: float = 1.0  # frames sampled per second of video
    max_frames_per_video: int = 240  # long videos are sampled evenly down to this
    views: int = 6  # per frame: the frame itself and views - 1 edited copies
    flip_p: float = 0.3  # chance a copy is also mirrored (0: the descriptor is not taught flips)
    steps: int = 300
    batch_size: int = 128  # frames per step (two views each)
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 0.05
    koleo: float = 0.1  # weight of the spread term
    near_seconds: float = 2.0  # same-video frames closer than this are not negatives of each other
    val_block_seconds: float = 20.0  # every fifth block of this length is held out for validation
    eval_every: int = 50
    seed: int = 0

    def check(self) -> None:
        problems = [
            (self.fps > 0, f"fps must be positive, got {self.fps}"),
            (self.max_frames_per_video >= 2, "max-frames-per-video must be at least 2"),
            (self.views >= 2, f"views must be at least 2 (the frame and one copy), got {self.views}"),
            (0 <= self.flip_p <= 1, f"flip-p must be in [0, 1], got {self.flip_p}"),
            (self.steps >= 0, f"steps must not be negative, got {self.steps}"),
            (self.batch_size >= 2, f"batch-size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.temperature > 0, f"temperature must be positive, got {self.temperature}"),
            (self.koleo >= 0, f"koleo must not be negative, got {self.koleo}"),
            (self.near_seconds >= 0, f"near-seconds must not be negative, got {self.near_seconds}"),
            (self.val_block_seconds > 0, f"val-block-seconds must be positive, got {self.val_block_seconds}"),
            (self.eval_every >= 1, f"eval-every must be at least 1, got {self.eval_every}"),
        ]
        for ok, message in problems:
            if not ok:
                raise ValueError(message)


@dataclass
class ViewFeatures:
    """Backbone regions of every view of every sampled frame, and where each frame came from."""

    regions: np.ndarray  # float16 [N, V, R, C]
    video: np.ndarray  # int [N], index into `names`
    time: np.ndarray  # float [N], seconds
    names: list[str]

    def validation_mask(self, block_seconds: float) -> np.ndarray:
        """Frames in every fifth `block_seconds` stretch of their video: held out of training."""
        return (np.floor(self.time / block_seconds).astype(int) % 5) == 2


def sample_frames(
    videos: list[Path], fps: float, cap: int, log: Callable[[str], None]
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Decoded frames (uint8 [H, W, 3], short side 256) with their video index and time."""
    from model.video import decode_video

    frames: list[np.ndarray] = []
    video_of, time_of = [], []
    for index, path in enumerate(videos):
        decoded = decode_video(path, fps=fps)
        keep = np.unique(np.linspace(0, len(decoded.frames) - 1, min(cap, len(decoded.frames))).round().astype(int))
        frames.extend(decoded.frames[i] for i in keep)
        video_of.extend([index] * len(keep))
        time_of.extend(decoded.timestamps[keep].tolist())
        log(f"{path.name}: {len(keep)} of {len(decoded.frames)} frames")
    return frames, np.asarray(video_of), np.asarray(time_of, dtype=np.float64)


def compute_view_features(
    videos: list[Path], encoder: Any, config: DescriptorConfig, log: Callable[[str], None]
) -> ViewFeatures:
    """Sample frames, make their copies and run the frozen backbone over every view once."""
    frames, video_of, time_of = sample_frames(videos, config.fps, config.max_frames_per_video, log)
    if len(set(video_of.tolist())) < 2:
        raise ValueError("the descriptor needs frames of at least 2 videos (picture-in-picture mixes two)")
    rng = np.random.default_rng(config.seed)
    regions = np.empty((len(frames), config.views, encoder.regions, encoder.channels), dtype=np.float16)
    started = time.monotonic()
    threads = torch.get_num_threads()
    pending: list[np.ndarray] = []  # views cropped as the encoder crops, for one batched call
    for i, frame in enumerate(frames):
        others = np.flatnonzero(video_of != video_of[i])
        # The edits are small tensor ops: one thread runs them fastest (no hand-off between threads).
        torch.set_num_threads(1)
        try:
            views = [frame] + [
                copy_view(frame, frames[int(rng.choice(others))], rng, config.flip_p)[0]
                for _ in range(config.views - 1)
            ]
        finally:
            torch.set_num_threads(threads)
        pending.extend(center_crop(view[None], encoder.crop)[0] for view in views)
        if len(pending) >= ENCODE_BATCH * config.views or i == len(frames) - 1:
            done = len(pending) // config.views
            encoded = encoder.raw_regions(np.stack(pending))
            regions[i + 1 - done : i + 1] = encoded.reshape(done, config.views, *encoded.shape[1:])
            pending = []
            log(f"views of {i + 1}/{len(frames)} frames encoded, {time.monotonic() - started:.0f} s")
    names = [path.name for path in videos]
    return ViewFeatures(regions, video_of, time_of, names)


def save_features(path: Path, features: ViewFeatures, key: str) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(
                handle,
                regions=features.regions,
                video=features.video,
                time=features.time,
                names=np.array(features.names),
                key=np.array(key),
            )


def load_features(path: Path, key: str) -> ViewFeatures | None:
    """The cached features when they were made with the same key, else None."""
    if not path.is_file():
        return None
    with np.load(path) as stored:
        if str(stored["key"]) != key:
            return None
        return ViewFeatures(stored["regions"], stored["video"], stored["time"], [str(n) for n in stored["names"]])


def features_key(videos: list[Path], config: DescriptorConfig, encoder_id: str) -> str:
    """What decides the cached views: the videos, the sampling and copy settings, the backbone."""
    digest = hashlib.sha256(encoder_id.encode())
    for path in videos:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    settings = (config.fps, config.max_frames_per_video, config.views, config.flip_p, config.seed)
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# The head and its loss


class ProjectionHead(torch.nn.Module):
    """Whitened regions z0 [..., D] -> L2-normalised z0 (I + M); M starts at zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.correction = torch.nn.Parameter(torch.zeros(dim, dim))

    def forward(self, whitened: Tensor) -> Tensor:
        return F.normalize(whitened + whitened @ self.correction, dim=-1)

    def export(self, pca: PCAWhitening) -> PCAWhitening:
        """The whitening layer equal to `pca` followed by this head."""
        with torch.no_grad():
            eye = torch.eye(self.correction.shape[0])
            return PCAWhitening(pca.mean, pca.projection @ (eye + self.correction.detach()))


def chamfer_matrix(a: Tensor, b: Tensor) -> Tensor:
    """[N, R, D] x [M, R, D] -> [N, M]: mean over a's regions of the best match among b's."""
    sims = torch.einsum("nrd,msd->nmrs", a, b)
    return sims.amax(dim=3).mean(dim=2)


def symmetric_chamfer(x: Tensor) -> Tensor:
    sims = chamfer_matrix(x, x)
    return (sims + sims.T) / 2


def koleo(vectors: Tensor, same: Tensor, eps: float = 1e-8) -> Tensor:
    """Kozachenko-Leonenko spread: -mean log distance to the nearest other (not `same`) vector."""
    distances = torch.cdist(vectors, vectors)
    distances = distances.masked_fill(same, float("inf"))
    return -torch.log(distances.amin(dim=1) + eps).mean()


def descriptor_loss(
    views: Tensor, video: Tensor, when: Tensor, config: DescriptorConfig
) -> tuple[Tensor, dict[str, float]]:
    """views [B, 2, R, D] (two views of B frames); video, when [B]: InfoNCE + koleo * KoLeo."""
    batch = views.shape[0]
    flat = views.transpose(0, 1).reshape(2 * batch, *views.shape[2:])  # first views, then second views
    sims = symmetric_chamfer(flat)
    source = torch.arange(batch).repeat(2)
    vid, at = video.repeat(2), when.repeat(2)
    same_frame = source[:, None] == source[None, :]
    near = (vid[:, None] == vid[None, :]) & ((at[:, None] - at[None, :]).abs() < config.near_seconds)
    partner = (torch.arange(2 * batch) + batch) % (2 * batch)
    excluded = (near | same_frame) & ~F.one_hot(partner, 2 * batch).bool()
    logits = (sims / config.temperature).masked_fill(excluded, float("-inf"))
    infonce = F.cross_entropy(logits, partner)
    pooled = F.normalize(flat.mean(dim=1), dim=-1)
    spread = koleo(pooled, same_frame | near) if config.koleo > 0 else sims.new_zeros(())
    total = infonce + config.koleo * spread
    accuracy = (logits.argmax(dim=1) == partner).float().mean()
    parts = {"loss": total, "infonce": infonce, "koleo": spread, "acc": accuracy}
    return total, {name: float(value.detach()) for name, value in parts.items()}


@torch.no_grad()
def evaluate(
    head: ProjectionHead, whitened: Tensor, video: np.ndarray, when: np.ndarray, near_seconds: float
) -> dict[str, float]:
    """Each edited view of a validation frame ranked over the unedited views: R@1 and MRR.

    Unedited views of the same video within `near_seconds` (other than the frame's own) are left
    out of the ranking: they are the same picture, not a wrong answer.
    """
    if len(whitened) < 2:
        return {"R@1": float("nan"), "MRR": float("nan"), "queries": 0.0}
    database = head(whitened[:, 0])
    vid, at = torch.as_tensor(video), torch.as_tensor(when)
    near = (vid[:, None] == vid[None, :]) & ((at[:, None] - at[None, :]).abs() < near_seconds)
    near.fill_diagonal_(False)
    ranks = []
    for v in range(1, whitened.shape[1]):
        queries = head(whitened[:, v])
        sims = (chamfer_matrix(queries, database) + chamfer_matrix(database, queries).T) / 2
        sims = sims.masked_fill(near, float("-inf"))
        own = sims.diagonal()[:, None]
        ranks.append(1 + (sims > own).sum(dim=1))
    rank = torch.cat(ranks).float()
    return {"R@1": float((rank == 1).float().mean()), "MRR": float((1 / rank).mean()), "queries": float(len(rank))}


def whiten(regions: np.ndarray, pca: PCAWhitening, chunk: int = 256) -> Tensor:
    """float16 regions [N, V, R, C] -> float32 whitened [N, V, R, D], a chunk of frames at a time."""
    out = torch.empty(*regions.shape[:-1], pca.dim)
    with torch.no_grad():
        for start in range(0, len(regions), chunk):
            out[start : start + chunk] = pca.whiten(torch.from_numpy(regions[start : start + chunk]).float())
    return out


@dataclass
class DescriptorResult:
    pca: PCAWhitening  # the trained whitening (step `best_step`)
    best_step: int
    history: list[dict[str, float]]
    train_frames: int
    val_frames: int


def train_head(
    features: ViewFeatures, pca: PCAWhitening, config: DescriptorConfig, log: Callable[[str], None]
) -> DescriptorResult:
    """Train the projection on cached view features; keep the step with the best validation MRR."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    whitened = whiten(features.regions, pca)
    val = features.validation_mask(config.val_block_seconds)
    train_index = np.flatnonzero(~val)
    if len(train_index) < 2:
        raise ValueError(f"only {len(train_index)} training frames outside the validation stretches; give more video")
    video_t = torch.as_tensor(features.video)
    time_t = torch.as_tensor(features.time, dtype=torch.float32)
    head = ProjectionHead(pca.dim)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / max(config.steps, 1)))
    )

    def validate(step: int) -> dict[str, float]:
        head.eval()
        scores = evaluate(head, whitened[val], features.video[val], features.time[val], config.near_seconds)
        head.train()
        return {"step": float(step), **{f"val_{k}": v for k, v in scores.items()}}

    history = [validate(0)]
    best_step, best = 0, history[0]["val_MRR"]
    best_state = head.state_dict()
    batch = min(config.batch_size, len(train_index))
    log(f"step 0: validation R@1 {history[0]['val_R@1']:.3f} MRR {best:.3f} ({int(history[0]['val_queries'])} queries)")
    started, logged = time.monotonic(), []
    for step in range(1, config.steps + 1):
        picks = torch.as_tensor(rng.choice(train_index, size=batch, replace=False))
        pair = torch.as_tensor(np.stack([rng.choice(config.views, size=2, replace=False) for _ in range(batch)]))
        views = head(whitened[picks[:, None], pair])  # [B, 2, R, D]
        loss, parts = descriptor_loss(views, video_t[picks], time_t[picks], config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        logged.append(parts)
        if step % config.eval_every == 0 or step == config.steps:
            means = {k: float(np.mean([p[k] for p in logged])) for k in logged[0]}
            logged = []
            record = {**validate(step), **means}
            history.append(record)
            log(
                f"step {step}: loss {means['loss']:.3f} (InfoNCE {means['infonce']:.3f}, KoLeo {means['koleo']:.3f},"
                f" batch acc {means['acc']:.3f}); validation R@1 {record['val_R@1']:.3f} MRR {record['val_MRR']:.3f};"
                f" {time.monotonic() - started:.0f} s"
            )
            if record["val_MRR"] > best:
                best_step, best = step, record["val_MRR"]
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    return DescriptorResult(head.export(pca), best_step, history, len(train_index), int(val.sum()))


def with_descriptor(init: ModelBundle, result: DescriptorResult, provenance: dict[str, Any]) -> ModelBundle:
    """`init` (backbone, similarity network) with the trained descriptor; provenance added."""
    return ModelBundle(
        init.backbone,
        result.pca,
        init.similarity,
        init.mode,
        {**init.provenance, "descriptor": provenance},
        init.backbone_weights,
    )


def describe(config: DescriptorConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))
