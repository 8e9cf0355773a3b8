"""A real Milvus standalone server for the opt-in (slow) tests: the `milvus` wheel ("embedded
Milvus", `from milvus import default_server`), which runs the server binary it ships.

That wheel pins setuptools<70 and marshmallow<4, so it lives in a virtual environment of its own
beside the footage cache (created on first use, about 85 MB), and the server runs in a process of
its own; the tests reach it over gRPC like any other server.

    python -m tests.milvus_server      # create the environment now (what the slow tests do first)
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.footage import footage_dir

REQUIREMENTS = ["milvus>=2.3,<2.4", "setuptools<70", "marshmallow<4"]
START_TIMEOUT_S = 240.0

_SERVE = textwrap.dedent(
    """
    import signal, sys, threading
    from milvus import default_server
    default_server.set_base_dir(sys.argv[1])
    default_server.listen_port = int(sys.argv[2])
    default_server.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    default_server.stop()
    """
)


class MilvusUnavailable(RuntimeError):
    """The embedded server's environment could not be made or the server did not start."""


def environment() -> Path:
    """The Python of the server's own virtual environment, created when missing."""
    root = footage_dir().parent / "milvus-server-venv"
    python = root / "bin" / "python"
    marker = root / ".installed"
    if marker.is_file():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True, capture_output=True, timeout=900
        )
    except (subprocess.SubprocessError, OSError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise MilvusUnavailable(f"cannot install {REQUIREMENTS}: {error} {detail.decode()[-500:]}") from None
    marker.write_text(" ".join(REQUIREMENTS))
    return python


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedMilvus:
    """One standalone Milvus server in a child process; `uri` once `start()` returned."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = _free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        python = environment()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.base_dir / "server.log", "w")  # noqa: SIM115 - the child writes it for its whole life
        self.process = subprocess.Popen(
            [str(python), "-c", _SERVE, str(self.base_dir), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # its server binary is stopped with it, by process group
        )
        assert self.process.stdout is not None
        # "ready" once default_server.start() returned; nothing (or EOF) within the timeout: failed.
        readable, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_S)
        line = self.process.stdout.readline() if readable else ""
        if line.strip() != "ready":
            self.stop()
            tail = (self.base_dir / "server.log").read_text()[-1000:]
            raise MilvusUnavailable(f"the embedded Milvus server did not start: {tail}")

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass
        self.process = None


if __name__ == "__main__":
    print(environment())
