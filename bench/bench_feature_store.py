"""Feature store formats: bytes per video-minute and the re-rank's read time, float16 (format 1)
against 4-bit codes (format 2, indexer.feature_codec).

The re-rank reads the region features of its candidates on every search; this measures that
read (warm page cache: open, map, check the header, decode) for --candidates videos of
--frames frames of the shipped model's shape (9 regions of 512 dims), and the error of the
4-bit codes. Writes bench/results/feature_store.md.

    python -m bench.bench_feature_store [--candidates 100] [--frames 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from indexer.feature_store import FORMAT_V1, FeatureStore, _checksum
from indexer.synthetic import synthetic_video
from model.features import VideoFeatures

RESULTS = Path(__file__).parent / "results" / "feature_store.md"
REGIONS, DIM = 9, 512


def write_v1(store: FeatureStore, video_id: int, features: VideoFeatures) -> None:
    """A format-1 file, as the store wrote before format 2 (float16 regions, float32 vectors)."""
    arrays = {"regions": features.regions, "frame_vectors": features.frame_vectors, "timestamps": features.timestamps}
    metadata = {"format": FORMAT_V1, "video_id": str(video_id), "crc32": _checksum(*arrays.values())}
    path = store.path_for(video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save(arrays, metadata=metadata))


def read_ms(store: FeatureStore, ids: list[int], repeats: int) -> float:
    """Median time to read every candidate once (what one search's load stage does)."""
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        for video_id in ids:
            store.get(video_id, verify=False).regions.sum(dtype=np.float32)  # touch the data as the re-rank does
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    videos = [synthetic_video(rng, args.frames, dim=DIM, regions=REGIONS) for _ in range(args.candidates)]
    ids = list(range(1, args.candidates + 1))
    with tempfile.TemporaryDirectory() as root:
        old, new = FeatureStore(Path(root) / "v1"), FeatureStore(Path(root) / "v2")
        for video_id, features in zip(ids, videos):
            write_v1(old, video_id, features)
            new.put(video_id, features)
        per_minute = {
            name: sum(store.path_for(v).stat().st_size for v in ids) / (args.candidates * args.frames) * 60 / 1000
            for name, store in (("float16", old), ("int4", new))
        }
        timings = {"float16": read_ms(old, ids, args.repeats), "int4": read_ms(new, ids, args.repeats)}
        decoded = [new.get(v).regions.astype(np.float32) for v in ids[:10]]
    original = [v.regions.astype(np.float32) for v in videos[:10]]
    cosines = np.concatenate(
        [
            ((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).ravel()
            for a, b in zip(decoded, original)
        ]
    )
    lines = [
        "# Feature store formats",
        "",
        "Regenerate: `python -m bench.bench_feature_store`",
        "",
        f"{args.candidates} candidates of {args.frames} frames ({REGIONS} regions x {DIM} dims, synthetic), "
        f"warm page cache, median of {args.repeats} reads of all of them; {platform.processor() or platform.machine()}.",
        "",
        "| format | KB per video-minute | read + decode of all candidates (ms) |",
        "|---|---|---|",
        *(f"| {name} | {per_minute[name]:.0f} | {timings[name]:.1f} |" for name in ("float16", "int4")),
        "",
        f"4-bit codes against float16, cosine of each region vector: mean {cosines.mean():.4f}, "
        f"min {cosines.min():.4f}. The ranking change on the benchmark is bench/quality.py's "
        "`<method>-int4` rows.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
