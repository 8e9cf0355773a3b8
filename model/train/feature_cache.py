"""The fast CPU mode: train from cached features of many pre-augmented views per clip.

Only the similarity network trains; the backbone, PCA and teacher are frozen. On a 2-core CPU
the backbone and teacher cost far more per step than the network itself, and they would see
each frame of each view again at every visit. So this mode runs them once: for every clip it
renders `views_per_clip` spatially augmented views of the whole clip (the first half weak:
crop + flip; the second half strong: RandAugment, overlays, blur, video-in-video with a fixed
partner clip) and stores their region features (float16 [V, L, R, D]), plus one teacher
vector per clip frame (float16 [L, Dt]). Training then draws a weak and a strong cached view per clip and applies
the temporal augmentations (window, temporal crop, shuffle-dropout, fast-forward, slow motion,
reverse, pause) to the cached per-frame features on the fly, which is exact, because features
are per frame.

What it gives up against on-the-fly augmentation:
- Spatial diversity is finite: each clip has V fixed spatial augmentations (V/2 weak, V/2
  strong) instead of fresh ones at every visit, so over a long run the network can start to
  memorise the specific views; more views cost cache time and disk linearly.
- Video-in-video partners are fixed when the cache is built (one partner per strong view);
  the merged label only comes into play when that partner is drawn into the same batch, so
  mixed positives are rarer than on the fly, where the partner is always in the batch.
- The spatial augmentation of a view is the same for all of its frames and all of its windows;
  changing the augmentation settings, the backbone, the PCA or the teacher means rebuilding
  the cache (its key covers all of them, so a stale cache is never reused by mistake).
- The teacher sees each clip's clean frames (centre crop) once, not every augmented view, so the
  frame pseudo labels follow the temporal plans exactly but ignore what a view's spatial edits
  did to a frame (the published recipe runs the teacher on the augmented frames). This puts
  the teacher's cost per source frame instead of per view frame: on a CPU the 260 px teacher
  otherwise costs several times the student.
- Disk: about 9 KB per view frame for the regions (float16, D = 512).

What it keeps: all temporal augmentations stay fresh at every step, labels and losses are the
same, and the features are those the service computes (same graph, uint8 pixels).
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from model.encoders.frame_encoder import center_crop
from model.fileio import atomic_write, write_text_atomic
from model.train import augment
from model.train.augment import AugmentConfig
from model.train.batch import TrainBatch, View, ViewEncoder, collate, plan_sample
from model.train.data import ClipSet

logger = logging.getLogger("hapvr.train")

# Bump when the cached layout or meaning changes, so old caches are not read.
CACHE_VERSION = 2


def cache_key(
    clips: ClipSet, encoder_fingerprint: str, teacher: str, config: AugmentConfig, views: int, seed: int
) -> str:
    """Hash of everything a cached feature depends on."""
    digest = hashlib.sha256()
    for clip in clips.clips:
        stat = clip.video.stat()
        digest.update(f"{clip.video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{clip.start}|{clip.stop}\n".encode())
    digest.update(json.dumps(config.model_dump(), sort_keys=True).encode())
    digest.update(f"{encoder_fingerprint}|{teacher}|{views}|{seed}|{CACHE_VERSION}".encode())
    return digest.hexdigest()[:16]


def encoder_fingerprint(encoder: ViewEncoder, backbone: str) -> str:
    """Backbone name + a hash of the PCA tensors (the frozen part that shapes the features)."""
    digest = hashlib.sha256(backbone.encode())
    digest.update(encoder.pca.mean.detach().cpu().numpy().tobytes())
    digest.update(encoder.pca.projection.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Per-clip files under root/<key>/: clip-NNNNN.regions.npy, .teacher.npy, .json."""

    def __init__(self, root: str | Path, key: str, views_per_clip: int) -> None:
        self.root = Path(root) / key
        self.views = views_per_clip
        self.weak_views = max(1, views_per_clip // 2)
        self.root.mkdir(parents=True, exist_ok=True)
        self._loaded: dict[int, tuple[np.ndarray, np.ndarray | None, list[int]]] = {}

    def _paths(self, clip_index: int) -> tuple[Path, Path, Path]:
        stem = self.root / f"clip-{clip_index:05d}"
        return stem.with_suffix(".regions.npy"), stem.with_suffix(".teacher.npy"), stem.with_suffix(".json")

    def has(self, clip_index: int) -> bool:
        return self._paths(clip_index)[2].is_file()  # the JSON is written last

    def build(
        self,
        clips: ClipSet,
        encoder: ViewEncoder,
        config: AugmentConfig,
        seed: int,
        rank: int = 0,
        world: int = 1,
        progress: bool = False,
    ) -> None:
        """Render and encode the views of every clip this process owns (index % world == rank).

        Resumable: clips already on disk are skipped. Each view's randomness depends only on
        (seed, clip, view), so the cache is the same however the work is split.
        """
        todo = [c for c in clips.clips if c.index % world == rank and not self.has(c.index)]
        if not todo:
            return
        iterator = todo
        if progress:
            from tqdm import tqdm

            iterator = tqdm(todo, desc="feature cache", unit="clip")
        for clip in iterator:
            source = np.asarray(clips.frames(clip))
            frames = augment.to_float_frames(source, encoder.device)
            teacher = encoder.teacher_from_pixels(torch.from_numpy(center_crop(source, encoder.crop)))
            regions, partners = [], []
            for view in range(self.views):
                rng = np.random.default_rng([seed, clip.index, view])
                if view < self.weak_views:
                    image = augment.weak_spatial(frames, config, rng)
                    partner = -1
                else:
                    partner, other = -1, None
                    if len(clips) > 1 and rng.random() < config.video_in_video_p:
                        partner = int((clip.index + rng.integers(1, len(clips))) % len(clips))
                        other_clip = clips.clips[partner]
                        other = augment.to_float_frames(clips.frames(other_clip)[: clip.length], encoder.device)
                    image = augment.strong_spatial(frames, config, rng, other=other)
                regions.append(encoder.regions_from_pixels(encoder.pixels(image)).half().cpu().numpy())
                partners.append(partner)
            regions_path, teacher_path, meta_path = self._paths(clip.index)
            atomic_write(regions_path, partial(np.save, arr=np.stack(regions)))
            if teacher is not None:
                atomic_write(teacher_path, partial(np.save, arr=teacher.half().cpu().numpy()))
            meta = {"clip": clip.name, "length": clip.length, "views": self.views, "partners": partners}
            write_text_atomic(meta_path, json.dumps(meta))

    def load(self, clip_index: int) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
        """(regions [V, L, R, D] f16, teacher [L, Dt] f16 or None, partner per view), memory-mapped."""
        if clip_index not in self._loaded:
            regions_path, teacher_path, meta_path = self._paths(clip_index)
            meta = json.loads(meta_path.read_text())
            teacher = np.load(teacher_path, mmap_mode="r") if teacher_path.is_file() else None
            self._loaded[clip_index] = (np.load(regions_path, mmap_mode="r"), teacher, meta["partners"])
        return self._loaded[clip_index]


class CachedBatcher:
    """Draws a cached weak and strong view per clip and applies fresh temporal augmentations."""

    def __init__(
        self,
        cache: FeatureCache,
        clips: ClipSet,
        config: AugmentConfig,
        clip_frames: int,
        device: torch.device,
        use_teacher: bool = True,
    ) -> None:
        self.cache = cache
        self.clips = clips
        self.config = config
        self.clip_frames = clip_frames
        self.device = device
        self.use_teacher = use_teacher

    def batch(self, clip_indices: list[int], rng: np.random.Generator) -> TrainBatch:
        views: list[View] = []
        for clip_index in clip_indices:
            regions, teacher, partners = self.cache.load(clip_index)
            weak_plan, strong_plan = plan_sample(regions.shape[1], self.clip_frames, self.config, rng)
            weak_view = int(rng.integers(0, self.cache.weak_views))
            strong_view = int(rng.integers(self.cache.weak_views, self.cache.views))
            for view, plan in ((weak_view, weak_plan), (strong_view, strong_plan)):
                members = {clip_index}
                if partners[view] >= 0:
                    members.add(partners[view])
                views.append(
                    View(
                        _take(regions[view], plan),
                        _take(teacher, plan) if (teacher is not None and self.use_teacher) else None,
                        frozenset(members),
                    )
                )
        return collate(views, self.device)


def _take(array: np.ndarray, plan: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(array[plan], dtype=np.float32))
