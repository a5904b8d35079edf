"""The Model tab's "Loaded models" panel in Chromium, on server.py started with a memory budget: two models
loaded from the Model tab stay loaded side by side, one is unloaded with the panel's dropdown and button,
and a page opened later shows the same state."""

from __future__ import annotations

import pytest

from browserkit import choose, press_load, reload, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import GEMMA, PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.browser
ROWS = "#loaded-models tbody tr"
ARTIFACTS = PROJECT_DIR / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """server.py (no model loaded) keeping several models loaded within 2000 MB."""
    root = tmp_path_factory.mktemp("server")
    srv = start_server(root, *make_dirs(root), "--models-budget-mb", "2000")
    yield srv
    stop_server(srv)


def wait_rows(page, n: int) -> list[str]:
    """The table's rows once there are ``n`` of them (it refreshes after loads, unloads and page loads)."""
    page.wait_for_function("([sel, n]) => document.querySelectorAll(sel).length === n", arg=[ROWS, n])
    return page.locator(ROWS).all_inner_texts()


def load(page, name: str) -> None:
    choose(page, "model-dropdown", name)
    press_load(page, name)


def test_two_models_loaded_one_unloaded_and_a_reload_shows_the_same(page, server):
    wait_text(page, "#loaded-models", "No model loaded")
    assert "Memory budget: 0 B of 2.0 GB used." in page.locator("#loaded-models").inner_text()
    load(page, SMOLLM)
    load(page, GEMMA)
    main, other = wait_rows(page, 2)
    assert main.startswith(GEMMA) and "(main)" in main and "llama.cpp" in main and "MB" in main
    assert other.startswith(SMOLLM) and "(main)" not in other
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#loaded-models-panel").screenshot(path=str(ARTIFACTS / "loaded-models-panel.png"))

    choose(page, "loaded-models-pick", SMOLLM)
    page.locator("#loaded-models-unload").click()
    (row,) = wait_rows(page, 1)
    assert row.startswith(GEMMA) and "(main)" in row
    assert page.locator("#loaded-models-pick input").input_value() == GEMMA

    reload(page)  # a page opened later shows what is loaded now
    (row,) = wait_rows(page, 1)
    assert row.startswith(GEMMA)
    assert page.locator("#loaded-models-pick input").input_value() == GEMMA


def test_unloading_the_main_model_makes_the_other_one_main(page, server):
    """The Model tab's status follows: the model left loaded is the one the Chat tab now uses."""
    load(page, SMOLLM)  # gemma is still loaded from the test above
    main, _ = wait_rows(page, 2)
    assert main.startswith(SMOLLM)
    choose(page, "loaded-models-pick", SMOLLM)
    page.locator("#loaded-models-unload").click()
    (row,) = wait_rows(page, 1)
    assert row.startswith(GEMMA) and "(main)" in row
    wait_text(page, "#model-status", GEMMA)
