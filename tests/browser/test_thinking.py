"""A reasoning model's thinking in the Chat tab, on real SmolLM2 in Chromium: a collapsible "Thinking"
block above the reply, kept after a reload, and the per-chat Thinking switch.

SmolLM2 does not think by itself: the chat uses an instruction template whose generation prompt
opens ``<think>`` unless ``enable_thinking`` is false (as Qwen3's does), and "Start reply with" ends
the thinking, so the model writes the answer after it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from browserkit import choose, new_greedy_chat, open_chat, reload, send
from harness import Server, make_dirs, start_server, stop_server, wait_until
from testdata import PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.browser

THINKING_TEMPLATE = """instruction_template: |-
  {%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
  {%- endfor -%}
  {%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\\n' -}}
    {%- if enable_thinking is defined and enable_thinking is false -%}
      {{- '<think>\\n\\n</think>\\n\\n' -}}
    {%- else -%}
      {{- '<think>\\n' -}}
    {%- endif -%}
  {%- endif -%}
"""
PLAN = "Plan: one short sentence."
BOT = "#chat-box [data-testid=bot]"
THOUGHT = "#chat-box .thought-group"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """server.py with SmolLM2 loaded and a thinking ChatML template among the instruction templates."""
    root = tmp_path_factory.mktemp("server")
    model_dir, user_dir = make_dirs(root)
    shutil.copytree(PROJECT_DIR / "instruction-templates", user_dir / "instruction-templates")
    (user_dir / "instruction-templates" / "ChatML-Think.yaml").write_text(THINKING_TEMPLATE)
    srv = start_server(root, model_dir, user_dir, "--model", SMOLLM)
    yield srv
    stop_server(srv)


def saved_reply(server: Server, question: str) -> tuple[dict, dict]:
    """(the chat file, the reply to ``question``) once the reply is saved with its stats."""
    folder = server.user_dir / "logs" / "chats" / "Assistant"

    def find() -> tuple[dict, dict] | None:
        for path in folder.glob("*.json"):
            chat = json.loads(path.read_text())
            messages = chat.get("messages", [])
            for ask, reply in zip(messages, messages[1:], strict=False):
                if ask["content"] == question and reply.get("stats"):
                    return chat, reply
        return None

    return wait_until(find, f"saving the reply to {question!r}")


def shown_replies(page) -> list[str]:
    """The texts of the bot entries that are replies (not Thinking blocks)."""
    return page.locator(BOT).evaluate_all(
        "els => els.filter(e => !e.querySelector('.thought-group')).map(e => e.innerText)"
    )


def test_thinking_shows_in_its_own_block_survives_a_reload_and_can_be_switched_off(page, server):
    new_greedy_chat(page, server, max_tokens=16)
    assert not page.locator("#chat-thinking").is_visible()  # the model's own template has no switch
    choose(page, "chat-template", "ChatML-Think")
    page.locator("#chat-thinking").wait_for(state="visible")
    assert page.locator("#chat-thinking input[type=checkbox]").is_checked()

    page.locator("#chat-start-with textarea, #chat-start-with input").first.fill(f"{PLAN}</think>")
    send(page, "What is the capital of France?")
    # one Thinking block, then the answer, each apart: no marker and no thinking in the answer
    assert page.locator(THOUGHT).count() == 1
    title = page.locator(f"{THOUGHT} .title")
    assert title.inner_text().strip() == "Thinking"
    answer = shown_replies(page)[-1]
    assert "Paris" in answer and "think>" not in answer and PLAN not in answer
    assert PLAN not in page.locator(THOUGHT).inner_text()  # collapsed once the answer came
    title.click()
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText.includes(text)", arg=[THOUGHT, PLAN])
    assert "think>" not in page.locator(THOUGHT).inner_text()

    chat, reply = saved_reply(server, "What is the capital of France?")
    assert reply["reasoning"] == PLAN and "Paris" in reply["content"] and "think" not in reply["content"]
    assert chat["instruction_template"] == "ChatML-Think" and chat["thinking"] is True

    reload(page)
    open_chat(page)
    page.locator(THOUGHT).wait_for()
    assert page.locator(THOUGHT).count() == 1 and shown_replies(page)[-1] == answer
    page.locator(f"{THOUGHT} .title").click()
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText.includes(text)", arg=[THOUGHT, PLAN])

    # Thinking off for this chat: the template closes the block itself, the model answers at once
    page.locator("#chat-thinking").wait_for(state="visible")
    page.locator("#chat-thinking input[type=checkbox]").uncheck()
    page.locator("#chat-start-with textarea, #chat-start-with input").first.fill("")
    send(page, "What is the capital of Italy?")
    assert page.locator(THOUGHT).count() == 1  # still only the first reply's
    chat, reply = saved_reply(server, "What is the capital of Italy?")
    assert chat["thinking"] is False and not reply.get("reasoning") and reply["content"].strip()

    reload(page)  # the chat's switch comes back as it was left
    open_chat(page)
    page.locator("#chat-thinking").wait_for(state="visible")
    assert not page.locator("#chat-thinking input[type=checkbox]").is_checked()
