"""Each user's own language and chat window, in real Chromium against the real server.py with log-in
(issue 20: "settings (parameter values, chosen preset, language, chat window)" are each user's).

Bob picks Русский in the language menu at the top and shows only 2 messages in his chat box; the page
switches at once (no reload), the server's run-time texts follow, both hold through a reload and a
restart, and Alice, logged in at the same time with the same English browser, sees none of it.
"""

from __future__ import annotations

from typing import Any

import pytest

from browserkit import choose, reload, wait_text
from harness import make_dirs, start_server, stop_server
from userkit import ALICE, BOB, close_page, lab_users, log_in_page

pytestmark = pytest.mark.browser

MESSAGES = 6  # three exchanges in each person's chat


def seed_chats(user_dir: Any) -> None:
    from webui.accounts.names import user_folder
    from webui.chat.history import ChatStore, Message

    for who, folder in (("alice", user_dir), ("bob", user_dir / "users" / user_folder("bob"))):
        store = ChatStore(folder / "logs" / "chats")
        chat = store.new("Assistant")
        chat.messages = [
            Message(role, f"{who} {role} line {i}") for i in range(MESSAGES // 2) for role in ("user", "assistant")
        ]
        chat.title = f"{who}'s chat"
        store.save(chat)


def lab_folders(root: Any) -> tuple[Any, Any]:
    """Folders with Alice (admin) and Bob (user), each with one chat of MESSAGES messages."""
    model_dir, user_dir = make_dirs(root)
    lab_users(user_dir)
    seed_chats(user_dir)
    return model_dir, user_dir


def messages_shown(page: Any) -> int:
    """The chat's messages in the box (a line about earlier messages, shown as the bot's, not counted)."""
    texts = page.locator("#chat-box [data-testid=user], #chat-box [data-testid=bot]").all_inner_texts()
    return sum(1 for text in texts if " line " in text)


def wait_for_language(page: Any, lang: str) -> None:
    try:
        page.wait_for_function("(l) => document.body.dataset.webuiLanguage === l", arg=lang)
    except Exception as exc:
        shown = page.evaluate(
            "() => [document.documentElement.lang, document.body.dataset.webuiLanguage,"
            " (document.querySelector('#ui-language input') || {}).value]"
        )
        raise AssertionError(
            f"the page never showed {lang!r}: <html lang>, data-webui-language, menu = {shown}"
        ) from exc


def assert_bobs_choices(page: Any) -> None:
    """Russian texts (static and run-time), 2 messages after the earlier-messages line, the menu and box set."""
    wait_for_language(page, "ru")
    page.get_by_role("tab", name="Параметры").wait_for()
    page.get_by_role("tab", name="Чат").click()
    wait_text(page, "#chat-box", "Ещё 4 более ранних сообщений")  # the server's text, in his language
    assert messages_shown(page) == 2
    assert page.locator("#ui-language input").input_value() == "Русский"
    assert float(page.locator("#chat-window input").input_value()) == 2


def assert_alices_unchanged(page: Any) -> None:
    page.get_by_role("tab", name="Parameters").wait_for()
    page.get_by_role("tab", name="Chat").click()
    wait_text(page, "#chat-box", "alice assistant line 2")
    assert messages_shown(page) == MESSAGES
    assert "earlier" not in page.locator("#chat-box").inner_text()
    assert page.locator("#ui-language input").input_value().startswith("Auto")


def test_each_user_keeps_their_own_language_and_chat_window(browser, tmp_path):
    model_dir, user_dir = lab_folders(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        alice = log_in_page(browser, srv.url, *ALICE)
        bob = log_in_page(browser, srv.url, *BOB)

        choose(bob, "ui-language", "Русский")
        wait_for_language(bob, "ru")
        wait_text(bob, "#model-status", "Модель не загружена")  # a status line the server wrote is written again
        bob.get_by_role("tab", name="Параметры").click()  # switched in place: no reload
        # a text the server makes at run time comes in his language too
        choose(bob, "preset-dropdown", "Creative")
        wait_text(bob, "#preset-message", "Загружен пресет")

        bob.get_by_role("tab", name="Чат").click()
        box = bob.locator("#chat-window input")
        box.fill("2")
        box.press("Enter")
        wait_text(bob, "#chat-box", "Ещё 4 более ранних сообщений")
        assert messages_shown(bob) == 2

        reload(bob)
        assert_bobs_choices(bob)
        reload(alice)
        assert_alices_unchanged(alice)
        for page in (alice, bob):
            close_page(page)
    finally:
        stop_server(srv)

    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        bob = log_in_page(browser, srv.url, *BOB)
        assert_bobs_choices(bob)
        alice = log_in_page(browser, srv.url, *ALICE)
        assert_alices_unchanged(alice)
        for page in (alice, bob):
            close_page(page)
    finally:
        stop_server(srv)


def test_a_wrong_chat_window_is_refused_and_the_box_keeps_showing(browser, tmp_path):
    model_dir, user_dir = lab_folders(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        bob = log_in_page(browser, srv.url, *BOB)
        bob.get_by_role("tab", name="Chat").click()
        wait_text(bob, "#chat-box", "bob assistant line 2")
        box = bob.locator("#chat-window input")
        box.fill("-3")
        box.press("Enter")
        wait_text(bob, ".toast-body", "-3")  # an error pop-up (Gradio's own check of the minimum)
        assert messages_shown(bob) == MESSAGES
        close_page(bob)
    finally:
        stop_server(srv)
    saved = user_dir / "users" / "bob" / "settings.yaml"
    assert not saved.is_file() or "chat_window" not in saved.read_text(encoding="utf-8")
