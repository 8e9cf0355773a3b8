"""`hapvr fit-pca VIDEO_DIR --out FILE`: learn the PCA whitening from a folder of videos and
write a training-free checkpoint (backbone name + PCA + the training-free similarity config).

Videos are found with model.video.find_videos and the PCA is fitted by
model.encoders.pca.fit_on_frames, as the trainer does: the covariance is accumulated frame
batch by frame batch, so memory stays at one C x C matrix (C = 1752 for EfficientNet-Lite0)
whatever the number of frames.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from model.encoders.frame_encoder import FrameEncoder
    from model.encoders.pca import PCAWhitening


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit-pca", help="learn the PCA whitening from videos and write a checkpoint")
    parser.add_argument(
        "video_dir", type=Path, metavar="VIDEO_DIR", help="folder searched recursively for videos (or one video file)"
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    parser.add_argument("--dim", type=int, default=512, help="output dimensions (default 512)")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="use at most this many frames, spread evenly over the videos"
    )
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    parser.add_argument(
        "--backbone", default="efficientnet_lite0", help="frame encoder backbone (default efficientnet_lite0)"
    )
    parser.add_argument("--weights", type=Path, default=None, help="backbone weights file (needed for resnet50)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the encoder")
    parser.set_defaults(func=run)


def even_sample(count: int, budget: int | None) -> list[int]:
    """Indices of at most `budget` items spread evenly over `count` (all when budget is None)."""
    if budget is None or budget >= count:
        return list(range(count))
    if budget <= 0:
        return []
    return sorted({round(i * (count - 1) / max(budget - 1, 1)) for i in range(budget)})


def fit_pca_from_videos(
    paths: Iterable[str | Path],
    encoder: FrameEncoder,
    dim: int = 512,
    max_frames: int | None = None,
    *,
    fps: float = 1.0,
    eps: float = 1e-5,
    on_video: Callable[[Path, int, str | None], None] | None = None,
) -> PCAWhitening:
    """Decode each video at `fps` and fit PCA whitening on the raw regions of its frames
    (model.encoders.pca.fit_on_frames).

    With `max_frames`, each video contributes at most ceil(max_frames / videos) frames,
    evenly spaced. Videos that fail to decode are skipped; `on_video(path, frames_used,
    error)` hears about every video. Raises ValueError when no video gave a frame, or when
    the frames admit no whitening; `dim` is capped at what the data determines (see
    PCAWhitening.fit).
    """
    from model.encoders.pca import fit_on_frames
    from model.video import VideoDecodeError, decode_video

    files = [Path(p) for p in paths]
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be positive, got {max_frames}")
    per_video = None if max_frames is None or not files else math.ceil(max_frames / len(files))

    def frames() -> Iterator[np.ndarray]:
        used = 0
        for path in files:
            try:
                video = decode_video(path, fps=fps)
            except VideoDecodeError as error:
                if on_video is not None:
                    on_video(path, 0, str(error))
                continue
            keep = even_sample(len(video.frames), per_video)
            if max_frames is not None:
                keep = keep[: max_frames - used]
            yield video.frames[keep]
            used += len(keep)
            if on_video is not None:
                on_video(path, len(keep), None)
        if used == 0:
            raise ValueError(f"PCA needs frames from at least one decodable video; got none from {len(files)} file(s)")

    return fit_on_frames(frames(), encoder, dim, eps)


def run(args: argparse.Namespace) -> int:
    from model.checkpoint import ModelBundle, save_checkpoint
    from model.encoders.frame_encoder import FrameEncoder
    from model.settings import ModelSettings
    from model.video import find_videos

    def fail(message: str) -> int:
        print(f"hapvr fit-pca: error: {message}", file=sys.stderr)
        return 2

    if not args.video_dir.exists():
        return fail(f"no such file or folder: {args.video_dir}")
    if args.dim < 1:
        return fail(f"--dim must be positive, got {args.dim}")
    if not args.fps > 0:
        return fail(f"--fps must be positive, got {args.fps}")
    paths = [args.video_dir] if args.video_dir.is_file() else find_videos(args.video_dir)
    if not paths:
        return fail(f"no video files under {args.video_dir}")

    used = {"videos": 0, "frames": 0}

    def report(path: Path, frames: int, error: str | None) -> None:
        if error is None:
            used["videos"] += 1
            used["frames"] += frames
        status = f"skipped ({error})" if error else f"{frames} frames"
        print(f"{path}: {status}", file=sys.stderr)

    try:
        encoder = FrameEncoder(
            backbone=args.backbone,
            weights=args.weights,
            threads=args.threads,
            cache_dir=ModelSettings().model_cache_dir,
        )
        pca = fit_pca_from_videos(paths, encoder, args.dim, args.max_frames, fps=args.fps, on_video=report)
    except (FileNotFoundError, ValueError) as error:  # missing weights, too few frames
        return fail(str(error))
    if pca.dim < args.dim:
        print(f"note: dim capped to {pca.dim}: too few distinct frames for {args.dim}", file=sys.stderr)
    provenance = {
        "pca": {
            "source": args.video_dir.name,
            "videos": used["videos"],
            "frames": used["frames"],
            "fps": args.fps,
            "max_frames": args.max_frames,
            "dim": pca.dim,
        },
        "created_by": "hapvr fit-pca",
    }
    bundle = ModelBundle.training_free(
        pca,
        backbone=args.backbone,
        provenance=provenance,
        backbone_weights=str(args.weights) if args.weights else None,
    )
    save_checkpoint(args.out, bundle)
    print(f"wrote {args.out} ({args.backbone}, PCA {pca.in_dim} -> {pca.dim})")
    return 0
