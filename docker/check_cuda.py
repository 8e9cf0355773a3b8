"""Build-time check of the CUDA image: torch and GPU FAISS must use the same CUDA major version.

faiss-gpu-cu12 brings the CUDA 12 runtime (nvidia-*-cu12 wheels); a torch built for another
CUDA (PyPI's plain `torch==2.13.0` is a CUDA 13 build) would install a second runtime and
fail on hosts whose driver serves only one. A CPU torch passes with a warning: the image then
checks the Dockerfile, FAISS and the export, but cannot use a GPU for torch.
Exit code 0 consistent, 1 not.
"""

from __future__ import annotations

import sys
from importlib import metadata

FAISS_GPU_PREFIX = "faiss-gpu-cu"


def faiss_cuda_major(distributions: list[str]) -> str | None:
    """The CUDA major version of the installed faiss-gpu-cuNN wheel, or None (faiss-cpu)."""
    for name in distributions:
        normalized = name.lower().replace("_", "-")
        if normalized.startswith(FAISS_GPU_PREFIX):
            return normalized.removeprefix(FAISS_GPU_PREFIX)
    return None


def verdict(torch_cuda: str | None, faiss_major: str | None) -> tuple[bool, str]:
    """(consistent, what to print) for torch's CUDA version and faiss-gpu's CUDA major."""
    if torch_cuda is None:
        return True, "warning: torch is a CPU build; this image cannot run torch on a GPU"
    torch_major = torch_cuda.split(".")[0]
    if faiss_major is not None and torch_major != faiss_major:
        return False, (
            f"torch is built for CUDA {torch_cuda} but faiss-gpu-cu{faiss_major} needs CUDA {faiss_major}: "
            f"build with a cu{faiss_major}x TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu128)"
        )
    return True, f"torch CUDA {torch_cuda}, faiss " + (f"GPU (CUDA {faiss_major})" if faiss_major else "CPU")


def main() -> int:
    import faiss
    import torch

    major = faiss_cuda_major([dist.metadata["Name"] for dist in metadata.distributions()])
    if major is not None and not hasattr(faiss, "StandardGpuResources"):
        print(f"faiss-gpu-cu{major} is installed but the faiss module has no GPU support", file=sys.stderr)
        return 1
    consistent, message = verdict(torch.version.cuda, major)
    print(
        f"torch {torch.__version__}, faiss {faiss.__version__}: {message}",
        file=sys.stdout if consistent else sys.stderr,
    )
    return 0 if consistent else 1


if __name__ == "__main__":
    sys.exit(main())
