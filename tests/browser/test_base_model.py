"""A base model (gemma-3-270m: no chat template) as a student meets it: labelled as such, never printing turn markers.

Its chats get its family's instruction template (Gemma) and that template's turn markers as stop
strings; a template picked by hand (ChatML) stops on its own markers. Checked where a student
reads answers: the Chat tab (and the chat file behind it), the Compare tab and the API.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from browserkit import (
    choose,
    open_chat,
    open_parameters,
    press_load,
    send,
    set_number,
    wait_text,
)
from harness import make_dirs, start_server, stop_server
from testdata import GEMMA

pytestmark = pytest.mark.browser

MARKERS = ("<|im_end|>", "<|im_start|>", "<end_of_turn>", "<start_of_turn>")
BASE = "base model: not trained to chat - use the Notebook or pick a template"


def assert_no_markers(text: str, where: str) -> None:
    found = [m for m in MARKERS if m in text]
    assert not found, f"{where} shows the turn markers {found}: {text!r}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """server.py with the API on (the UI and /v1 on one port), no model loaded at start."""
    root = tmp_path_factory.mktemp("base")
    srv = start_server(root, *make_dirs(root), "--api")
    yield srv
    stop_server(srv)


def chat_files_text(server) -> str:
    """Every saved chat, as the text of its messages (a marker the chat box hides as HTML is still here)."""
    folder = server.user_dir / "logs" / "chats"
    texts = []
    for path in folder.rglob("*.json"):
        if not path.name.startswith("."):
            texts.append(json.dumps(json.loads(path.read_text()), ensure_ascii=False))
    return "\n".join(texts)


def test_the_api_answers_without_turn_markers(server):
    """First, with no template chosen by hand: the Gemma fallback's markers stop the reply."""
    r = httpx.post(server.url + "/v1/internal/model/load", json={"model_name": GEMMA}, timeout=300)
    assert r.status_code == 200, r.text
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=600)
    for question in ("Hello! Who are you?", "Write a short dialogue between a user and an assistant."):
        reply = client.chat.completions.create(
            model=GEMMA, messages=[{"role": "user", "content": question}], max_tokens=80, temperature=0
        )
        assert_no_markers(reply.choices[0].message.content or "", "the API's answer")
    streamed = "".join(
        event.choices[0].delta.content or ""
        for event in client.chat.completions.create(
            model=GEMMA,
            messages=[{"role": "user", "content": "Hello! Who are you?"}],
            max_tokens=80,
            temperature=0,
            stream=True,
        )
        if event.choices
    )
    assert_no_markers(streamed, "the API's streamed answer")


def test_model_and_chat_tabs_label_a_base_model_and_chats_show_no_markers(page, server):
    choose(page, "model-dropdown", GEMMA)
    wait_text(page, "#model-info", "gemma3")
    press_load(page, GEMMA)
    info = page.locator("#model-info").inner_text()
    assert BASE in info, info  # the info table's "Chat template" row
    assert "base model" in page.locator("#model-status").inner_text().lower()
    page.screenshot(path="/tmp/base-model-tab.png", full_page=True)

    open_parameters(page)
    set_number(page, "param-max_tokens", "60")
    open_chat(page)
    page.locator("#chat-new").click()
    wait_text(page, "#chat-template-note", "Base model: not trained to chat")
    assert "Gemma" in page.locator("#chat-template-note").inner_text()  # its family's template, not ChatML
    send(page, "Hello! Who are you?")
    send(page, "Tell me about the sea.")
    for text in page.locator("#chat-box [data-testid=bot]").all_inner_texts():
        assert_no_markers(text, "the chat box")
    assert_no_markers(chat_files_text(server), "the saved chat")

    # A template picked by hand: its own markers are stop strings too.
    choose(page, "chat-template", "ChatML")
    wait_text(page, "#chat-template-note", "ChatML")
    page.locator("#chat-new").click()
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 0")
    send(page, "Hello! Who are you?")
    send(page, "Tell me about the sea.")
    for text in page.locator("#chat-box [data-testid=bot]").all_inner_texts():
        assert_no_markers(text, "the chat box (ChatML)")
    assert_no_markers(chat_files_text(server), "the saved chat (ChatML)")
    page.screenshot(path="/tmp/base-model-chat.png", full_page=True)


def test_compare_tab_shows_no_markers(page, server):
    assert server.health()["model"] == GEMMA
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompt textarea").wait_for()
    page.locator("#compare-mode label", has_text="Presets").click()
    page.locator("#compare-model-0 input").click()
    page.locator("#compare-model-0").get_by_role("option", name=GEMMA, exact=True).click()
    for i, preset in enumerate(("Technical", "Creative")):
        page.locator(f"#compare-preset-{i} input").click()
        page.locator(f"#compare-preset-{i}").get_by_role("option", name=preset, exact=True).click()
    page.locator("#compare-max-tokens input").fill("60")
    page.locator("#compare-prompt textarea").fill("Hello! Who are you?")
    page.locator("#compare-run").click()
    wait_text(page, "#compare-status", "Done: 2 of 2", timeout=300_000)
    answers = [page.locator(f"#compare-answer-{i} textarea").input_value() for i in range(2)]
    assert any(a.strip() for a in answers), "no run gave an answer"  # (a base model may end its turn at once)
    for i, answer in enumerate(answers):
        assert_no_markers(answer, f"the Compare tab's answer {i}")
    assert not re.search(r"<\|?(im_|start_of|end_of)", page.locator("#compare-table").inner_text())
