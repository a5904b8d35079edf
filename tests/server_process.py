"""Real servers in child processes, on free loopback ports: this app's ``server.py`` and
llama-cpp-python's own ``llama_cpp.server`` (the peer the remote loader and the benchmarks
talk to). Started, awaited and stopped one way for the tests and for ``bench/``.

Free of pytest and of ``webui``: a server that does not come up raises
:class:`ServerDidNotStart` with the end of its log, which a test shows as its failure.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


class ServerDidNotStart(RuntimeError):
    """The process exited, or did not answer in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self) -> dict[str, Any]:
        """server.py's ``/healthz``: the model loaded, its loader."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.load(r)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _start(args: Sequence[str], log: Path, url: str, probe: str, timeout: float) -> ServerProcess:
    """Run ``args`` with its output in ``log``; return once ``url + probe`` answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_DIR)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServerDidNotStart(
                f"{' '.join(args[:4])} ... exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(url + probe, timeout=5):
                return ServerProcess(url, proc, log)
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise ServerDidNotStart(
                    f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}"
                ) from None
            time.sleep(0.3)


def start_webui(log_dir: Path, *args: str, timeout: float = 180, script: Path | None = None) -> ServerProcess:
    """``server.py *args`` on a free port (log ``server-PORT.log`` in ``log_dir``), once it answers.

    ``script``: another launcher taking server.py's arguments (a test's server with a fault put in).
    """
    port = free_port()
    return _start(
        [sys.executable, str(script or PROJECT_DIR / "server.py"), "--listen-port", str(port), *args],
        Path(log_dir) / f"server-{port}.log",
        f"http://127.0.0.1:{port}",
        "/healthz",
        timeout,
    )


def start_llama_cpp_server(
    model: Path, log_dir: Path, *, n_ctx: int = 2048, threads: int = 0, api_key: str = "", timeout: float = 180
) -> ServerProcess:
    """``python -m llama_cpp.server`` on ``model`` and a free port, once it answers."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
    ]
    if threads:
        args += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    if api_key:
        args += ["--api_key", api_key]
    # /docs answers without the key
    return _start(args, Path(log_dir) / f"llama-cpp-server-{port}.log", f"http://127.0.0.1:{port}", "/docs", timeout)
