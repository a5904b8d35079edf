"""The API tab: on or off, the address and model to type, and code that works when copied."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from browserkit import open_app
from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.browser
KEY = "s3cret-Key-42"


def open_api_tab(page) -> None:
    page.get_by_role("tab", name="API").click()
    page.locator("#api-status").wait_for()


def snippet(page, name: str) -> str:
    """The code of one snippet as a copy gives it (CodeMirror shows one line per element)."""
    box = page.locator(f"#api-snippet-{name} .cm-content")
    expect(box).to_contain_text("http")
    return "\n".join(box.locator(".cm-line").all_inner_texts())


def run_curl(command: str) -> dict:
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM)
    yield srv
    stop_server(srv)


def test_the_panel_shows_the_address_and_a_curl_command_that_works(page, server):
    open_api_tab(page)
    status = page.locator("#api-status").inner_text()
    assert "The API is on" in status
    assert f"{server.url}/v1" in status and SMOLLM in status and "not needed" in status
    for name in ("openai", "autogen", "langchain"):
        code = snippet(page, name)
        assert f'base_url="{server.url}/v1"' in code and f'model="{SMOLLM}"' in code
    page.screenshot(path="/tmp/api-panel.png", full_page=True)

    # AutoGen is told what this API does: tools, JSON and schemas (it said "off" for all, from before the
    # agents work, and AutoGen then refuses to send a tool); the copied code runs as it is.
    code = snippet(page, "autogen")
    assert '"function_calling": True' in code and '"structured_output": True' in code and '"vision": False' in code
    for name in ("openai", "autogen", "langchain"):
        ran = subprocess.run([sys.executable, "-c", snippet(page, name)], capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, f"{name}: {ran.stderr[-2000:]}"
        assert ran.stdout.strip(), name

    command = snippet(page, "curl")
    assert command.startswith(f"curl {server.url}/v1/chat/completions")
    answer = run_curl(command)
    assert answer["model"] == SMOLLM and answer["choices"][0]["message"]["content"].strip()


def test_with_a_key_the_panel_says_so_without_showing_it(browser, tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path), "--api-key", KEY, "--model", SMOLLM)
    try:
        page = open_app(browser, srv.url)
        open_api_tab(page)
        assert "needed" in page.locator("#api-status").inner_text()
        command = snippet(page, "curl")
        assert KEY not in page.content() and "YOUR_API_KEY" in command
        assert run_curl(command)["error"]["code"] == "invalid_api_key"  # the placeholder is not the key
        answer = run_curl(command.replace("YOUR_API_KEY", KEY))
        assert answer["choices"][0]["message"]["content"].strip()
        page.close()
    finally:
        stop_server(srv)


def test_without_api_it_says_how_to_turn_it_on(browser, tmp_path):
    srv = start_server(tmp_path, *make_dirs(tmp_path))
    try:
        page = open_app(browser, srv.url)
        open_api_tab(page)
        status = page.locator("#api-status").inner_text()
        assert "The API is off" in status and "./start.sh --api" in status
        expect(page.locator("#api-snippet-curl")).to_be_hidden()
        page.screenshot(path="/tmp/api-panel-off.png", full_page=True)
        page.close()
    finally:
        stop_server(srv)
