"""Tools in the Chat tab, on real SmolLM2 in Chromium: enable the shipped ``calculate``, make the model
call it, approve the call (Run), see the call block (arguments, result) and the answer after it; Skip
a call; Always allow; the blocks come back after a reload; the round-limit notice.

The chat's round limit is 1 throughout, so after the one (forced) call the model must answer in
words: the answer never turns into another call that would wait for approval.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from browserkit import new_greedy_chat, open_chat, reload, wait_for_complete_reply, wait_text
from harness import Server, make_dirs, start_server, stop_server, wait_until
from testdata import SMOLLM

pytestmark = pytest.mark.browser

BLOCK = "#chat-box .thought-group"
APPROVAL = "#chat-approval"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """server.py with SmolLM2 loaded; the new user-data folder gets the shipped tools/ (calculate...)."""
    root = tmp_path_factory.mktemp("server")
    model_dir, user_dir = make_dirs(root)
    srv = start_server(root, model_dir, user_dir, "--model", SMOLLM)
    yield srv
    stop_server(srv)


def saved_chat(server: Server, question: str, results: int) -> dict:
    """The chat file holding ``question`` once it has ``results`` tool results and an answer after the last."""
    folder = server.user_dir / "logs" / "chats" / "Assistant"

    def find() -> dict | None:
        for path in folder.glob("*.json"):
            chat = json.loads(path.read_text())
            messages = chat.get("messages", [])
            if any(m["content"] == question for m in messages):
                tools = [m for m in messages if m["role"] == "tool"]
                if len(tools) >= results and messages[-1]["role"] == "assistant" and messages[-1].get("stats"):
                    return chat
        return None

    return wait_until(find, f"saving the tool round of {question!r}", timeout=60)


def ask(page, question: str) -> None:
    """Send ``question``; return once the approval row asks about a calculate call."""
    box = page.locator("#chat-input textarea")
    box.fill(question)
    box.press("Enter")
    page.locator(APPROVAL).wait_for(state="visible", timeout=180_000)
    wait_text(page, "#chat-approval-text", "calculate(")


def block_titles(page) -> list[str]:
    return [t.strip() for t in page.locator(f"{BLOCK} .title").all_inner_texts()]


def test_a_tool_call_is_approved_shown_skipped_and_kept_after_a_reload(page, server):
    new_greedy_chat(page, server, max_tokens=40)
    page.locator("#chat-tools .label-wrap").first.click()  # the Tools accordion
    page.locator("#chat-tools-list label", has_text="calculate - calculate.py").locator("input").check()
    page.locator("#chat-tools-force input[type=checkbox]").check()
    rounds = page.locator("#chat-tools-rounds input[type=number]")
    rounds.fill("1")
    rounds.press("Tab")
    assert page.locator("#chat-tools-mode-note").inner_text().strip() == ""  # instruct mode: no note

    # 1. Run: the call block shows the arguments and the result, then the model's answer
    ask(page, "What is 6 times 7?")
    assert "The model wants to run" in page.locator("#chat-approval-text").inner_text()
    assert page.locator("#chat-tool-always").inner_text().strip() == "Always allow calculate in this chat"
    assert block_titles(page) == ["🔧 calculate · waiting"]
    page.locator("#chat-tool-run").click()
    wait_for_complete_reply(page)
    page.locator(APPROVAL).wait_for(state="hidden")
    assert block_titles(page) == ["🔧 calculate"]
    # the round limit (1) was reached: the answer was written without tools, and the page says so
    wait_text(page, "#chat-tool-note", "limit of 1 rounds")
    chat = saved_chat(server, "What is 6 times 7?", 1)
    call = next(m for m in chat["messages"] if m.get("tool_calls"))["tool_calls"][0]
    result = next(m for m in chat["messages"] if m["role"] == "tool")
    assert call["function"]["name"] == "calculate" and result["status"] == "done" and chat["force_tool"] is True
    expression = json.loads(call["function"]["arguments"])["expression"]
    page.locator(f"{BLOCK} .title").first.click()  # open the block
    wait_text(page, BLOCK, "Result")
    shown = page.locator(BLOCK).first.inner_text()
    assert "Arguments" in shown and expression in shown and result["content"] in shown
    answer = page.locator("#chat-box [data-testid=bot]").last.inner_text()
    # the answer is a reply of its own after the block (its Markdown shown rendered)
    assert answer.strip() and answer.split()[0] in chat["messages"][-1]["content"] and "Arguments" not in answer

    # 2. Skip: the block says so, and the model answers without the result
    ask(page, "What is 12 plus 30?")
    page.locator("#chat-tool-skip").click()
    wait_for_complete_reply(page)
    page.wait_for_function(
        "(sel) => [...document.querySelectorAll(sel)].length === 2", arg=f"{BLOCK} .title", timeout=60_000
    )
    assert block_titles(page) == ["🔧 calculate", "🔧 calculate · skipped"]
    chat = saved_chat(server, "What is 12 plus 30?", 2)
    assert [m["status"] for m in chat["messages"] if m["role"] == "tool"] == ["done", "skipped"]

    # 3. A reload (the chat file) brings the same blocks back
    reload(page)
    open_chat(page)
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length === 2", arg=f"{BLOCK} .title")
    assert block_titles(page) == ["🔧 calculate", "🔧 calculate · skipped"]
    assert not page.locator(APPROVAL).is_visible()
    page.locator("#chat-tools .label-wrap").first.click()
    assert page.locator("#chat-tools-list label", has_text="calculate").locator("input").is_checked()
    assert page.locator("#chat-tools-force input[type=checkbox]").is_checked()

    # 4. Always allow: runs now, and the chat keeps the permission
    ask(page, "What is 5 times 5?")
    page.locator("#chat-tool-always").click()
    wait_for_complete_reply(page)
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length === 3", arg=f"{BLOCK} .title")
    chat = saved_chat(server, "What is 5 times 5?", 3)
    assert chat["tools_always"] == ["calculate"]
    assert [m["status"] for m in chat["messages"] if m["role"] == "tool"] == ["done", "skipped", "done"]
