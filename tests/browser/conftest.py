"""Browser-test harness: the real server.py on a free port, driven in Debian Chromium by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from browserkit import CHROMIUM, CHROMIUM_ARGS, settle
from harness import Server, make_dirs, start_server, stop_server
from testdata import PROJECT_DIR

ARTIFACTS = PROJECT_DIR / "test-artifacts"


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
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Run ./run_tests.sh (it installs Debian's chromium) "
            "or set CHROMIUM=/path/to/chromium."
        )
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
    settle(pg)
    yield pg
    if getattr(request.node, "failed_call", False) and not pg.is_closed():
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        (ARTIFACTS / f"{request.node.name}.server.log").write_text(server.log.read_text())
        print(f"screenshot: {ARTIFACTS / (request.node.name + '.png')}\nserver log:\n{server.log.read_text()[-4000:]}")
    context.close()
