"""The Model tab's tool-call format in a real browser: Auto names what the loaded model's template gives,
a chosen format is saved per model and still chosen after a reload, an unknown saved name shows as Auto."""

from __future__ import annotations

import pytest
import yaml
from playwright.sync_api import expect

from browserkit import choose, load_smollm, reload, wait_text
from testdata import GEMMA, SMOLLM

pytestmark = pytest.mark.browser


def test_chosen_format_is_saved_and_survives_a_reload(page, server):
    load_smollm(page)
    # SmolLM2's template is plain ChatML: Auto reads Hermes-style <tool_call> blocks from it
    expect(page.locator("#model-tool-format input")).to_have_value("Auto (from the chat template: hermes)")
    choose(page, "model-tool-format", "mistral")
    page.locator("#model-save-settings").click()
    wait_text(page, "#model-settings-message", "Saved the settings")
    saved = yaml.safe_load((server.model_dir / "config-user.yaml").read_text())
    assert saved[SMOLLM]["tool_format"] == "mistral"

    reload(page)
    expect(page.locator("#model-dropdown input")).to_have_value(SMOLLM)
    expect(page.locator("#model-tool-format input")).to_have_value("mistral")


def test_unknown_saved_name_shows_a_note_and_auto(page, server):
    path = server.model_dir / "config-user.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    data[GEMMA] = {"tool_format": "mistrall"}  # a hand-edited file with a typo
    path.write_text(yaml.safe_dump(data))
    choose(page, "model-dropdown", GEMMA)
    wait_text(page, "#model-settings-message", "mistrall")
    assert "unknown" in page.locator("#model-settings-message").inner_text()
    # Gemma is not the loaded model: Auto cannot name the format yet
    expect(page.locator("#model-tool-format input")).to_have_value("Auto (from the chat template)")
