"""Run the frame encoder's graph (preprocessing + backbone + regional pooling) under
onnxruntime, which on a small CPU is several times faster than eager PyTorch.

The graph is exported once per (backbone, weights, crop, exporter) and cached as an .onnx
file; the weights enter the cache key through a hash of the state_dict, so new weights
never reuse a stale export. The trainer's teacher goes through the same export and cache.

Cache location: the `cache_dir` argument, else ~/.cache/hapvr-search. Nothing here reads
the environment: every caller passes its settings' `model_cache_dir` (model.settings).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.fileio import atomic_path
from model.settings import default_cache_dir

logger = logging.getLogger(__name__)

OPSET = 17
# Bump when the exported graph changes meaning (preprocessing, pooling), to retire old files.
GRAPH_VERSION = 1
INPUT_NAME = "frames"
OUTPUT_NAME = "regions"


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def state_dict_digest(module: nn.Module) -> str:
    """sha256 over a module's parameter and buffer names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_onnx(graph: nn.Module, crop: int, destination: Path) -> None:
    """Export `graph` (uint8 pixels [N, crop, crop, 3] -> OUTPUT_NAME) with a dynamic batch axis.

    The one export routine: the frame encoder's graph and the trainer's teacher both use it.
    """
    example = torch.zeros(2, crop, crop, 3, dtype=torch.uint8)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript;
        # this graph is static apart from the batch axis, so the old exporter is enough.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(destination),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def cached_onnx_model(graph: nn.Module, name: str, crop: int, cache_dir: str | Path | None = None) -> bytes:
    """The serialized ONNX model of `graph`, exported on first use and cached on disk.

    The file is `cache_dir/{name}-{crop}px-{key}.onnx` (`cache_dir` None: default_cache_dir()),
    written atomically (model.fileio), so concurrent workers never read half a file. An
    unwritable cache directory only costs a re-export per process.
    """
    key = hashlib.sha256(
        f"{name}|{crop}|{state_dict_digest(graph)}|{torch.__version__}|{OPSET}|{GRAPH_VERSION}".encode()
    ).hexdigest()[:16]
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = directory / f"{name}-{crop}px-{key}.onnx"
    if path.is_file():
        return path.read_bytes()
    try:
        with atomic_path(path) as temporary:
            export_onnx(graph, crop, temporary)
    except OSError as error:
        logger.warning("ONNX cache %s not writable (%s); exporting to a temporary file", directory, error)
        with tempfile.TemporaryDirectory() as scratch:
            scratch_path = Path(scratch) / path.name
            export_onnx(graph, crop, scratch_path)
            return scratch_path.read_bytes()
    logger.info("exported the %s graph to %s", name, path)
    return path.read_bytes()


class OnnxRunner:
    """An onnxruntime CPU session over the encoder graph: uint8 NHWC frames -> regions."""

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: no per-session optimiser chatter
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        (regions,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(frames)})
        return regions
