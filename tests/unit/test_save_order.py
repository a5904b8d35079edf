"""Saves of one file keep the order their requests came in (``webui.storage.in_order``).

A page saves the chat's set-up and the Notebook on each keystroke and again when the box is left, and
Gradio runs those requests side by side. Once, in CI, a keystroke's save still writing when the box was
left landed after the blur's whole text: the system prompt on disk was "You are". These tests make the
first write slow, or let the newer request reach the file first, with real threads and real files.
The last one is the chat a reply is being written into: its saves must not put back the set-up the
message was sent with over one typed meanwhile.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import webui.storage as storage
from webui.chat.history import ChatStore, Message
from webui.services import Services
from webui.settings import Settings
from webui.storage import arrived, in_order, read_yaml

FULL = "You are a patient tutor. 你好"


@pytest.fixture
def first_write_held(monkeypatch):
    """The first write of a file waits until the test lets it go; the ``started`` event says it began."""
    started, go = threading.Event(), threading.Event()
    write = storage.atomic_write_bytes
    seen: set[str] = set()

    def held(path: Path, data: bytes) -> None:
        if str(path) not in seen:
            seen.add(str(path))
            started.set()
            assert go.wait(10)
        write(path, data)

    monkeypatch.setattr(storage, "atomic_write_bytes", held)
    return started, go


def run(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def system_prompt(path: Path) -> str:
    return read_yaml(path)["chat_setup"]["system_prompt"]


def test_a_newer_setting_waits_for_an_older_write_and_is_what_stays(user_dir, first_write_held):
    started, go = first_write_held
    services = Services.build(Settings(user_data_dir=user_dir))
    older = run(lambda: services.remember(chat_setup={"system_prompt": "You"}))
    assert started.wait(10)  # the keystroke's save is writing...
    newer = run(lambda: services.remember(chat_setup={"system_prompt": FULL}, preset="Chat"))  # ...when the box is left
    newer.join(0.3)
    assert newer.is_alive()  # one save of the file at a time
    go.set()
    older.join(10)
    newer.join(10)
    path = user_dir / "settings.yaml"
    assert system_prompt(path) == FULL and read_yaml(path)["preset"] == "Chat"
    assert services.settings.chat_setup["system_prompt"] == FULL


def test_an_older_request_reaching_the_file_last_does_not_overwrite_a_newer_value(user_dir):
    services = Services.build(Settings(user_data_dir=user_dir))
    entered, go = threading.Event(), threading.Event()

    def older() -> None:
        with arrived():  # its place in line is taken here, before the newer request's
            entered.set()
            assert go.wait(10)
            services.remember(chat_setup={"system_prompt": "You"}, preset="Creative")

    thread = run(older)
    assert entered.wait(10)
    with arrived():
        services.remember(chat_setup={"system_prompt": FULL})
    go.set()
    thread.join(10)
    data = read_yaml(user_dir / "settings.yaml")
    assert data["chat_setup"]["system_prompt"] == FULL
    assert services.settings.chat_setup["system_prompt"] == FULL
    assert data["preset"] == "Creative"  # a key no newer request wrote is still saved


def test_the_notebook_keeps_the_newest_text(user_dir, first_write_held):
    started, go = first_write_held
    services = Services.build(Settings(user_data_dir=user_dir))
    older = run(services.save_notebook, "Lab 3")
    assert started.wait(10)
    newer = run(services.save_notebook, "Lab 3 notes: top_p 0.9")
    newer.join(0.3)
    assert newer.is_alive()
    go.set()
    older.join(10)
    newer.join(10)
    assert services.load_notebook() == "Lab 3 notes: top_p 0.9"


def test_a_chat_keeps_the_newest_setup_and_its_messages(tmp_path):
    store = ChatStore(tmp_path / "chats")
    chat = store.new("Assistant")
    store.save(chat)
    entered, go = threading.Event(), threading.Event()

    def older() -> None:
        with arrived():
            entered.set()
            assert go.wait(10)
            store.keep_setup("Assistant", chat.id, {"system_prompt": "You"})

    thread = run(older)
    assert entered.wait(10)
    with arrived():
        store.keep_setup("Assistant", chat.id, {"system_prompt": FULL})
    reply = store.load("Assistant", chat.id)
    reply.messages.append(Message("user", "hello"))
    store.save(reply)
    go.set()
    thread.join(10)
    saved = store.load("Assistant", chat.id)
    assert saved.setup()["system_prompt"] == FULL
    assert [m.content for m in saved.messages] == ["hello"]


def test_a_failed_write_does_not_count_as_written(tmp_path):
    path = tmp_path / "f.txt"
    with pytest.raises(OSError), in_order(path, ["text"]) as fresh:
        assert fresh == {"text"}
        raise OSError("disk full")
    with in_order(path, ["text"]) as fresh:
        assert fresh == {"text"}


def test_a_chat_held_by_a_reply_keeps_the_settings_changed_meanwhile_and_its_own_changes(tmp_path):
    store = ChatStore(tmp_path / "chats")
    chat = store.new("Assistant")
    chat.apply_setup({"system_prompt": "Reply like a pirate."})
    store.save(chat)  # the turn's chat: saved with the message, and again as the reply grows
    chat.messages.append(Message("user", "Tell me a story."))
    store.save(chat)

    store.keep_setup("Assistant", chat.id, {"system_prompt": FULL})  # typed while the reply streams
    panel = store.load("Assistant", chat.id)  # the Tools panel, changed meanwhile too
    panel.tools = ["calculator"]
    store.save(panel, touch=False)

    chat.messages.append(Message("assistant", "Once upon a time"))
    chat.title = "A story"  # the turn's own change
    store.save(chat)
    saved = store.load("Assistant", chat.id)
    assert saved.system_prompt == FULL and saved.tools == ["calculator"]
    assert saved.title == "A story" and [m.content for m in saved.messages] == ["Tell me a story.", "Once upon a time"]
    assert chat.system_prompt == FULL  # the held chat has them too, for what the turn does next

    chat.apply_setup({"persona_name": "Ada"})  # a set-up the holder changes itself is its own, whole
    store.save(chat)
    assert store.load("Assistant", chat.id).setup() == chat.setup()
    assert chat.persona_name == "Ada" and chat.system_prompt == FULL
