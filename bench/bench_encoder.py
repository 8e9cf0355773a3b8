"""Frame-encoder throughput on this machine, against its arithmetic bound.

    python bench/bench_encoder.py [--batch 32] [--crop 224] [--repeats 7] [--threads N]

Measures frames/s of the encoder graph (preprocessing + backbone + regional pooling; the PCA
matmul after it is negligible) in eager PyTorch and under onnxruntime, the machine's fp32
matrix-multiply rate, and the encoder's FLOPs per frame (torch.utils.flop_counter), and
writes bench/results/encoder.md. The bound is matmul GFLOP/s / GFLOP per frame: what the
encoder would reach if every FLOP ran at matmul speed (depthwise convolutions cannot, so
the bound is optimistic for EfficientNet).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.encoders.frame_encoder import FrameEncoder  # noqa: E402
from model.encoders.onnx_runtime import onnxruntime_available  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "encoder.md"


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GEMM rate over `repeats` products of two size x size matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_frame(encoder: FrameEncoder) -> int:
    """Multiply-adds x 2 of one frame through the encoder graph, as FlopCounterMode counts."""
    frame = torch.zeros(1, encoder.crop, encoder.crop, 3, dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder.graph(frame)
    return counter.get_total_flops()


def frames_per_second(encoder: FrameEncoder, frames: np.ndarray, repeats: int) -> tuple[float, float]:
    """(best, median) frames/s of `raw_regions` on one batch, after one warm-up call."""
    encoder.raw_regions(frames)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.raw_regions(frames)
        rates.append(len(frames) / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    # Decoded frames as decode_video gives them (short side 256, 16:9), smooth content.
    coarse = rng.integers(0, 256, size=(args.batch, 9, 16, 3), dtype=np.uint8)
    frames = np.ascontiguousarray(coarse.repeat(29, axis=1).repeat(29, axis=2)[:, :256, :455])

    gflops = matmul_gflops()
    rows = []
    runtimes = ["torch"] + (["onnxruntime"] if onnxruntime_available() else [])
    flops = None
    with tempfile.TemporaryDirectory() as cache:
        for runtime in runtimes:
            encoder = FrameEncoder(backbone=args.backbone, weights=args.weights, runtime=runtime,
                                   batch_size=args.batch, crop=args.crop, threads=threads,
                                   cache_dir=cache)
            if flops is None:
                flops = flops_per_frame(encoder)
            best, median = frames_per_second(encoder, frames, args.repeats)
            rows.append((runtime, best, median))
    load_after = os.getloadavg()[0]

    bound = gflops * 1e9 / flops
    lines = [
        "# Frame encoder throughput",
        "",
        f"`python bench/bench_encoder.py --batch {args.batch} --crop {args.crop}`: "
        f"{args.backbone}, batch {args.batch}, {args.crop} px crop of 256x455 uint8 frames, "
        f"{threads} threads.",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"torch {torch.__version__}"
        + (f", onnxruntime {__import__('onnxruntime').__version__}" if onnxruntime_available() else ""),
        f"- fp32 matmul (2048^3, best of 10): {gflops:.0f} GFLOP/s",
        f"- encoder FLOPs per frame (FlopCounterMode, 2 x MACs): {flops / 1e9:.3f} GFLOP",
        f"- arithmetic bound: {bound:.0f} frames/s",
        f"- 1-minute load average before/after: {load_before:.2f} / {load_after:.2f} "
        "(above the core count means other processes shared the CPU)",
        "",
        "| runtime | best frames/s | median frames/s | best, % of bound |",
        "|---|---|---|---|",
    ]
    for runtime, best, median in rows:
        lines.append(f"| {runtime} | {best:.1f} | {median:.1f} | {100 * best / bound:.0f}% |")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
