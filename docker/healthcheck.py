"""Container health check of the hapvr-search images (no curl in the image: the standard library).

The image serves several roles, so the check first finds which one runs: a container whose
`hapvr serve` process answers GET /healthz with 200 is healthy; a worker, trainer or migration
container is healthy while its `hapvr` process runs. Exit code 0 healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8000
TIMEOUT_S = 4.0


def hapvr_commands(proc: Path = Path("/proc")) -> list[list[str]]:
    """The argument lists of the running `hapvr ...` processes (the arguments after `hapvr`)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
        except OSError:  # the process ended while we looked
            continue
        for position, arg in enumerate(argv):
            if os.path.basename(arg) == "hapvr":
                found.append(argv[position + 1 :])
                break
    return found


def serve_port(args: list[str]) -> int:
    """The port of a `serve` argument list: --port, else HAPVR_PORT, else 8000."""
    for position, arg in enumerate(args):
        if arg == "--port" and position + 1 < len(args):
            return int(args[position + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return int(os.environ.get("HAPVR_PORT", DEFAULT_PORT))


def healthy(commands: list[list[str]]) -> bool:
    """True when some `hapvr` process runs and, if one is `serve`, its /healthz answers 200."""
    if not commands:
        return False
    for args in commands:
        if args[:1] == ["serve"]:
            url = f"http://127.0.0.1:{serve_port(args)}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                    return response.status == 200
            except OSError as error:
                print(f"{url}: {error}", file=sys.stderr)
                return False
    return True


if __name__ == "__main__":
    sys.exit(0 if healthy(hapvr_commands()) else 1)
