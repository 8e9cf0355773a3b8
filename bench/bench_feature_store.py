"""Feature store formats: bytes per video-minute and the re-rank's read time, float16 (format 1)
against 4-bit codes (format 2, indexer.feature_codec).

The re-rank reads the region features of its candidates on every search; this measures what
a search does with them (warm page cache: open, map, check the header; fill the re-rank's
workspace in its dtype; the frame energies the alignment reads) for --candidates videos of
--frames frames of the shipped model's shape (9 regions of 512 dims), and the error of the
4-bit codes. Three ways: float16 (format 1), 4-bit decoded to float32 regions and frame vectors
first (what format 2 reads did before), and 4-bit decoded straight into the workspace with
energies from the codes (CompactVideoFeatures.regions_into, frame_energy). Writes
bench/results/feature_store.md.

    python -m bench.bench_feature_store [--candidates 100] [--frames 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save

from bench.bench_search import cpu_model
from indexer.feature_store import FORMAT_V1, FeatureStore, _checksum
from indexer.search import cpu_has_bfloat16
from indexer.synthetic import synthetic_video
from model.features import VideoFeatures
from model.workspace import workspace as scratch

RESULTS = Path(__file__).parent / "results" / "feature_store.md"
REGIONS, DIM = 9, 512


def write_v1(store: FeatureStore, video_id: int, features: VideoFeatures) -> None:
    """A format-1 file, as the store wrote before format 2 (float16 regions, float32 vectors)."""
    arrays = {"regions": features.regions, "frame_vectors": features.frame_vectors, "timestamps": features.timestamps}
    metadata = {"format": FORMAT_V1, "video_id": str(video_id), "crc32": _checksum(*arrays.values())}
    path = store.path_for(video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save(arrays, metadata=metadata))


def read_ms(store: FeatureStore, ids: list[int], repeats: int, dtype: torch.dtype, *, decode_first: bool) -> float:
    """Median time to read every candidate once into the re-rank workspace, with its frame energies
    (what one search's load stage, workspace fill and alignment do with the features)."""
    frames = sum(store.get(video_id).num_frames for video_id in ids)
    workspace = scratch("bench", frames * REGIONS * DIM, dtype).view(-1, REGIONS, DIM)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        offset = 0
        for video_id in ids:
            features = store.get(video_id, verify=False)
            if decode_first:  # float32 regions and frame vectors made on reading
                features.frame_vectors  # noqa: B018
            rows = list(range(features.num_frames))
            features.regions_into(workspace[offset : offset + len(rows)], rows)
            features.frame_energy()
            offset += len(rows)
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
        dtype = torch.bfloat16 if cpu_has_bfloat16() else torch.float32  # the re-rank's (precision auto)
        timings = {
            "float16": read_ms(old, ids, args.repeats, dtype, decode_first=False),
            "int4, via float32": read_ms(new, ids, args.repeats, dtype, decode_first=True),
            "int4, into the workspace": read_ms(new, ids, args.repeats, dtype, decode_first=False),
        }
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
        f"warm page cache, median of {args.repeats} reads of all of them into a {str(dtype).split('.')[-1]} "
        f"re-rank workspace with their frame energies; {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} after the run; {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| format | KB per video-minute | read, fill the workspace, frame energies of all candidates (ms) |",
        "|---|---|---|",
        *(f"| {name} | {per_minute[name.split(',')[0]]:.0f} | {timings[name]:.1f} |" for name in timings),
        "",
        '"int4, via float32" is what format-2 reads did before: float32 regions and frame vectors made',
        'on reading, then converted into the workspace; "into the workspace" decodes the codes there',
        "and takes the energies from the codes (indexer.feature_codec.decode_into, region_energy).",
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
