"""Training batches: views of clips, their frozen features and teacher vectors, and their labels.

A batch holds B clips; each gives a weak and a strong view (2B videos). A view's `members` are
the clips whose footage it shows (two after video-in-video), and two views are positives when
their members intersect: views of the same clip, and a mixed view with views of either clip.

`ViewEncoder` is the frozen part of the model on the training device (backbone, regional
pooling, PCA, teacher); `OnlineBatcher` augments and encodes every view as it is drawn.
The cached-feature alternative lives in model.train.feature_cache.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from model.encoders.frame_encoder import EncoderGraph, center_crop
from model.encoders.onnx_runtime import OnnxRunner, cached_onnx_model, onnxruntime_available
from model.encoders.pca import PCAWhitening
from model.encoders.registry import create_backbone, get_spec
from model.train import augment
from model.train.augment import AugmentConfig
from model.train.data import ClipSet
from model.train.teacher import Teacher, teacher_onnx_runner


@dataclass
class View:
    regions: Tensor  # [t, R, D] float32, PCA-whitened, not yet attention-weighted
    teacher: Tensor | None  # [t, Dt] unit vectors
    members: frozenset[int]  # clip indices whose footage the view shows


@dataclass
class TrainBatch:
    regions: Tensor  # [N, T, R, D]
    mask: Tensor  # [N, T] bool
    teacher: Tensor | None  # [N, T, Dt]
    labels: Tensor  # [N, N] bool, diagonal True

    @property
    def size(self) -> int:
        return int(self.regions.shape[0])


def collate(views: list[View], device: torch.device | str) -> TrainBatch:
    """Pad views to one tensor with a validity mask; labels from intersecting members."""
    longest = max(view.regions.shape[0] for view in views)
    first = views[0].regions
    regions = first.new_zeros((len(views), longest, *first.shape[1:]))
    mask = torch.zeros(len(views), longest, dtype=torch.bool)
    teachers = [view.teacher for view in views if view.teacher is not None]
    has_teacher = len(teachers) == len(views)
    teacher = teachers[0].new_zeros((len(views), longest, teachers[0].shape[1])) if has_teacher else None
    for row, view in enumerate(views):
        length = view.regions.shape[0]
        regions[row, :length] = view.regions
        mask[row, :length] = True
        if teacher is not None:
            teacher[row, :length] = teachers[row]
    labels = labels_from_members([view.members for view in views])
    return TrainBatch(
        regions.to(device, non_blocking=True).float(),
        mask.to(device),
        None if teacher is None else teacher.to(device, non_blocking=True).float(),
        labels.to(device),
    )


def labels_from_members(members: list[frozenset[int]]) -> Tensor:
    """[N, N] bool: views showing footage of a common clip."""
    count = len(members)
    labels = torch.zeros(count, count, dtype=torch.bool)
    for a in range(count):
        for b in range(count):
            labels[a, b] = bool(members[a] & members[b])
    return labels


class ViewEncoder:
    """Frozen student features (backbone + regions + PCA) and teacher vectors, on one device.

    The graph is the one `FrameEncoder` runs at index time, fed the same uint8 pixel values, so
    the network trains on the very features the service will give it.
    """

    def __init__(
        self,
        backbone: str,
        pca: PCAWhitening,
        teacher: Teacher | None,
        device: torch.device,
        weights: str | Path | None = None,
        crop: int = 224,
        batch_size: int = 64,
        runtime: str = "auto",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        """`cache_dir`: where the ONNX exports are cached (model.encoders.onnx_runtime)."""
        spec = get_spec(backbone)
        self.device = device
        self.crop = crop
        self.batch_size = batch_size
        self.graph = EncoderGraph(create_backbone(backbone, weights, image_size=crop), spec).eval().to(device)
        self.graph.requires_grad_(False)
        if device.type == "cpu":
            # torch's Module.to overloads omit the documented memory_format keyword.
            self.graph = self.graph.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.pca = copy.deepcopy(pca).to(device).eval()  # the caller's copy stays on the CPU
        self.teacher = teacher.to(device) if teacher is not None else None
        if runtime == "auto":
            runtime = "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torch"
        self.runtime = runtime
        self._student_onnx = self._teacher_onnx = None
        if runtime == "onnxruntime":
            # On a small CPU onnxruntime runs these graphs several times faster than eager torch.
            self._student_onnx = OnnxRunner(cached_onnx_model(self.graph, backbone, crop, cache_dir), threads)
            if self.teacher is not None:
                self._teacher_onnx = teacher_onnx_runner(self.teacher, crop, cache_dir, threads)

    @property
    def teacher_dim(self) -> int | None:
        return None if self.teacher is None else self.teacher.dim

    @staticmethod
    def pixels(views: Tensor) -> Tensor:
        """Float views [N, 3, S, S] in [0, 1] -> uint8 pixels [N, S, S, 3], as decoded frames are."""
        return (views * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    @torch.no_grad()
    def encode_views(self, views: Tensor) -> tuple[Tensor, Tensor | None]:
        """Float views [N, 3, S, S] -> (regions [N, R, D], teacher vectors [N, Dt] or None)."""
        pixels = self.pixels(views)
        return self.regions_from_pixels(pixels), self.teacher_from_pixels(pixels)

    def _chunks(self, pixels: Tensor):
        """Fixed-size chunks; on a GPU the last one is zero-padded so that every call has the same
        shape (cuDNN builds its plans per shape, which costs seconds for each new batch size)."""
        for start in range(0, pixels.shape[0], self.batch_size):
            chunk = pixels[start : start + self.batch_size]
            count = chunk.shape[0]
            if self.device.type == "cuda" and count < self.batch_size:
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch_size - count, *chunk.shape[1:]))])
            yield chunk, count

    @torch.no_grad()
    def regions_from_pixels(self, pixels: Tensor) -> Tensor:
        """uint8 pixels [N, S, S, 3] -> PCA-whitened region features [N, R, D] (float32)."""
        out = []
        for chunk, count in self._chunks(pixels):
            if self._student_onnx is not None:
                raw = torch.from_numpy(self._student_onnx(chunk.cpu().numpy()))
            else:
                raw = self.graph(chunk.to(self.device))
            out.append(self.pca(raw[:count].to(self.device).float()))
        return torch.cat(out)

    @torch.no_grad()
    def teacher_from_pixels(self, pixels: Tensor) -> Tensor | None:
        if self.teacher is None:
            return None
        out = []
        for chunk, count in self._chunks(pixels):
            if self._teacher_onnx is not None:
                vectors = torch.from_numpy(self._teacher_onnx(chunk.cpu().numpy())).to(self.device)
            else:
                vectors = self.teacher(chunk.to(self.device).permute(0, 3, 1, 2).float() / 255.0)
            out.append(vectors[:count])
        return torch.cat(out)

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> Tensor:
        """Index-time features of decoded frames (center crop, as FrameEncoder): [T, R, D] on CPU."""
        cropped = torch.from_numpy(center_crop(np.asarray(frames), self.crop))
        return self.regions_from_pixels(cropped).cpu()


def plan_sample(
    num_frames: int, clip_frames: int, config: AugmentConfig, rng: np.random.Generator, min_frames: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Weak and strong temporal plans (indices into the clip) inside one shared window."""
    start, stop = augment.temporal_window(num_frames, clip_frames, rng)
    window = stop - start
    weak = augment.weak_temporal(window, clip_frames, rng) + start
    strong = augment.strong_temporal(window, clip_frames, rng, config) + start
    return augment.ensure_min_length(weak, min_frames), augment.ensure_min_length(strong, min_frames)


class OnlineBatcher:
    """Draws clips, augments both views on the training device and encodes them, every step."""

    def __init__(self, clips: ClipSet, encoder: ViewEncoder, config: AugmentConfig, clip_frames: int) -> None:
        self.clips = clips
        self.encoder = encoder
        self.config = config
        self.clip_frames = clip_frames

    def _frames(self, clip_index: int, index: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Float frames [len(unique), 3, H, W] for a plan, read once per distinct frame, and the
        position in them of each entry of `index`."""
        frames = self.clips.frames(self.clips.clips[clip_index])
        unique, inverse = np.unique(index, return_inverse=True)
        return augment.to_float_frames(frames[unique], self.encoder.device), inverse

    def batch(self, clip_indices: list[int], rng: np.random.Generator) -> TrainBatch:
        images: list[Tensor] = []
        members: list[frozenset[int]] = []
        for position, clip_index in enumerate(clip_indices):
            clip = self.clips.clips[clip_index]
            weak_plan, strong_plan = plan_sample(clip.length, self.clip_frames, self.config, rng)

            frames, inverse = self._frames(clip_index, weak_plan)
            images.append(augment.weak_spatial(frames, self.config, rng)[inverse])
            members.append(frozenset({clip_index}))

            frames, inverse = self._frames(clip_index, strong_plan)
            if len(clip_indices) > 1 and rng.random() < self.config.video_in_video_p:
                partner = clip_indices[(position + int(rng.integers(1, len(clip_indices)))) % len(clip_indices)]
                partner_clip = self.clips.clips[partner]
                partner_plan, _ = plan_sample(partner_clip.length, self.clip_frames, self.config, rng)
                other, other_inverse = self._frames(partner, partner_plan)
                images.append(augment.strong_spatial(frames[inverse], self.config, rng, other=other[other_inverse]))
                members.append(frozenset({clip_index, partner}))
            else:
                images.append(augment.strong_spatial(frames, self.config, rng)[inverse])
                members.append(frozenset({clip_index}))
        # One pass of the frozen encoders over every frame of every view.
        regions, teacher = self.encoder.encode_views(torch.cat(images))
        lengths = [image.shape[0] for image in images]
        regions_split = regions.split(lengths)
        teacher_split = teacher.split(lengths) if teacher is not None else [None] * len(images)
        views = [View(r, t, m) for r, t, m in zip(regions_split, teacher_split, members)]
        return collate(views, self.encoder.device)
