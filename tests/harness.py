"""Helpers shared by test modules: a real server.py process (started by server_process.py, which
bench/ shares), waiting for what a server writes, and SmolLM2 behind a Generator.

(Import from here, not from a conftest.py: ``tests/`` is not a package, so conftest
modules shadow each other under the one name ``conftest``.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from server_process import ServerProcess, start_webui
from testdata import GEMMA, MODELS_DIR, SMOLLM

T = TypeVar("T")


@dataclass
class Server(ServerProcess):
    """server.py under test, with the folders it was started on."""

    model_dir: Path
    user_dir: Path


def start_server(root: Path, model_dir: Path, user_dir: Path, *extra: str, ctx_size: int | None = 2048) -> Server:
    """Start server.py (log in ``root``) and wait until it answers; fails with its log if it does not."""
    proc = start_webui(
        root,
        "--model-dir",
        str(model_dir),
        "--user-data-dir",
        str(user_dir),
        *(["--ctx-size", str(ctx_size)] if ctx_size else []),
        *extra,
    )
    return Server(proc.url, proc.process, proc.log, model_dir, user_dir)


def stop_server(srv: ServerProcess) -> None:
    srv.stop()


def wait_until(condition: Callable[[], T], what: str, timeout: float = 10) -> T:
    """Poll ``condition`` until it returns something truthy, and return that (e.g. a file the server
    writes a moment after the page shows the change); fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)
    return result


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
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions

    d = tmp_path_factory.mktemp("models")
    (d / SMOLLM).symlink_to(smollm_path)
    models = ModelManager(d, LoadOptions(n_ctx=n_ctx))
    models.load(SMOLLM)
    yield Generator(models)
    models.unload()
