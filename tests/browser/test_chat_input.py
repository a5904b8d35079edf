"""The chat's message box and buttons while a reply is written, on errors, and its bin and edit icons; the
message being written kept over a reload.

The first test runs before any model is loaded on this module's server; the others load SmolLM2.
"""

from __future__ import annotations

import json

import pytest

from browserkit import (
    bot_texts,
    new_greedy_chat,
    open_chat,
    open_notebook,
    open_parameters,
    reload,
    send,
    set_number,
    wait_for_complete_reply,
    wait_text,
)
from harness import wait_until

pytestmark = pytest.mark.browser

SHOTS = "/tmp"
GENERATING = "() => document.querySelector('#chat-send').classList.contains('generating')"


def chat_files(server) -> list[dict]:
    folder = server.user_dir / "logs" / "chats" / "Assistant"
    if not folder.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


def toast_text(page) -> str:
    page.locator(".toast-body").first.wait_for()
    return " ".join(page.locator(".toast-body").all_inner_texts())


def close_toasts(page) -> None:
    """Close the pop-ups still shown (they also go by themselves after a while)."""
    page.evaluate("() => document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())")
    page.wait_for_function("() => !document.querySelector('.toast-body')")


def test_no_model_send_is_a_popup_that_changes_nothing(page, server):
    assert server.health()["model"] is None  # first in this module: nothing is loaded yet
    open_chat(page)
    box = page.locator("#chat-input textarea")
    box.fill("Hello there")
    box.press("Enter")
    assert "No model is loaded" in toast_text(page)
    page.screenshot(path=f"{SHOTS}/chat_input_no_model.png")
    # the typed text stays, the chat box is not replaced by Gradio's "Error" badge, nothing is saved
    assert box.input_value() == "Hello there"
    assert "Error" not in page.locator("#chat-box").inner_text()
    assert page.locator("#chat-box [data-testid=user]").count() == 0
    assert chat_files(server) == []
    assert not page.locator("#chat-send").evaluate("b => b.classList.contains('generating')")
    close_toasts(page)

    # the Notebook then says the same, not "Waiting for 1 other request(s)"
    open_notebook(page)
    page.locator("#notebook-text textarea").fill("Once upon a time")
    page.locator("#notebook-generate").click()
    assert "No model is loaded" in toast_text(page)
    assert "Waiting" not in page.locator("#notebook-stats").inner_text()
    assert "Generating" not in page.locator("#notebook-stats").inner_text()
    page.screenshot(path=f"{SHOTS}/chat_input_notebook_no_model.png")


@pytest.fixture
def smollm_chat(page, server):
    return new_greedy_chat(page, server, max_tokens=200)


def test_typing_while_a_reply_streams_stays_and_a_second_send_waits(smollm_chat, server):
    page = smollm_chat
    box = page.locator("#chat-input textarea")
    box.fill("Write a long story about a dragon who loves books.")
    box.press("Enter")
    page.wait_for_function(GENERATING)
    assert "Generating" in page.locator("#chat-send").inner_text()
    page.wait_for_function(
        "() => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
        " return b.length > 0 && b[b.length - 1].innerText.length > 20; }",
        timeout=120_000,
    )
    box.fill("My next question")  # typed while the reply streams
    page.screenshot(path=f"{SHOTS}/chat_input_generating.png")
    wait_for_complete_reply(page)
    assert box.input_value() == "My next question"
    assert page.locator("#chat-send").inner_text().strip() == "Send"

    # Send while a Regenerate writes: refused with a note, nothing lost or sent
    page.locator("#chat-regenerate").click()
    page.wait_for_function(GENERATING)
    page.locator("#chat-send").click()
    note = toast_text(page)
    assert "being written" in note and "Stop" in note
    page.screenshot(path=f"{SHOTS}/chat_input_busy.png")
    assert box.input_value() == "My next question"
    wait_for_complete_reply(page)
    assert box.input_value() == "My next question"
    assert page.locator("#chat-box [data-testid=user]").count() == 1
    (saved,) = [c for c in chat_files(server) if c["messages"] and "dragon" in c["messages"][0]["content"]]
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert len(saved["messages"][1]["versions"]) == 2

    # once the reply is done, the same Send goes through
    close_toasts(page)
    n = len(bot_texts(page))
    page.locator("#chat-send").click()
    page.wait_for_function("(n) => document.querySelectorAll('#chat-box [data-testid=bot]').length > n", arg=n)
    wait_for_complete_reply(page)
    assert box.input_value() == ""
    assert "My next question" in page.locator("#chat-box [data-testid=user]").last.inner_text()


def test_a_message_being_written_comes_back_after_a_reload_and_goes_once_sent(smollm_chat, server):
    page = smollm_chat
    box = page.locator("#chat-input textarea")
    box.fill("")
    box.press_sequentially("What is a mole in chemistry", delay=20)
    draft = server.user_dir / "logs" / "boxes" / "chat-draft.txt"
    typed = lambda: draft.exists() and draft.read_text(encoding="utf-8") == "What is a mole in chemistry"  # noqa: E731
    wait_until(typed, "the message being written saved")
    reload(page)
    open_chat(page)
    assert box.input_value() == "What is a mole in chemistry"

    box.press_sequentially("?", delay=20)
    n = len(bot_texts(page))
    page.locator("#chat-send").click()  # a click: the box's blur saves the text as the Send empties it
    page.wait_for_function("(n) => document.querySelectorAll('#chat-box [data-testid=bot]').length > n", arg=n)
    wait_for_complete_reply(page)
    assert box.input_value() == ""
    reload(page)
    open_chat(page)
    wait_text(page, "#chat-box", "What is a mole in chemistry?")
    assert box.input_value() == ""  # sent: not back in the box


def test_impersonate_goes_on_from_what_was_typed(smollm_chat, server):
    """Impersonate replaced a half-typed message with the model's own, and the words typed were gone; it now
    goes on from them, as text-generation-webui's does."""
    page = smollm_chat
    send(page, "Name a bright star.")  # (not "What is...": the next test looks for its own chat by that)
    box = page.locator("#chat-input textarea")
    box.fill("")
    box.press_sequentially("Can you tell me how", delay=20)
    page.locator("#chat-impersonate").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#chat-input textarea').value;"
        " return v.length > 'Can you tell me how'.length + 3; }"
    )
    page.wait_for_function(f"() => !{GENERATING[6:]}")
    assert box.input_value().startswith("Can you tell me how")
    box.fill("")


def test_bin_icon_starts_a_new_chat(smollm_chat, server):
    page = smollm_chat
    set_shorter_replies(page)
    send(page, "Tell me about owls.")
    old_title = page.locator("#chat-list input").input_value()
    assert old_title.startswith("Tell me about owls.")
    page.locator("#chat-box button[aria-label='Clear']").click()
    page.wait_for_function("() => document.querySelector('#chat-list input').value === ''")
    send(page, "What is the capital of France? Answer in one sentence.")
    # the new chat holds only the new exchange; the old one is still there, in the list and on disk
    (new,) = [c for c in chat_files(server) if c["messages"] and c["messages"][0]["content"].startswith("What is")]
    assert [m["role"] for m in new["messages"]] == ["user", "assistant"]
    assert not any("owls" in m["content"] for m in new["messages"])
    assert any(c["messages"] and c["messages"][0]["content"] == "Tell me about owls." for c in chat_files(server))
    page.locator("#chat-list input").click()
    assert page.get_by_role("option", name=old_title, exact=True).count() == 1
    page.keyboard.press("Escape")
    # and the model's prompt had only the new message
    page.get_by_text("Show prompt", exact=True).click()
    page.locator("#chat-show-prompt").click()
    page.wait_for_function("() => document.querySelector('#chat-prompt').innerText.includes('capital of France')")
    assert "owls" not in page.locator("#chat-prompt").inner_text()


def set_shorter_replies(page) -> None:
    open_parameters(page)
    set_number(page, "param-max_tokens", "40")
    open_chat(page)


def test_editing_a_reply_shows_only_its_text(smollm_chat, server):
    page = smollm_chat
    set_shorter_replies(page)
    send(page, "What is the capital of Italy? Answer in one sentence.")
    reply = bot_texts(page)[-1].strip()
    assert "tokens/s" in page.locator("#chat-reply-stats").inner_text()
    page.locator("#chat-box [data-testid=bot]").last.hover()
    page.locator("#chat-box button[aria-label='Edit']").last.click()
    edit = page.locator("#chat-box textarea.edit-textarea")
    assert edit.input_value().strip() == reply  # no stats markup in the edit box
    assert "<sub>" not in edit.input_value() and "tokens/s" not in edit.input_value()
    page.screenshot(path=f"{SHOTS}/chat_input_edit.png")
    edit.fill("Paris is the capital of France, edited.")
    page.locator("#chat-box button[aria-label='Submit']").click()
    wait_text(page, "#chat-box", "edited.")
    assert bot_texts(page)[-1].strip() == "Paris is the capital of France, edited."
    wait_text(page, "#chat-reply-stats", "tokens/s")  # the stats still show
    (saved,) = [c for c in chat_files(server) if c["messages"] and "Italy" in c["messages"][0]["content"]]
    assert saved["messages"][1]["content"] == "Paris is the capital of France, edited."
    page.screenshot(path=f"{SHOTS}/chat_input_edited.png")
