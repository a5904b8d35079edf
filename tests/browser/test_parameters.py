"""Parameters tab: presets saved from the UI, settings that survive a reload and a restart."""

from __future__ import annotations

import pytest
import yaml

from browserkit import choose, load_smollm, open_app, open_parameters, reload, set_number, wait_text
from harness import make_dirs, start_server, stop_server, wait_until
from testdata import SMOLLM

pytestmark = pytest.mark.browser


def wait_value(page, selector: str, value: str) -> None:
    """Wait until an input shows ``value`` (page-load events fill the inputs a moment after the page)."""
    page.wait_for_function(
        "([sel, v]) => { const el = document.querySelector(sel); return el && el.value === v; }", arg=[selector, value]
    )


def number(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def test_saved_preset_survives_a_reload(page, server):
    open_parameters(page)
    set_number(page, "param-temperature", "0.42")
    set_number(page, "param-top_k", "17")
    name = page.locator("#preset-name input, #preset-name textarea").first
    name.fill("My lab preset")
    page.locator("#preset-save").click()
    wait_text(page, "#preset-message", "Saved preset")
    saved = yaml.safe_load((server.user_dir / "presets" / "My lab preset.yaml").read_text())
    assert saved == {"temperature": 0.42, "top_k": 17}

    reload(page)
    open_parameters(page)
    wait_value(page, "#preset-dropdown input", "My lab preset")
    wait_value(page, "#param-temperature input[type=number]", "0.42")
    wait_value(page, "#param-top_k input[type=number]", "17")

    # another preset sets every value; Restore brings back the file's values after an edit
    choose(page, "preset-dropdown", "Technical")
    # (max_tokens is 512 in both presets, so wait on values that change)
    wait_value(page, "#param-temperature input[type=number]", "0.4")
    wait_value(page, "#param-top_k input[type=number]", "30")
    set_number(page, "param-temperature", "1.5")
    page.locator("#preset-restore").click()
    page.wait_for_function("() => document.querySelector('#param-temperature input[type=number]').value === '0.4'")


def test_bad_preset_name_is_refused_and_delete_asks_first(page, server):
    open_parameters(page)
    page.locator("#preset-name input, #preset-name textarea").first.fill("../escape")
    page.locator("#preset-save").click()
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert "preset name" in toast.inner_text()
    assert not (server.user_dir / "escape.yaml").exists()

    choose(page, "preset-dropdown", "Creative")
    page.locator("#preset-delete").click()
    page.locator("#preset-delete-confirm").wait_for()
    assert (server.user_dir / "presets" / "Creative.yaml").exists()  # nothing deleted before confirming
    page.locator("#preset-delete-confirm").click()
    wait_text(page, "#preset-message", "Deleted preset")
    assert not (server.user_dir / "presets" / "Creative.yaml").exists()


def test_a_broken_preset_says_why_and_leaves_the_values_and_the_pick_as_they_were(page, server):
    """Found by hand: picking a preset file broken by hand left the dropdown on it (as if in use) over the
    old values, and the reason went with its pop-up; the YAML message lost "<stream end>" as a tag."""
    (server.user_dir / "presets" / "Broken.yaml").write_text("temperature: [1\n")
    (server.user_dir / "presets" / "Wild.yaml").write_text("temperature: 9\n")
    reload(page)
    open_parameters(page)
    choose(page, "preset-dropdown", "Technical")
    wait_value(page, "#param-temperature input[type=number]", "0.4")
    choose(page, "preset-dropdown", "Broken")
    wait_text(page, "#preset-message", "Broken.yaml is not valid YAML")
    message = page.locator("#preset-message").inner_text()
    assert "but got the end of the file at line 2, column 1" in message
    assert "Technical stays the preset in use" in message
    wait_value(page, "#preset-dropdown input", "Technical")
    assert number(page, "param-temperature") == 0.4
    choose(page, "preset-dropdown", "Wild")
    wait_text(page, "#preset-message", "Preset 'Wild' has invalid values: temperature")
    wait_value(page, "#preset-dropdown input", "Technical")
    assert number(page, "param-temperature") == 0.4


def test_choices_survive_a_server_restart(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        page = open_app(browser, srv.url)
        load_smollm(page)
        open_parameters(page)
        choose(page, "preset-dropdown", "Chat")
        page.wait_for_function("() => document.querySelector('#param-max_tokens input[type=number]').value === '768'")
        set_number(page, "param-seed", "1234")
        # the value is saved by a request of its own; wait for it to land
        wait_until(
            lambda: (user_dir / "settings.yaml").exists() and "seed: 1234" in (user_dir / "settings.yaml").read_text(),
            "saving the seed",
        )
        page.close()
    finally:
        stop_server(srv)
    settings = yaml.safe_load((user_dir / "settings.yaml").read_text())
    assert settings["model"] == SMOLLM and settings["preset"] == "Chat"
    assert settings["params"]["seed"] == 1234

    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        assert srv.health()["model"] == SMOLLM  # the last model is loaded again at start
        page = open_app(browser, srv.url)
        assert SMOLLM in page.locator("#model-status").inner_text()
        open_parameters(page)
        wait_value(page, "#preset-dropdown input", "Chat")
        wait_value(page, "#param-max_tokens input[type=number]", "768")
        wait_value(page, "#param-seed input[type=number]", "1234")
        page.close()
    finally:
        stop_server(srv)
