"""Helpers shared by test modules: a real server.py process, and SmolLM2 behind a Generator.

(Import from here, not from a conftest.py: ``tests/`` is not a package, so conftest
modules shadow each other under the one name ``conftest``.)
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from testdata import GEMMA, MODELS_DIR, PROJECT_DIR, SMOLLM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    model_dir: Path
    user_dir: Path
    log: Path
    process: subprocess.Popen

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.load(r)


def start_server(root: Path, model_dir: Path, user_dir: Path, *extra: str, ctx_size: int | None = 2048) -> Server:
    """Start server.py and wait until it answers; fail with its log if it does not."""
    port = _free_port()
    log = root / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "server.py"), "--model-dir", str(model_dir), "--user-data-dir",
             str(user_dir), "--listen-port", str(port), *(["--ctx-size", str(ctx_size)] if ctx_size else []), *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_DIR)
    srv = Server(f"http://127.0.0.1:{port}", model_dir, user_dir, log, proc)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server.py exited with {proc.returncode}:\n{log.read_text()}")
        try:
            srv.health()
            return srv
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server.py did not answer within 120 s:\n{log.read_text()}")
            time.sleep(0.3)


def stop_server(srv: Server) -> None:
    srv.process.terminate()
    try:
        srv.process.wait(15)
    except subprocess.TimeoutExpired:
        srv.process.kill()
        srv.process.wait(5)


def make_dirs(root: Path) -> tuple[Path, Path]:
    """A models folder with links to the real test models, and an empty user-data folder."""
    model_dir, user_dir = root / "models", root / "user"
    model_dir.mkdir()
    user_dir.mkdir()
    for name in (SMOLLM, GEMMA):
        if not (MODELS_DIR / name).exists():
            pytest.fail(f"Test model {MODELS_DIR / name} is missing. Run ./run_tests.sh")
        (model_dir / name).symlink_to(MODELS_DIR / name)
    return model_dir, user_dir


def smollm_generator(smollm_path: Path, tmp_path_factory, n_ctx: int):
    """Yield a Generator over SmolLM2 loaded with ``n_ctx`` (for module fixtures: ``yield from``)."""
    from webui.generation.scheduler import Generator
    from webui.params import LoadOptions
    from webui.models.manager import ModelManager

    d = tmp_path_factory.mktemp("models")
    (d / SMOLLM).symlink_to(smollm_path)
    models = ModelManager(d, LoadOptions(n_ctx=n_ctx))
    models.load(SMOLLM)
    yield Generator(models)
    models.unload()
