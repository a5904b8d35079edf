"""Browser-test harness: the real server.py on a free port, driven in Debian Chromium by Playwright."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testdata import GEMMA, MODELS_DIR, PROJECT_DIR, SMOLLM

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = PROJECT_DIR / "test-artifacts"


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


def start_server(root: Path, model_dir: Path, user_dir: Path, *extra: str) -> Server:
    """Start server.py and wait until it answers; fail with its log if it does not."""
    port = _free_port()
    log = root / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "server.py"), "--model-dir", str(model_dir), "--user-data-dir",
             str(user_dir), "--listen-port", str(port), "--ctx-size", "2048", *extra],
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


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """server.py with no model loaded, on a fresh user-data folder."""
    root = tmp_path_factory.mktemp("server")
    srv = start_server(root, *make_dirs(root))
    yield srv
    stop_server(srv)
    if os.environ.get("WEBUI_SHOW_SERVER_LOG"):
        print(srv.log.read_text())


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}. Run ./run_tests.sh (it installs Debian's chromium) "
                    "or set CHROMIUM=/path/to/chromium.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.failed_call = report.failed


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(server.url + "/")
    pg.wait_for_selector("#model-status")
    yield pg
    if getattr(request.node, "failed_call", False):
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(f"screenshot: {ARTIFACTS / (request.node.name + '.png')}\nserver log:\n{server.log.read_text()[-4000:]}")
    context.close()
