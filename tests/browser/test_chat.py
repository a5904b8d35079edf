"""The Chat tab as a person uses it, on real SmolLM2 in Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browserkit import (
    bot_texts,
    choose,
    new_greedy_chat,
    open_app,
    open_chat,
    open_parameters,
    press_load,
    reload,
    send,
    set_number,
    wait_for_complete_reply,
    wait_text,
)
from harness import make_dirs, start_server, stop_server, wait_until
from testdata import SMOLLM

pytestmark = pytest.mark.browser

BOT = "#chat-box .message-row.bot-row, #chat-box [data-testid=bot]"
USER = "#chat-box [data-testid=user]"


def start_long_reply(page, prompt: str, max_tokens: str, min_chars: int) -> None:
    """Ask for a long reply and wait until it is well under way (for Stop and kill tests)."""
    open_parameters(page)
    set_number(page, "param-max_tokens", max_tokens)
    open_chat(page)
    box = page.locator("#chat-input textarea")
    box.fill(prompt)
    box.press("Enter")
    page.wait_for_function(
        "(n) => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
        " return b.length > 0 && b[b.length - 1].innerText.length > n; }",
        arg=min_chars,
    )


#: The damaged chat file a test writes on purpose (the module's server is shared).
DAMAGED = "20200101-000000-bad000.json"


def saved_chats(server) -> list[dict]:
    folder = server.user_dir / "logs" / "chats" / "Assistant"
    files = [p for p in sorted(folder.glob("*.json")) if not p.name.startswith(".") and p.name != DAMAGED]
    return [json.loads(p.read_text()) for p in files]


def open_editor(page) -> None:
    """Open the character editor and wait until it shows the chat's character: text typed while the opened
    editor first draws its boxes was seen replaced by the character's own (then saved over it)."""
    page.get_by_text("Character editor").click()
    shown = page.locator("#chat-character input").input_value()
    expect(page.locator("#char-file input, #char-file textarea").first).to_have_value(shown)


@pytest.fixture
def chat_page(page, server):
    return new_greedy_chat(page, server, max_tokens=40)


def test_send_regenerate_versions_edit_and_reload(chat_page, server):
    page = chat_page
    send(page, "What is the capital of France? Answer in one sentence.")
    assert "Paris" in bot_texts(page)[-1]
    # the last reply's stats in the line under the box (kept out of the message: the edit box, Copy)
    assert "tokens/s" in page.locator("#chat-reply-stats").inner_text()
    assert "tokens/s" not in bot_texts(page)[-1]
    assert page.locator("#chat-input textarea").input_value() == ""

    # regenerate with sampling on: a second version appears, arrows switch between them
    open_parameters(page)
    page.locator("#param-do_sample input[type=checkbox]").check()
    set_number(page, "param-seed", "7")
    open_chat(page)
    page.locator("#chat-regenerate").click()
    # the stats line (ending with the seed) comes when the new version is complete
    page.wait_for_function(
        "() => { const s = document.querySelector('#chat-reply-stats');"
        " return s && s.innerText.trim().endsWith('seed 7'); }"
    )
    assert "version 2 of 2" in page.locator("#chat-reply-stats").inner_text()
    page.locator("#chat-prev-version").click()
    wait_text(page, "#chat-reply-stats", "version 1 of 2")
    assert "Paris" in bot_texts(page)[-1]
    assert not page.locator("#chat-reply-stats").inner_text().strip().endswith("seed 7")  # version 1's own figures

    chat = [c for c in saved_chats(server) if c["messages"] and c["messages"][0]["content"].startswith("What is")][0]
    assert len(chat["messages"][1]["versions"]) == 2 and chat["messages"][1]["active"] == 0
    assert [s["seed"] == 7 for s in chat["messages"][1]["stats_versions"]] == [False, True]

    # reload: the open chat comes back as it was
    reload(page)
    open_chat(page)
    wait_text(page, "#chat-reply-stats", "version 1 of 2")
    assert "What is the capital of France? Answer in one sentence." in page.locator("#chat-box").inner_text()


def test_stop_keeps_the_partial_reply_and_remove_last(chat_page, server):
    page = chat_page
    start_long_reply(page, "Write a very long story about a dragon.", "1000", 60)
    page.keyboard.press("Escape")
    wait_for_complete_reply(page)
    partial = bot_texts(page)[-1]
    assert len(partial) > 60
    chats = [c for c in saved_chats(server) if c["messages"] and "dragon" in c["messages"][0]["content"]]
    reply = chats[0]["messages"][1]
    assert reply["stats"]["finish_reason"] == "cancelled" and reply["content"][:40] in partial

    page.locator("#chat-remove").click()
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 0")
    assert page.locator("#chat-input textarea").input_value() == "Write a very long story about a dragon."


def test_characters_switch_chats_and_greeting(chat_page, server):
    page = chat_page
    send(page, "Hello!")
    page.wait_for_function("() => document.querySelector('#chat-list input').value.startsWith('Hello!')")
    first_chat = page.locator("#chat-list input").input_value()
    choose(page, "chat-character", "Tutor")
    wait_text(page, "#chat-box", "What would you like to learn about today?")  # the greeting opens the chat
    send(page, "What is a prime number?")
    tutor_files = list((server.user_dir / "logs" / "chats" / "Tutor").glob("*.json"))
    assert len(tutor_files) == 1
    reload(page)  # the character and its open chat come back with the page
    open_chat(page)
    wait_text(page, "#chat-box", "What is a prime number?")
    assert page.locator("#chat-character input").input_value() == "Tutor"
    choose(page, "chat-character", "Assistant")
    wait_text(page, "#chat-box", "Hello!")
    assert page.locator("#chat-list input").input_value() == first_chat


def test_edit_a_message_in_place_keeps_what_follows(chat_page, server):
    page = chat_page
    send(page, "Tell me about cats.")
    reply = bot_texts(page)[-1]
    page.locator("#chat-box button[aria-label=Edit]").first.click()
    page.locator("#chat-box textarea").first.fill("Tell me about dogs.")
    page.locator("#chat-box button[aria-label=Submit]").click()
    wait_text(page, "#chat-box", "Tell me about dogs.")
    # the box shows the edit at once; the server writes it a moment later
    chats = wait_until(
        lambda: [c for c in saved_chats(server) if c["messages"] and "dogs" in c["messages"][0]["content"]],
        "saving the edit",
    )
    assert len(chats) == 1 and len(chats[0]["messages"]) == 2  # the reply after it is still there
    assert chats[0]["messages"][1]["content"][:30] in reply


def test_killed_server_keeps_the_chat_and_a_restart_reopens_it(browser, tmp_path):
    import signal

    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        page = open_app(browser, srv.url)
        start_long_reply(page, "Write a very long story about a lighthouse keeper.", "1500", 80)
        srv.process.send_signal(signal.SIGKILL)  # mid-reply
        srv.process.wait(10)
        page.close()
    finally:
        if srv.process.poll() is None:
            stop_server(srv)
    files = [p for p in (user_dir / "logs" / "chats" / "Assistant").glob("*.json") if not p.name.startswith(".")]
    assert len(files) == 1
    saved = json.loads(files[0].read_text())  # valid JSON, whatever moment the kill hit
    assert saved["messages"][0]["content"] == "Write a very long story about a lighthouse keeper."

    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        page = open_app(browser, srv.url)
        open_chat(page)
        wait_text(page, "#chat-box", "lighthouse keeper")
        page.close()
    finally:
        stop_server(srv)


def test_character_editor_modes_and_chat_management(chat_page, server):
    page = chat_page
    # create a character with few-shot examples in the editor
    open_editor(page)
    page.locator("#char-file input, #char-file textarea").first.fill("Pirate")
    page.locator("#char-name input, #char-name textarea").first.fill("Pirate")
    page.locator("#char-greeting textarea").fill("Ahoy {{user}}!")
    page.locator("#char-context textarea").fill("{{char}} is a friendly pirate who talks like one.")
    page.locator("#char-examples textarea").fill("{{user}}: Hello\n{{char}}: Arr, hello matey!")
    page.locator("#char-save").click()
    wait_text(page, "#char-message", "Saved character Pirate")
    folder = server.user_dir / "characters"
    file = wait_until(
        lambda: (folder / "Pirate.yaml").is_file() and folder / "Pirate.yaml",
        f"Pirate.yaml in {folder} (it holds {sorted(p.name for p in folder.glob('*'))}; the page says "
        f"{page.locator('#char-message').inner_text()!r})",
    )
    saved = file.read_text()
    assert "friendly pirate" in saved and "matey" in saved
    # a new character opens at once: the menu and the chat box never show two different characters
    wait_text(page, "#chat-box", "Ahoy You!")
    assert page.locator("#chat-character input").input_value() == "Pirate"

    choose(page, "chat-character", "Pirate")
    wait_text(page, "#chat-box", "Ahoy You!")
    page.get_by_label("chat", exact=True).check()  # chat mode: a transcript with names
    send(page, "Where is the treasure?")
    before = [bot_texts(page)[-1], page.locator("#chat-reply-stats").inner_text()]
    page.locator("#chat-continue").click()
    # the reply grows, or at least its stats are new (the model may end the reply at once)
    page.wait_for_function(
        "([t, s]) => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
        " const now = document.querySelector('#chat-reply-stats').innerText;"
        " return b[b.length - 1].innerText !== t || (now !== s && now.includes('tokens/s')); }",
        arg=before,
    )
    wait_for_complete_reply(page)
    page.locator("#chat-impersonate").click()
    page.wait_for_function("() => document.querySelector('#chat-input textarea').value.length > 0")
    # the model writes into the box until its turn ends: clear it after that, not while it still writes
    page.wait_for_function(
        "() => !document.querySelector('#chat-send').classList.contains('generating')", timeout=180_000
    )
    page.locator("#chat-input textarea").fill("")

    # rename, branch, delete
    page.locator("#chat-title input, #chat-title textarea").first.fill("Treasure hunt")
    page.locator("#chat-rename").click()
    page.wait_for_function("() => document.querySelector('#chat-list input').value.startsWith('Treasure hunt')")
    page.locator("#chat-branch-at input").fill("2")
    page.locator("#chat-branch").click()
    page.wait_for_function("() => document.querySelector('#chat-list input').value.includes('(branch)')")
    folder = server.user_dir / "logs" / "chats" / "Pirate"
    branches = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert sorted(len(c["messages"]) for c in branches) == [2, 3]
    page.locator("#chat-delete").click()
    page.locator("#chat-delete-confirm").click()
    # the branch's title starts with 'Treasure hunt' too: wait for the list to leave the branch
    page.wait_for_function(
        "() => { const v = document.querySelector('#chat-list input').value;"
        " return v.startsWith('Treasure hunt') && !v.includes('(branch)'); }"
    )
    wait_until(
        lambda: len(list(folder.glob("*.json"))) == 1,
        f"one chat left in {folder} after deleting the branch (it holds {sorted(p.name for p in folder.glob('*'))})",
    )


def test_remote_loader_from_the_model_tab_streams_a_chat(browser, tmp_path):

    peer_root, ui_root = tmp_path / "peer", tmp_path / "ui"
    peer_root.mkdir()
    ui_root.mkdir()
    peer = start_server(peer_root, *make_dirs(peer_root), "--api-key", "peer", "--model", SMOLLM)
    ui = start_server(ui_root, *make_dirs(ui_root))
    try:
        page = open_app(browser, ui.url)
        choose(page, "loader-dropdown", "remote")
        page.locator("#opt-remote_url textarea, #opt-remote_url input").first.fill(peer.url)
        page.locator("#opt-remote_key textarea, #opt-remote_key input").first.fill("peer")
        page.locator("#opt-remote_key textarea, #opt-remote_key input").first.press("Tab")
        # the model list comes from the server's /v1/models: pick SmolLM2 from it
        choose(page, "opt-remote_model", SMOLLM)
        press_load(page, "on remote")
        assert ui.health()["loader"] == "remote"
        open_parameters(page)
        set_number(page, "param-max_tokens", "40")
        page.locator("#param-do_sample input[type=checkbox]").uncheck()
        open_chat(page)
        send(page, "What is the capital of France? Answer in one sentence.")
        assert "Paris" in bot_texts(page)[-1]
        # the server goes away: the next Send says why, and its message comes back into the box, not into the
        # chat as a message with an empty reply (found by hand: a 0-token "reply" was saved)
        stop_server(peer)
        box = page.locator("#chat-input textarea")
        box.fill("Are you still there?")
        box.press("Enter")
        expect(page.locator(".toast-body")).to_contain_text("Cannot connect", timeout=30_000)
        expect(box).to_have_value("Are you still there?")
        assert len(bot_texts(page)) == 1
        (chat,) = saved_chats(ui)
        assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
        page.close()
    finally:
        stop_server(ui)
        stop_server(peer)


def test_long_chat_shows_the_newest_messages_and_edits_the_right_one(browser, tmp_path):
    """A 150-message chat opens with its newest 60 (bench/ui.py: the browser re-renders the whole box per update)."""

    from webui.chat.history import ChatStore, Message
    from webui.storage import write_yaml

    model_dir, user_dir = make_dirs(tmp_path)
    store = ChatStore(user_dir / "logs" / "chats")
    chat = store.new("Assistant")
    chat.messages = [Message("user" if i % 2 == 0 else "assistant", f"MSG-{i:04d}") for i in range(150)]
    store.save(chat)
    write_yaml(user_dir / "settings.yaml", {"chat_character": "Assistant", "chat_id": chat.id})
    srv = start_server(tmp_path, model_dir, user_dir)
    try:
        page = open_app(browser, srv.url)
        open_chat(page)
        wait_text(page, "#chat-box", "MSG-0149")
        wait_text(page, "#chat-box", "90 earlier messages")
        shown = page.locator("#chat-box").inner_text()
        assert "MSG-0090" in shown and "MSG-0089" not in shown
        # edit the first message shown (box row 1, after the 'earlier' line): chat message 90
        page.locator("#chat-box button[aria-label=Edit]").nth(1).click()
        page.locator("#chat-box textarea").first.fill("MSG-0090 edited")
        page.locator("#chat-box button[aria-label=Submit]").click()
        wait_text(page, "#chat-box", "MSG-0090 edited")
        saved = wait_until(
            lambda: [c for c in saved_chats(srv) if c["messages"][90]["content"] == "MSG-0090 edited"],
            "saving the edit",
        )[0]
        assert saved["messages"][89]["content"] == "MSG-0089" and len(saved["messages"]) == 150
        page.locator("#chat-show-all").click()
        wait_text(page, "#chat-box", "MSG-0000")
        assert "earlier messages" not in page.locator("#chat-box").inner_text()
        page.close()
    finally:
        stop_server(srv)


def test_a_bad_character_name_and_a_damaged_chat_file_say_so_in_a_pop_up(page, server):
    """Both used to do nothing at all on the page: their errors came from unqueued events, which Gradio drops."""
    open_chat(page)
    choose(page, "chat-character", "Assistant")  # (a test before may have left another character open)
    open_editor(page)
    page.locator("#char-file input, #char-file textarea").first.fill("../evil")
    page.locator("#char-name input, #char-name textarea").first.fill("Evil")
    page.locator("#char-save").click()
    wait_text(page, ".toast-body", "not allowed in file names")
    assert not (server.user_dir / "evil.yaml").exists()
    page.evaluate("() => document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())")

    folder = server.user_dir / "logs" / "chats" / "Assistant"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DAMAGED).write_text('{"id": "broken", "messages": [')
    choose(page, "chat-character", "Assistant")  # (the list of chats is read again)
    page.locator("#chat-list input").click()
    page.get_by_role("option", name="unreadable chat file 20200101-000000-bad000.json").click()
    wait_text(page, ".toast-body", "is damaged")
    assert (folder / "20200101-000000-bad000.json").read_text() == '{"id": "broken", "messages": ['


def test_a_download_that_cannot_be_written_says_so_and_the_next_one_works(page, server):
    """The download buttons ran unqueued too: a download folder that could not be written gave no file and no word."""
    open_chat(page)
    exports = server.user_dir / "logs" / "exports"
    shutil.rmtree(exports, ignore_errors=True)
    exports.parent.mkdir(parents=True, exist_ok=True)
    exports.write_text("a file where the folder should be")
    page.locator("#chat-download-json").click()
    wait_text(page, ".toast-body", "Could not write the download")
    exports.unlink()
    with page.expect_download() as info:
        page.locator("#chat-download-json").click()
    assert "messages" in json.loads(Path(info.value.path()).read_text(encoding="utf-8"))


def close_toasts(page) -> None:
    page.evaluate("() => document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())")


def test_changes_to_a_chat_while_a_reply_is_written_into_it_are_refused_or_kept(chat_page, server):
    """The reply's saves as it grows used to undo them: an edited message came back as it was, a deleted chat
    came back, a new title went back to the old one. Now an edit, Remove last, the version arrows and Delete
    say the reply is being written (nothing changes), and a new title is kept."""
    page = chat_page
    page.get_by_label("instruct", exact=True).check()  # (chat mode ends a reply at "You:", whatever the EOS)
    send(page, "Say hi.")
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").check()  # the reply runs on until it is stopped
    start_long_reply(page, "Write a very long story about a lighthouse keeper.", "1500", 40)
    folder = server.user_dir / "logs" / "chats" / "Assistant"
    chat_id = json.loads(max(folder.glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())["id"]

    # edit the first message
    first = page.locator("#chat-box [data-testid=user]").first
    first.hover()
    page.locator("#chat-box button[aria-label='Edit']").first.click()
    page.locator("#chat-box textarea").first.fill("Say hello, edited.")
    page.locator("#chat-box button[aria-label='Submit']").first.click()
    wait_text(page, ".toast-body", "A reply is being written into this chat")
    close_toasts(page)
    # Delete, and a new title
    page.locator("#chat-delete").click()
    page.locator("#chat-delete-confirm").click()
    wait_text(page, ".toast-body", "A reply is being written into this chat")
    close_toasts(page)
    page.locator("#chat-title input, #chat-title textarea").first.fill("Lighthouse")
    page.locator("#chat-rename").click()
    page.wait_for_function("() => document.querySelector('#chat-list input').value.startsWith('Lighthouse')")
    page.locator("#chat-remove").click()
    wait_text(page, ".toast-body", "A reply is being written into this chat")
    close_toasts(page)
    assert page.locator("#chat-input textarea").input_value() == ""  # Remove last put nothing back

    page.locator("#chat-stop").click()
    wait_for_complete_reply(page)
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").uncheck()
    open_chat(page)
    saved = json.loads((folder / f"{chat_id}.json").read_text())
    assert saved["title"] == "Lighthouse"
    assert [m["content"] for m in saved["messages"]][:3] == [
        "Say hi.",
        saved["messages"][1]["content"],
        "Write a very long story about a lighthouse keeper.",
    ]
    assert len(saved["messages"]) == 4 and "lighthouse" in bot_texts(page)[-1].lower()
    # once the reply has ended, the same edit is saved
    page.locator("#chat-box [data-testid=user]").first.hover()
    page.locator("#chat-box button[aria-label='Edit']").first.click()
    page.locator("#chat-box textarea").first.fill("Say hello, edited.")
    page.locator("#chat-box button[aria-label='Submit']").first.click()
    wait_until(
        lambda: json.loads((folder / f"{chat_id}.json").read_text())["messages"][0]["content"] == "Say hello, edited.",
        "saving the edit",
    )


def test_a_new_chat_opened_during_a_reply_stays_on_screen_and_the_reply_goes_on_in_its_own(chat_page, server):
    """New chat during a reply did nothing visible: the reply's next frame drew the old chat back, and the next
    message went into it. Now the new chat stays, and the reply goes on into its own chat, off screen."""
    page = chat_page
    page.get_by_label("instruct", exact=True).check()
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").check()
    start_long_reply(page, "Write a very long story about a lighthouse keeper.", "200", 20)
    page.locator("#chat-new").click()
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=user]').length === 0")
    page.wait_for_timeout(500)
    meter = page.locator("#chat-meter").inner_text()  # the new chat's prompt size
    page.wait_for_function(  # the reply ends, off screen
        "() => !document.querySelector('#chat-send').classList.contains('generating')", timeout=180_000
    )
    assert page.locator("#chat-box [data-testid=user]").count() == 0  # the new chat is still the one shown
    assert page.locator("#chat-meter").inner_text() == meter, "the story's prompt size was drawn under the new chat"
    open_parameters(page)
    page.locator("#param-ban_eos_token input[type=checkbox]").uncheck()
    set_number(page, "param-max_tokens", "20")
    open_chat(page)
    send(page, "Say hi.")
    chats = {c["messages"][0]["content"]: c for c in saved_chats(server) if c["messages"]}
    story = chats["Write a very long story about a lighthouse keeper."]
    assert len(story["messages"]) == 2 and story["messages"][1]["stats"]["tokens"] == 200  # written to its end
    assert [m["role"] for m in chats["Say hi."]["messages"]] == ["user", "assistant"]
