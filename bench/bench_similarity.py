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
        "Target: at least 300 pairs/s for the learned path.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    refresh_page(RESULTS.parent)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
