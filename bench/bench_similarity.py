"""Exact similarity throughput: one 60-frame query against a batch of 60-frame targets on CPU.

Reports pairs/s for the learned network and the training-free path, the FLOPs of one pair
(counted by torch's FlopCounterMode), the machine's measured fp32 matrix-multiply rate, and so
how far each figure is from its arithmetic bound. Writes bench/results/similarity.md.

    python -m bench.bench_similarity [--frames 60] [--batch 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.flop_counter import FlopCounterMode

from bench.results_page import refresh as refresh_page
from model.similarity.config import SimilarityConfig
from model.similarity.network import HapVRSimilarity

RESULTS = Path(__file__).parent / "results" / "similarity.md"


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def pairs_per_second(net: HapVRSimilarity, query: torch.Tensor, targets: torch.Tensor, seconds: float) -> float:
    with torch.inference_mode():
        net.compare(query, targets)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net.compare(query, targets)
            done += targets.shape[0]
    return done / (time.perf_counter() - start)


def service_pairs_per_second(
    net: HapVRSimilarity, query: torch.Tensor, targets: torch.Tensor, seconds: float
) -> tuple[float, float]:
    """The search's own path (indexer.search.Reranker): re-rank alone, and re-rank + alignment + calibration."""
    from indexer.search import Reranker, SearchConfig
    from model.features import VideoFeatures, mean_frame_vectors

    def features(regions: torch.Tensor) -> VideoFeatures:
        array = regions.numpy()
        # Weights are computed at index time in the service, so they are given here, not timed.
        return VideoFeatures(
            array, mean_frame_vectors(array), np.arange(len(array), dtype=np.float64), frame_weights=np.ones(len(array))
        )

    reranker = Reranker(net, SearchConfig(precision="float32"))
    q = features(query[0])
    loaded = {i: features(t) for i, t in enumerate(targets)}

    def rate(align: bool) -> float:
        done, start = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - start < seconds:
            reranked = {i: (score, sim) for i, score, sim in reranker.rerank(q, loaded)}
            if align:
                reranker.judge(q, loaded, reranked)
            done += len(loaded)
        return done / (time.perf_counter() - start)

    return rate(False), rate(True)


def flops_per_pair(net: HapVRSimilarity, query: torch.Tensor, targets: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net.compare(query, targets)
    return counter.get_total_flops() / targets.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    query = nnf.normalize(torch.randn(1, args.frames, 9, 512), dim=-1)
    targets = nnf.normalize(torch.randn(args.batch, args.frames, 9, 512), dim=-1)
    peak = matmul_gflops()
    rows = []
    for name, config in [
        ("learned (comparator)", SimilarityConfig()),
        ("training-free", SimilarityConfig.training_free()),
    ]:
        net = HapVRSimilarity(config).eval()
        rate = pairs_per_second(net, net.index(query), net.index(targets), args.seconds)
        flops = flops_per_pair(net, net.index(query), net.index(targets))
        bound = peak * 1e9 / flops
        rows.append((name, rate, flops / 1e6, bound, rate / bound))
        if config.comparator:
            with torch.inference_mode():
                rerank, aligned = service_pairs_per_second(net, net.index(query), net.index(targets), args.seconds)
            rows.append(
                ("search re-rank (Reranker: network + symmetric F)", rerank, flops / 1e6, bound, rerank / bound)
            )
            rows.append(("search re-rank + alignment + calibration", aligned, flops / 1e6, bound, aligned / bound))

    lines = [
        "# Exact similarity throughput (CPU)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}.",
        f"One {args.frames}-frame query against a batch of {args.batch} {args.frames}-frame targets, 9 regions x 512 dims.",
        f"Measured fp32 matmul rate: {peak:.0f} GFLOP/s (2048^3 torch.mm).",
        "",
        "| path | pairs/s | MFLOP per pair | arithmetic bound (pairs/s) | share of bound |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {rate:.0f} | {mflops:.0f} | {bound:.0f} | {share:.0%} |"
            for name, rate, mflops, bound, share in rows
        ),
        "",
        "Target: at least 300 pairs/s for the learned path. The search rows run the service's own "
        "re-rank (indexer.search.Reranker, float32) on the same pairs, then its alignment and calibration "
        "(model.similarity.alignment); per-frame weights come from the feature store and are not timed.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    refresh_page(RESULTS.parent)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
