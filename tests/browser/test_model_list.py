"""The Model tab of a newly opened page shows what is on disk and loaded now, not what was there at start."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browserkit import choose, open_app, press_load, reload, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import GEMMA, SMOLLM

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """server.py started with model A (SmolLM2) loaded, as after a restart with --model."""
    root = tmp_path_factory.mktemp("list")
    srv = start_server(root, *make_dirs(root), "--model", SMOLLM)
    yield srv
    stop_server(srv)


def listed(page, name: str) -> bool:
    page.locator("#model-dropdown input").click()
    found = page.get_by_role("option", name=name, exact=True).count() == 1
    page.keyboard.press("Escape")
    return found


def test_a_new_page_shows_the_model_loaded_from_another_page(browser, page, server):
    assert server.health()["model"] == SMOLLM
    expect(page.locator("#model-dropdown input")).to_have_value(SMOLLM)
    choose(page, "model-dropdown", GEMMA)
    press_load(page, GEMMA)

    second = open_app(browser, server.url)
    try:
        # the dropdown, the info table and the status line agree on what is loaded
        expect(second.locator("#model-dropdown input")).to_have_value(GEMMA)
        assert GEMMA in second.locator("#model-status").inner_text()
        info = second.locator("#model-info").inner_text()
        assert GEMMA in info and "gemma3" in info and "SmolLM2" not in info
        expect(second.locator("#loader-dropdown input")).to_have_value("llama.cpp")
        second.screenshot(path="/tmp/model-list-second-page.png", full_page=True)
        # so Load there loads that model, not the one the page was built with
        press_load(second, GEMMA)
        assert server.health()["model"] == GEMMA
    finally:
        second.close()


def test_a_model_put_in_the_folder_is_listed_after_a_reload(page, server):
    copied = "Added-SmolLM2.gguf"
    assert not listed(page, copied)
    (server.model_dir / copied).symlink_to((server.model_dir / SMOLLM).resolve())  # as an import does
    try:
        reload(page)
        page.locator("#model-dropdown input").click()  # no Refresh needed
        page.get_by_role("option", name=copied, exact=True).click()
        wait_text(page, "#model-info", copied)
    finally:
        (server.model_dir / copied).unlink()
