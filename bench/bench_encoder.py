"""Frame-encoder throughput on this machine, against its arithmetic bound.

    python bench/bench_encoder.py [--batch 32] [--crop 224] [--repeats 10] [--threads N] [--label NOTE]

Measures frames/s of the encoder graph (preprocessing + backbone + regional pooling; the PCA
matmul after it is negligible) in eager PyTorch and under onnxruntime, the machine's fp32
matrix-multiply rate, and the encoder's FLOPs per frame (torch.utils.flop_counter), and
appends a row to bench/results/encoder.md. The bound is matmul GFLOP/s / GFLOP per frame: what the
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

from bench.results_page import refresh as refresh_page  # noqa: E402
from model.encoders.frame_encoder import FrameEncoder  # noqa: E402
from model.encoders.onnx_runtime import onnxruntime_available  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "encoder.md"


def matmul_seconds(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def flops_per_frame(encoder: FrameEncoder) -> int:
    """Multiply-adds x 2 of one frame through the encoder graph, as FlopCounterMode counts."""
    frame = torch.zeros(1, encoder.crop, encoder.crop, 3, dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder.graph(frame)
    return counter.get_total_flops()


def batch_seconds(encoder: FrameEncoder, frames: np.ndarray) -> float:
    start = time.perf_counter()
    encoder.raw_regions(frames)
    return time.perf_counter() - start


def write_results(
    args: argparse.Namespace,
    threads: int,
    flops: int,
    gflops: float,
    rates: dict[str, tuple[float, float]],
    load: tuple[float, float],
) -> None:
    """Append one row to the results table (written with its header on first use)."""
    if not args.out.exists():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Frame encoder throughput (CPU)\n\n"
            "Regenerate: `python bench/bench_encoder.py [--label NOTE]` (appends a row).\n\n"
            "The frame encoder's graph (center crop, backbone, 3x3 regional pooling) on batches "
            "of uint8 frames of 256x455 (decode_video's output for 16:9 video), cropped to the "
            "given size. GFLOP/frame: torch.utils.flop_counter, 2 x multiply-adds. Bound: the machine's fp32 matmul rate (2048^3 torch.mm) / FLOPs per frame, "
            "what the encoder would reach if every FLOP ran at matmul speed (depthwise "
            "convolutions cannot, so it is optimistic). Every round times the matmul, torch "
            "and onnxruntime once, interleaved; best and median over rounds. Load: the 1-minute "
            "load average before / after; above the core count, other processes shared the CPU "
            "and the best-of figures are the closer estimate of an idle machine.\n\n"
            "| date | machine | threads | backbone | batch | crop | GFLOP/frame | load "
            "| matmul GFLOP/s | bound frames/s "
            "| torch best / median | onnxruntime best / median | onnxruntime best, % of bound "
            "| rounds | note |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        )
    bound = gflops * 1e9 / flops
    torch_best, torch_median = rates.get("torch", (float("nan"), float("nan")))
    ort_best, ort_median = rates.get("onnxruntime", (float("nan"), float("nan")))
    row = (
        f"| {time.strftime('%Y-%m-%d %H:%M')} | {platform.machine()}, {os.cpu_count()} CPUs "
        f"| {threads} | {args.backbone} | {args.batch} | {args.crop} | {flops / 1e9:.3f} "
        f"| {load[0]:.1f} / {load[1]:.1f} | {gflops:.0f} | {bound:.0f} "
        f"| {torch_best:.1f} / {torch_median:.1f} | {ort_best:.1f} / {ort_median:.1f} "
        f"| {100 * ort_best / bound:.0f}% | {args.repeats} | {args.label} |\n"
    )
    with args.out.open("a") as handle:
        handle.write(row)
    refresh_page(args.out.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results table to append to")
    parser.add_argument("--label", default="", help="a note for the results row")
    args = parser.parse_args(argv)

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    # Decoded frames as decode_video gives them (short side 256, 16:9), smooth content.
    coarse = rng.integers(0, 256, size=(args.batch, 9, 16, 3), dtype=np.uint8)
    frames = np.ascontiguousarray(coarse.repeat(29, axis=1).repeat(29, axis=2)[:, :256, :455])

    runtimes = ["torch"] + (["onnxruntime"] if onnxruntime_available() else [])
    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, size)
    with tempfile.TemporaryDirectory() as cache:
        encoders = {
            runtime: FrameEncoder(
                backbone=args.backbone,
                weights=args.weights,
                runtime=runtime,
                batch_size=args.batch,
                crop=args.crop,
                threads=threads,
                cache_dir=cache,
            )
            for runtime in runtimes
        }
        flops = flops_per_frame(encoders["torch"])
        torch.mm(a, b)
        for encoder in encoders.values():  # warm-up: the ONNX export, allocator, caches
            encoder.raw_regions(frames)
        # Rounds interleave the measurements, so that load from other processes on a
        # shared machine hits all of them alike; best-of-rounds estimates the quiet rate.
        gemm: list[float] = []
        times: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
        for _ in range(args.repeats):
            gemm.append(matmul_seconds(a, b))
            for runtime, encoder in encoders.items():
                times[runtime].append(batch_seconds(encoder, frames))
    load_after = os.getloadavg()[0]
    gflops = 2 * size**3 / min(gemm) / 1e9
    rows = [(runtime, args.batch / min(t), args.batch / statistics.median(t)) for runtime, t in times.items()]

    bound = gflops * 1e9 / flops
    rates = dict((runtime, (best, median)) for runtime, best, median in rows)
    print(f"machine: {os.cpu_count()} CPUs, {threads} threads; torch {torch.__version__}")
    print(
        f"fp32 matmul: {gflops:.0f} GFLOP/s; encoder: {flops / 1e9:.3f} GFLOP/frame; "
        f"arithmetic bound {bound:.0f} frames/s"
    )
    for runtime, (best, median) in rates.items():
        print(f"{runtime:12s} best {best:6.1f} frames/s ({100 * best / bound:.0f}% of bound), median {median:6.1f}")
    print(f"1-minute load average before/after: {load_before:.2f} / {load_after:.2f}")
    write_results(args, threads, flops, gflops, rates, (load_before, load_after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
