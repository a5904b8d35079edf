"""Model tab in a real browser: model info, per-model settings, hub download with progress, import, delete, a load
clicked while a reply is being written."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browserkit import (
    bot_texts,
    choose,
    new_greedy_chat,
    open_parameters,
    press_load,
    reload,
    set_number,
    wait_for_complete_reply,
    wait_text,
)
from harness import make_dirs, start_server, stop_server
from hubstub import HubStub
from testdata import GEMMA, SMOLLM

pytestmark = pytest.mark.browser
REPO = "test/SmolLM2-GGUF"
DOWNLOADED = "SmolLM2-Copy.Q4_1.gguf"


@pytest.fixture(scope="module")
def hub(smollm_path):
    stub = HubStub().start()
    stub.add_repo(REPO, {DOWNLOADED: smollm_path, "README.md": b"# test\n"})
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, hub):
    """server.py (no model loaded) whose downloads go to the stand-in hub."""
    root = tmp_path_factory.mktemp("server")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        srv = start_server(root, *make_dirs(root))
    yield srv
    stop_server(srv)


def select_model(page, name: str) -> None:
    choose(page, "model-dropdown", name)


def test_info_and_per_model_settings_survive_a_reload(page, server):
    select_model(page, SMOLLM)
    wait_text(page, "#model-info", "Q4_1")
    info = page.locator("#model-info").inner_text()
    assert "llama" in info and "8,192 tokens" in info and "yes (in the file)" in info and "RAM needed" in info
    set_number(page, "opt-n_ctx", "1536")
    wait_text(page, "#model-info", "1,536 tokens")  # the RAM estimate follows the context
    choose(page, "model-template", "ChatML")
    choose(page, "model-preset", "Deterministic")
    page.locator("#model-save-settings").click()
    wait_text(page, "#model-settings-message", "Saved the settings")
    assert "config-user.yaml" in page.locator("#model-settings-message").inner_text()

    reload(page)
    page.wait_for_selector("#model-status")
    select_model(page, GEMMA)
    wait_text(page, "#model-info", "gemma3")
    select_model(page, SMOLLM)
    wait_text(page, "#model-settings-message", "Applied the settings")
    assert page.locator("#opt-n_ctx input[type=number]").input_value() == "1536"
    assert page.locator("#model-template input").input_value() == "ChatML"
    assert page.locator("#model-preset input").input_value() == "Deterministic"
    press_load(page, "context 1536 tokens")
    open_parameters(page)
    expect(page.locator("#preset-dropdown input")).to_have_value("Deterministic")


def test_download_with_progress_cancel_and_resume(page, server, hub):
    page.locator("#download-panel").get_by_text("Download from Hugging Face").click()
    page.locator("#download-repo textarea, #download-repo input").first.fill(REPO)
    page.locator("#download-list").click()
    wait_text(page, "#download-files", "98.4 MB")
    page.locator("#download-choice input").click()
    page.get_by_role("option", name=re.compile(r"Q4_1 · SmolLM2-Copy")).click()
    hub.delay = 0.01
    page.locator("#download-start").click()
    page.wait_for_selector("#download-progress progress")
    wait_text(page, "#download-status", "MB of 98.4 MB")
    page.locator("#download-cancel").click()
    page.wait_for_selector("#download-result[data-state=cancelled]")
    assert "resume" in page.locator("#download-status").inner_text()
    page.locator("#model-dropdown input").click()
    assert page.get_by_role("option", name=DOWNLOADED).count() == 0  # not listed while incomplete
    page.keyboard.press("Escape")
    hub.delay = 0
    hub.requests.clear()
    page.locator("#download-start").click()
    page.wait_for_selector("#download-result[data-state=done]", timeout=120_000)
    assert any(r["range"] for r in hub.requests if r["method"] == "GET")  # resumed, not restarted
    expect(page.locator("#model-dropdown input")).to_have_value(DOWNLOADED)
    assert (server.model_dir / DOWNLOADED).stat().st_size == 98_362_432


def test_a_listing_that_fails_says_why_and_clears_the_last_one(page, server, hub):
    """Found by hand: with the hub out of reach the reason went with its pop-up, and an earlier repo's
    listing stayed under it, its Download ready to fetch from that other repo."""
    page.locator("#download-panel").get_by_text("Download from Hugging Face").click()
    page.locator("#download-repo textarea, #download-repo input").first.fill(REPO)
    page.locator("#download-list").click()
    wait_text(page, "#download-files", "98.4 MB")
    page.locator("#download-repo textarea, #download-repo input").first.fill("nobody/no-such-repo")
    page.locator("#download-list").click()
    wait_text(page, "#download-files", "no-such-repo")
    assert "98.4 MB" not in page.locator("#download-files").inner_text()
    expect(page.locator("#download-choice input")).to_have_value("")


def test_import_then_delete_with_confirmation(page, server, tmp_path, smollm_path):
    outside = tmp_path / "Imported-SmolLM2.gguf"
    outside.symlink_to(smollm_path)
    page.locator("#import-panel").get_by_text("Import a model from disk").click()
    page.locator("#import-path textarea, #import-path input").first.fill(str(outside))
    page.locator("#import-start").click()
    wait_text(page, "#import-message", "Imported")
    expect(page.locator("#model-dropdown input")).to_have_value("Imported-SmolLM2.gguf")
    # a failed import says why under the button (the pop-up goes after 10 s), in place of the "Imported" line
    page.locator("#import-path textarea, #import-path input").first.fill(str(tmp_path / "nowhere.gguf"))
    page.locator("#import-start").click()
    wait_text(page, "#import-message", "check the path")
    assert "Imported" not in page.locator("#import-message").inner_text()
    page.locator("#model-delete").click()
    wait_text(page, "#model-delete-confirm", "Yes, delete it")
    page.locator("#model-delete-confirm").click()
    wait_text(page, "#model-settings-message", "Deleted")
    assert not (server.model_dir / "Imported-SmolLM2.gguf").exists() and outside.exists()
    page.locator("#model-dropdown input").click()
    assert page.get_by_role("option", name="Imported-SmolLM2.gguf").count() == 0


def test_a_load_clicked_during_a_reply_says_it_waits_for_it_and_stop_lets_it_load(page, server):
    """The load waits its turn behind the reply being written (the model is not pulled from under it): the
    status says so instead of a bare spinner, and stopping the reply lets the load go on."""
    new_greedy_chat(page, server, max_tokens=4000)
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").check()  # a reply that lasts until stopped
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("#chat-input textarea")
    box.fill("Tell me about the sea.")
    box.press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
        " return b.length === 1 && b[0].innerText.length > 20; }",
        timeout=180_000,
    )
    page.get_by_role("tab", name="Model").click()
    select_model(page, GEMMA)
    page.locator("#model-load").click()
    wait_text(page, "#model-status", "Waiting for 1 request(s) ahead of the load")
    assert server.health()["model"] == SMOLLM  # still writing the reply with the model it started on
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-stop").click()
    wait_for_complete_reply(page)
    assert len(bot_texts(page)[0]) > 20  # the reply written so far is kept
    page.get_by_role("tab", name="Model").click()
    wait_text(page, "#model-status", f"Loaded: {GEMMA}")
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").uncheck()
