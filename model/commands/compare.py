"""`hapvr compare A B`: the similarity of two videos and where they match."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Segments are read off the frame-to-frame matrix; frames of true copies sit well above this.
DEFAULT_SEGMENT_THRESHOLD = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help="similarity of two videos and their matching time ranges")
    parser.add_argument("first", type=Path, help="a video file")
    parser.add_argument("second", type=Path, help="another video file")
    parser.add_argument("--checkpoint", type=Path, default=None, help="model checkpoint (default: the shipped one)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    parser.add_argument("--segment-threshold", type=float, default=DEFAULT_SEGMENT_THRESHOLD)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from model.checkpoint import CheckpointError, load_default
    from model.video import VideoDecodeError

    try:
        bundle = load_default(args.checkpoint)
        result = compare_files(bundle, args.first, args.second, args.fps, args.segment_threshold)
    except (CheckpointError, VideoDecodeError, FileNotFoundError) as error:
        print(f"hapvr compare: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"similarity: {result['similarity']:.4f}  ({result['mode']} model)")
        for segment in result["segments"]:
            print(
                f"  {segment['query_start']:8.2f}-{segment['query_end']:<8.2f} in {args.first.name}"
                f"  ~  {segment['target_start']:8.2f}-{segment['target_end']:<8.2f} in {args.second.name}"
                f"  (score {segment['score']:.3f})"
            )
    return 0


def compare_files(bundle, first: Path, second: Path, fps: float, segment_threshold: float) -> dict:
    """Score two files with one model; segments map the first video's time to the second's."""
    import torch

    from model.pipeline import VideoPipeline
    from model.similarity.network import stretched_frame_index
    from model.similarity.segments import cosine_scaled, frame_energy, matched_segments
    from model.video import VideoDecodeError

    pipeline = VideoPipeline(bundle, fps=fps)
    videos = []
    for path in (first, second):
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            videos.append(pipeline.embed_file(path))
        except VideoDecodeError as error:
            raise VideoDecodeError(f"{path}: {error}") from None
    query, target = videos
    with torch.inference_mode():
        output = bundle.similarity.one_to_many(query.regions, [target.regions])
    min_frames = bundle.similarity.config.min_frames
    query_rows = stretched_frame_index(len(query.timestamps), min_frames)
    target_cols = stretched_frame_index(len(target.timestamps), min_frames)
    frame_sim = output.frame_sim[0, : len(query_rows), : len(target_cols)].numpy()
    energies = [frame_energy(video.regions[rows].numpy()) for video, rows in ((query, query_rows), (target, target_cols))]
    frame_sim = cosine_scaled(frame_sim, *energies)
    segments = matched_segments(
        frame_sim, query.timestamps[query_rows], target.timestamps[target_cols], segment_threshold
    )
    return {
        "first": str(first),
        "second": str(second),
        "similarity": float(output.score[0]),
        "mode": bundle.mode,
        "segments": [segment.to_dict() for segment in segments],
    }
