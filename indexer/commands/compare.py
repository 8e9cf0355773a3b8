"""`hapvr compare A B`: the calibrated similarity of two videos, its tier, and where they match.

The files go through the service's own path (model.embedding.VideoEmbedder) and the pair is
scored, tiered and segmented by the search's re-ranker (indexer.search.Reranker), so `hapvr
compare` and `GET /search` report the same score, tier and ranges for the same pair and model
(and the same score whichever file comes first). The features also take the feature store's
round trip (`HAPVR_FEATURE_FORMAT`: 4-bit codes by default), as an indexed video's do. A file
with an inner window (picture-in-picture, bars) is compared by its window's crop too, as the
search does (indexer.variants): the better pairing is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.commands.options import overrides

if TYPE_CHECKING:
    from indexer.settings import Settings
    from model.features import VideoFeatures


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="calibrated similarity (0-1), tier and matching time ranges of two videos"
    )
    parser.add_argument("first", type=Path, help="a video file (the query)")
    parser.add_argument("second", type=Path, help="another video file")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (HAPVR_CHECKPOINT, default: the shipped one)")
    parser.add_argument("--fps", type=float, help="frames sampled per second (HAPVR_FPS, default 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from indexer.settings import Settings
    from model.checkpoint import CheckpointError
    from model.video import VideoDecodeError

    settings = Settings(**overrides(args, ("checkpoint", "fps")))
    try:
        result = compare_files(settings, args.first, args.second)
    except (CheckpointError, VideoDecodeError, FileNotFoundError) as error:
        print(f"hapvr compare: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"similarity: {result['similarity']:.4f}  tier: {result['tier']}  "
        f"(raw network score {result['raw_score']:.4f}, {result['mode']} model)"
    )
    for segment in result["segments"]:
        print(
            f"  {segment['query_start']:8.2f}-{segment['query_end']:<8.2f} in {args.first.name}"
            f"  ~  {segment['target_start']:8.2f}-{segment['target_end']:<8.2f} in {args.second.name}"
            f"  (score {segment['score']:.3f})"
        )
    return 0


def compare_files(settings: Settings, first: Path, second: Path) -> dict[str, Any]:
    """Score two files with the configured model; segments map the first video's time to the second's."""
    from indexer.components import build_embedder
    from indexer.feature_store import FeatureStore
    from indexer.search import Reranker, SearchConfig
    from indexer.variants import store_versions
    from model.checkpoint import load_default
    from model.video import VideoDecodeError

    bundle = load_default(settings.checkpoint)
    embedder = build_embedder(settings, bundle)
    versions: list[list[VideoFeatures]] = []  # per file: its features, then its window's
    with tempfile.TemporaryDirectory(prefix="hapvr-compare-") as scratch:
        store = FeatureStore(scratch, compact=settings.feature_format == "int4")
        for number, path in enumerate((first, second)):
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            try:
                features, window = embedder.embed_versions(path)
            except VideoDecodeError as error:
                raise VideoDecodeError(f"{path.name}: {error}") from None
            store_versions(store, number, features, window)
            versions.append([store.get(number), *filter(None, [store.get_window(number)])])
        # Inside the block: features read from a float16 store are views of its files.
        reranker = Reranker(bundle.similarity, SearchConfig(candidates=settings.candidates))
        hits = [reranker.compare(query, target) for query in versions[0] for target in versions[1]]
        hit = max(hits, key=lambda found: (found.score, found.raw_score))
    return {
        "first": str(first),
        "second": str(second),
        "similarity": hit.score,
        "raw_score": hit.raw_score,
        "tier": hit.tier,
        "mode": bundle.mode,
        "segments": [segment.to_dict() for segment in hit.segments],
    }
