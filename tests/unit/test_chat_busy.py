"""A chat a reply is being written into: its saves as the reply grows used to undo whatever was changed meanwhile
(an edited message came back as it was, Remove last and the version arrows were undone, a deleted chat came
back, a new title went back to the old one). A change to its messages now waits for the reply or is refused;
a new title is kept, as a system prompt typed meanwhile already was."""

from __future__ import annotations

import threading
import time

import pytest
from test_chat_fake import ChatML, start

from webui.chat import history
from webui.chat.history import ChatStore, Message
from webui.chat.service import ChatService, edit_message
from webui.errors import ChatBusyError
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "BUSY_WAIT_SECONDS", 0.2)
    return ChatStore(tmp_path / "chats")


def saved_chat(store):
    chat = store.new("Bot")
    chat.messages = [Message("user", "Hi"), Message("assistant", "Hello")]
    store.save(chat)
    return chat


def test_an_edit_or_a_delete_during_a_reply_is_refused_and_changes_nothing(store):
    chat = saved_chat(store)
    other = store.load("Bot", chat.id)  # what another handler (an edit, a page) holds
    with store.writing(chat):
        edit_message(other, 0, "Hi (edited)")
        with pytest.raises(ChatBusyError) as refused:
            store.save_change(other)
        assert refused.value.key == "chat.busy_writing" and refused.value.status_code == 409
        with pytest.raises(ChatBusyError):
            store.delete("Bot", chat.id)
        chat.messages[1].set_text("Hello, how")
        store.save(chat)  # the reply's own saves go on
    assert [m.content for m in store.load("Bot", chat.id).messages] == ["Hi", "Hello, how"]
    # once the reply is written, the same change is saved
    store.save_change(other)
    assert store.load("Bot", chat.id).messages[0].content == "Hi (edited)"
    store.delete("Bot", chat.id)
    assert store.list("Bot") == []


def test_a_change_made_just_after_stop_waits_for_the_reply_to_end(store, monkeypatch):
    monkeypatch.setattr(history, "BUSY_WAIT_SECONDS", 2.0)
    chat = saved_chat(store)
    chat.messages[1].set_text("Hello, and welcome")
    ended = threading.Event()

    def reply() -> None:
        with store.writing(chat):
            time.sleep(0.05)  # the Stop reaching the model
            store.save(chat)
        ended.set()

    writer = threading.Thread(target=reply)
    writer.start()
    time.sleep(0.01)
    store.require_idle(store.path_of("Bot", chat.id))  # waits for the reply's last save
    assert ended.wait(1)
    other = store.load("Bot", chat.id)  # loaded after it, so the change keeps the whole reply
    edit_message(other, 0, "Hi (edited)")
    store.save_change(other)
    writer.join()
    assert [m.content for m in store.load("Bot", chat.id).messages] == ["Hi (edited)", chat.messages[1].content]


def test_a_title_given_during_a_reply_is_kept_by_the_replys_next_save(store):
    chat = saved_chat(store)
    with store.writing(chat):
        store.rename("Bot", chat.id, "Greetings")
        chat.messages[1].set_text("Hello there")
        store.save(chat)
    saved = store.load("Bot", chat.id)
    assert saved.title == "Greetings" and saved.messages[1].content == "Hello there"


def test_a_reply_being_written_holds_its_chat_until_its_last_save(tmp_path, loaders, monkeypatch):
    monkeypatch.setattr(history, "BUSY_WAIT_SECONDS", 0.05)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF")
    models = ModelManager(tmp_path / "models", LoadOptions(n_ctx=4000), loaders=loaders)
    models.load("m.gguf", "fake")
    chat_service = ChatService(Generator(models), ChatStore(tmp_path / "chats"), lambda loaded: (ChatML(), ""))
    store = chat_service.store
    chat = store.new("Bot")
    chunks = iter(start(chat_service, chat, "send", "Hello there", params=SamplingParams(max_tokens=5)))
    next(chunks)  # the reply has begun
    other = store.load("Bot", chat.id)
    with pytest.raises(ChatBusyError):
        store.save_change(other)
    # a second page's Send into the same chat (two tabs on one chat): refused before anything is saved
    second = store.load("Bot", chat.id)
    with pytest.raises(ChatBusyError):
        start(chat_service, second, "send", "Me too")
    assert [m.content for m in second.messages][:1] == ["Hello there"] and len(second.messages) <= 2
    list(chunks)  # the reply ends
    store.require_idle(store.path_of("Bot", chat.id))  # what a change does first: then it loads the chat
    fresh = store.load("Bot", chat.id)
    edit_message(fresh, 0, "Hello there (edited)")
    store.save_change(fresh)
    saved = store.load("Bot", chat.id)
    assert [m.content for m in saved.messages] == ["Hello there (edited)", chat.messages[1].content]
