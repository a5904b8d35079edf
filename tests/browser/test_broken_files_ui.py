"""Files in the user-data folder broken by hand (a character, an instruction template), picked in the Chat
tab: the pick is refused with its reason on the page, the dropdown goes back to what is in force, and the
chat goes on working. Found by hand: a broken character left the dropdown on it, the chat box showed an
Error badge and every Send failed on that file; a broken template said nothing at all and was saved as
the model's template and into the chat. Real SmolLM2, real Chromium."""

from __future__ import annotations

import json
import shutil

import pytest

from browserkit import bot_texts, choose, open_chat, open_parameters, send, set_number, settle, wait_text
from harness import make_dirs, start_server, stop_server
from testdata import PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.browser


def value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input").input_value()


def wait_value(page, elem_id: str, expected: str) -> None:
    page.wait_for_function(
        "([id, v]) => { const el = document.querySelector(`#${id} input`); return el && el.value === v; }",
        arg=[elem_id, expected],
    )


def close_pop_ups(page) -> None:
    for button in page.locator("[data-testid=toast-close]").all():
        button.click()


def test_a_broken_character_or_template_is_refused_with_its_reason_and_the_chat_goes_on(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    (user_dir / "characters").mkdir(parents=True, exist_ok=True)
    (user_dir / "characters" / "Bad.yaml").write_text("name: Bad\ncontext: [oops\n")
    shutil.copytree(PROJECT_DIR / "instruction-templates", user_dir / "instruction-templates")  # + the shipped
    (user_dir / "instruction-templates" / "BadTpl.yaml").write_text(
        "instruction_template: |-\n  {% for m in messages %}{{ m.content }\n"
    )
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(srv.url + "/")
        settle(page)
        open_parameters(page)
        set_number(page, "param-max_tokens", "8")
        open_chat(page)
        character = value(page, "chat-character")

        choose(page, "chat-character", "Bad")
        wait_text(page, "#chat-creator-notes", "Bad.yaml is not valid YAML")
        assert "the end of the file at line 3" in page.locator("#chat-creator-notes").inner_text()
        wait_value(page, "chat-character", character)
        close_pop_ups(page)  # (the pop-up lies over the template dropdown)

        choose(page, "chat-template", "Alpaca")
        wait_text(page, "#chat-template-note", "Alpaca")
        choose(page, "chat-template", "BadTpl")
        wait_text(page, "#chat-template-note", "Chat template 'BadTpl' has a syntax error on line 1")
        assert "Using instruction template Alpaca" in page.locator("#chat-template-note").inner_text()
        wait_value(page, "chat-template", "Alpaca")
        close_pop_ups(page)

        send(page, "Hello there")
        assert len(bot_texts(page)) >= 1 and page.locator("#chat-box .error").count() == 0
        settings = (user_dir / "settings.yaml").read_text()
        assert "BadTpl" not in settings and "Alpaca" in settings
        chats = [json.loads(p.read_text()) for p in (user_dir / "logs" / "chats").rglob("*.json")]
        sent = [c for c in chats if any(m["content"] == "Hello there" for m in c["messages"])]
        assert sent and sent[0]["instruction_template"] == "Alpaca"

        # Refused in the chat's saved set-up too: a reload does not bring the broken template back.
        choose(page, "chat-template", "BadTpl")
        wait_text(page, "#chat-template-note", "Chat template 'BadTpl' has a syntax error")
        page.wait_for_timeout(1500)  # (the set-up saves of the pick, if any, have landed)
        page.reload()
        settle(page)
        open_chat(page)
        wait_value(page, "chat-template", "Alpaca")
        assert "BadTpl" not in (user_dir / "settings.yaml").read_text()
    finally:
        context.close()
        stop_server(srv)
