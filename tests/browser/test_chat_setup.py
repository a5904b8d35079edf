"""A chat's set-up (system prompt, mode, persona, instruction template) survives a reload and a
restart, each chat keeps its own, and a new chat starts with the last one used; the Compare tab's
inputs survive too; the character editor never drops unsaved edits without a word (issue 16,
item 2), and the branch box is empty when it means "all" (item 10). Real SmolLM2, real Chromium.

With ``WEBUI_DOC_SCREENSHOTS=1`` the first test also saves pictures for docs/first-steps.md
(docs/img/first-steps-system-prompt.png, first-steps-restored.png; 1280x800); without it (CI) the
docs are left alone.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from playwright.sync_api import expect

from browserkit import (
    choose,
    open_chat,
    open_parameters,
    send,
    set_number,
    settle,
    wait_for_complete_reply,
    wait_text,
)
from harness import make_dirs, start_server, stop_server, wait_until
from testdata import PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.browser

DOCS_IMG = PROJECT_DIR / "docs" / "img"
#: The set-up of the chat the student works in ...
RULES = "You are a patient physics tutor. Answer in two sentences."
NAME, BIO = "Ada", "A first-year student."
#: ... and of an older chat, set up differently.
OLD_RULES = "Reply like a pirate."


def picture(page, name: str) -> None:
    """docs/img/first-steps-NAME.png when WEBUI_DOC_SCREENSHOTS=1 (the top of the page)."""
    if os.environ.get("WEBUI_DOC_SCREENSHOTS") != "1":
        return
    page.evaluate("() => window.scrollTo(0, 0)")
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    path = DOCS_IMG / f"first-steps-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size < 300_000, f"{path} is {path.stat().st_size} bytes: keep the docs light"


def new_page(browser, url: str):
    """A page of the size the walkthrough's screenshots are taken at."""
    page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/")
    settle(page)
    return page


def field(page, elem_id: str):
    """The text box of a gr.Textbox (an <input> or a <textarea>, by its line count)."""
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


def set_up(page, *, rules: str, mode: str, name: str, bio: str, template: str) -> None:
    field(page, "chat-system").fill(rules)
    page.get_by_label(mode, exact=True).check()
    field(page, "chat-user-name").fill(name)
    field(page, "chat-user-bio").fill(bio)
    choose(page, "chat-template", template)


def expect_setup(page, *, rules: str, mode: str, name: str, bio: str, template: str) -> None:
    expect(field(page, "chat-system")).to_have_value(rules)
    expect(page.get_by_label(mode, exact=True)).to_be_checked()
    expect(field(page, "chat-user-name")).to_have_value(name)
    expect(field(page, "chat-user-bio")).to_have_value(bio)
    expect(page.locator("#chat-template input")).to_have_value(template)


def chat_files(user_dir) -> list[dict]:
    folder = user_dir / "logs" / "chats" / "Assistant"
    return [json.loads(p.read_text()) for p in folder.glob("*.json") if not p.name.startswith(".")]


def test_the_chat_setup_survives_reload_and_restart_and_each_chat_keeps_its_own(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        page = new_page(browser, srv.url)
        open_parameters(page)
        set_number(page, "param-max_tokens", "16")
        open_chat(page)
        # An older chat, set up differently.
        set_up(page, rules=OLD_RULES, mode="instruct", name="Old me", bio="", template="(model's own template)")
        send(page, "Old chat: where is the ship?")
        # The chat the student works in.
        page.locator("#chat-new").click()
        page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 0")
        set_up(page, rules=RULES, mode="chat-instruct", name=NAME, bio="", template="Alpaca")
        picture(page, "system-prompt")
        send(page, "What is inertia?")
        # A change after the turn is saved into the open chat as it happens.
        field(page, "chat-user-bio").press_sequentially(BIO)  # typed
        wait_until(
            lambda: any(c.get("persona_bio") == BIO for c in chat_files(user_dir)), "saving the persona", timeout=30
        )
        ours = dict(rules=RULES, mode="chat-instruct", name=NAME, bio=BIO, template="Alpaca")
        old = dict(rules=OLD_RULES, mode="instruct", name="Old me", bio="", template="(model's own template)")
        saved = {c["messages"][0]["content"]: c for c in chat_files(user_dir)}
        assert saved["What is inertia?"]["system_prompt"] == RULES
        assert saved["What is inertia?"]["instruction_template"] == "Alpaca"
        assert saved["Old chat: where is the ship?"]["system_prompt"] == OLD_RULES

        page.reload()
        settle(page)
        open_chat(page)
        wait_text(page, "#chat-box", "What is inertia?")
        expect_setup(page, **ours)
        page.context.close()
    finally:
        stop_server(srv)

    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        page = new_page(browser, srv.url)
        open_chat(page)
        wait_text(page, "#chat-box", "What is inertia?")
        expect_setup(page, **ours)
        picture(page, "restored")

        # The older chat, picked in the list, shows its own set-up ...
        page.locator("#chat-list input").click()
        page.get_by_role("option", name=re.compile(r"^Old chat: where is the ship\?")).click()
        wait_text(page, "#chat-box", "where is the ship")
        expect_setup(page, **old)
        # ... and the newer one its own again.
        page.locator("#chat-list input").click()
        page.get_by_role("option", name=re.compile(r"^What is inertia\?")).click()
        wait_text(page, "#chat-box", "What is inertia?")
        expect_setup(page, **ours)
        # Branch with the box at 0 (its hint: all): every message, and the set-up, go to the branch.
        expect(page.locator("#chat-branch-at input")).to_have_value("0")
        page.locator("#chat-branch").click()
        page.wait_for_function("() => document.querySelector('#chat-list input').value.includes('(branch)')")
        branch = next(c for c in chat_files(user_dir) if c["title"].endswith("(branch)"))
        assert len(branch["messages"]) == len(saved["What is inertia?"]["messages"])
        assert branch["system_prompt"] == RULES
        expect_setup(page, **ours)
        # A new chat starts with the set-up used last.
        page.locator("#chat-new").click()
        page.wait_for_function("() => !document.querySelector('#chat-box').innerText.includes('What is inertia?')")
        expect_setup(page, **ours)
        page.context.close()
    finally:
        stop_server(srv)


def open_compare(page) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-prompt textarea").wait_for()


def pick(page, dropdown_id: str, option: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.locator(f"#{dropdown_id}").get_by_role("option", name=option, exact=True).click()


def test_the_compare_prompt_and_rows_survive_reload_and_restart(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)

    def expect_compare(page) -> None:
        expect(page.locator("#compare-prompt textarea")).to_have_value("Why is the sky blue?")
        expect(page.locator("#compare-system textarea")).to_have_value("One sentence.")
        expect(page.locator("#compare-mode input[value=presets]")).to_be_checked()
        expect(page.locator("#compare-model-0 input")).to_have_value(SMOLLM)
        expect(page.locator("#compare-preset-0 input")).to_have_value("Technical")
        expect(page.locator("#compare-preset-1 input")).to_have_value("Creative")
        expect(page.locator("#compare-model-1")).to_be_hidden()  # the presets mode's layout

    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        page = new_page(browser, srv.url)
        open_compare(page)
        page.locator("#compare-mode label", has_text="Presets").click()
        pick(page, "compare-model-0", SMOLLM)
        pick(page, "compare-preset-0", "Technical")
        pick(page, "compare-preset-1", "Creative")
        page.locator("#compare-system textarea").fill("One sentence.")
        page.locator("#compare-prompt textarea").press_sequentially("Why is the sky blue?")  # typed
        settings = user_dir / "settings.yaml"
        wait_until(lambda: settings.exists() and "Why is the sky blue?" in settings.read_text(), "saving", timeout=30)
        page.reload()
        settle(page)
        open_compare(page)
        expect_compare(page)
        page.context.close()
    finally:
        stop_server(srv)
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        page = new_page(browser, srv.url)
        open_compare(page)
        expect_compare(page)
        page.context.close()
    finally:
        stop_server(srv)


def test_switching_character_keeps_unsaved_editor_edits_and_a_reload_asks_first(page, server):
    open_chat(page)
    page.get_by_text("Character editor").click()
    # the editor shows the picked character from the start
    expect(field(page, "char-file")).to_have_value("Assistant")
    field(page, "char-context").click()
    field(page, "char-context").press_sequentially("Always cite a textbook. ")
    typed = field(page, "char-context").input_value()
    choose(page, "chat-character", "Tutor")
    expect(page.get_by_text("unsaved edits to Assistant")).to_be_visible()
    expect(field(page, "char-context")).to_have_value(typed)  # kept
    expect(field(page, "char-file")).to_have_value("Assistant")
    page.locator("#char-discard").click()
    expect(field(page, "char-file")).to_have_value("Tutor")
    assert "Always cite a textbook" not in field(page, "char-context").input_value()
    # the discard's follow-up marks the editor clean in the page; wait for it, so it cannot land after
    # the edit below and clear that edit's mark
    page.wait_for_function("() => window.webuiUnsavedCharacter === false")

    # unsaved edits: closing (or reloading) the page asks first
    field(page, "char-greeting").click()
    field(page, "char-greeting").press_sequentially("Hi!")
    page.wait_for_function("() => window.webuiUnsavedCharacter === true")
    page.on("dialog", lambda dialog: dialog.dismiss())  # "stay on the page"
    page.evaluate("() => 0")  # Playwright subscribes without waiting; this round trip does
    with page.expect_event("dialog") as asked:
        page.close(run_before_unload=True)
    assert asked.value.type == "beforeunload"


def test_the_branch_box_and_its_hint_agree(page, server):
    """Gradio's number box shows 0 for an empty value: the hint says 0 means all (it said "empty: all")."""
    open_chat(page)
    expect(page.locator("#chat-branch-at input")).to_have_value("0")
    expect(page.locator("#chat-branch-at")).to_contain_text("0: all of them")


def test_a_system_prompt_typed_while_the_reply_streams_is_the_one_the_chat_keeps(browser, tmp_path):
    """The turn holds the chat and saves it as the reply grows; those saves carried the set-up the message
    was sent with, so a system prompt changed meanwhile was on disk a moment and then put back: a reload
    showed the old one (found by trying it in a browser)."""
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        page = new_page(browser, srv.url)
        open_parameters(page)
        set_number(page, "param-max_tokens", "400")
        page.locator("#param-ban_eos_token input[type=checkbox]").check()  # a reply long enough to type during
        open_chat(page)
        field(page, "chat-system").fill(OLD_RULES)
        box = page.locator("#chat-input textarea")
        box.fill("Tell me a long story about a ship.")
        box.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length > 0")
        field(page, "chat-system").fill("")
        field(page, "chat-system").press_sequentially(RULES)
        box.click()  # leave the box
        wait_until(lambda: any(c.get("system_prompt") == RULES for c in chat_files(user_dir)), "saving it", 30)
        # the test means something only if the reply was still being written (and saved) after that
        assert "generating" in (page.locator("#chat-send").get_attribute("class") or "")
        wait_for_complete_reply(page)
        [saved] = chat_files(user_dir)
        assert saved["system_prompt"] == RULES
        assert saved["messages"][-1]["role"] == "assistant" and saved["messages"][-1]["content"]

        page.reload()
        settle(page)
        open_chat(page)
        wait_text(page, "#chat-box", "a long story about a ship")
        expect(field(page, "chat-system")).to_have_value(RULES)
        page.context.close()
    finally:
        stop_server(srv)
