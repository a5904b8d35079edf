"""Chat search over the SQLite FTS5 index derived from the chat files (webui/chat/search.py)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from webui.chat.history import Chat, ChatStore, Message
from webui.chat.search import ChatIndex


@pytest.fixture
def store(tmp_path: Path) -> ChatStore:
    return ChatStore(tmp_path / "chats")


@pytest.fixture
def index(store: ChatStore) -> ChatIndex:
    return ChatIndex(store.folder / ".index.sqlite", store)


def saved(store: ChatStore, title: str, *texts: str, character: str = "Bot") -> Chat:
    chat = store.new(character)
    chat.title = title
    chat.messages = [Message("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]
    store.save(chat)
    return chat


def found(index: ChatIndex, query: str, character: str = "Bot") -> list[str]:
    return [i.id for i in index.search(character, query)]


class CountingStore(ChatStore):
    """A store that counts the chat files it reads."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.loads = 0

    def load(self, character: str, chat_id: str) -> Chat:
        self.loads += 1
        return super().load(character, chat_id)


def test_finds_by_title_and_by_message_text_in_any_script(store, index):
    paris = saved(store, "Trip to France", "What is the capital of France?", "Paris.")
    russian = saved(store, "Столицы", "Какая столица России?", "Москва — столица России.")
    chinese = saved(store, "中文聊天", "中国的首都是哪里？", "北京是中国的首都。")
    assert found(index, "trip") == [paris.id]  # title, case-insensitive
    assert found(index, "CAPITAL of") == [paris.id]  # message text, substring with a space
    assert found(index, "москв") == [russian.id]  # Russian, case folded, a prefix
    assert found(index, "СТОЛИЦ") == [russian.id]  # title and text both match: listed once
    assert found(index, "首都") == [chinese.id]  # two characters: the short-query path
    assert found(index, "北京是") == [chinese.id]  # three: the trigram path
    assert found(index, "聊天") == [chinese.id]  # a title in Chinese
    assert found(index, "p") == [paris.id]  # one letter
    assert found(index, "nothing like this") == []
    assert set(found(index, "")) == {paris.id, russian.id, chinese.id}


def test_query_syntax_and_like_wildcards_are_plain_text(store, index):
    odd = saved(store, "Quotes", 'He said "AND" OR NOT *x* 100%_done')
    plain = saved(store, "Other", "100 done, nothing special")
    assert found(index, '"AND" OR') == [odd.id]
    assert found(index, "%_") == [odd.id]
    assert found(index, "%") == [odd.id]
    assert found(index, "*x*") == [odd.id]
    assert set(found(index, "100")) == {odd.id, plain.id}


def test_results_are_newest_first_like_the_store_lists_them(store, index):
    chats = [saved(store, f"Chat {n}", "hello there") for n in range(3)]
    assert found(index, "hello") == [c.id for c in reversed(chats)]
    assert [i.id for i in index.search("Bot")] == [i.id for i in store.list("Bot")]
    first = index.search("Bot", "chat 0")[0]
    assert (first.title, first.messages, first.unreadable) == ("Chat 0", 1, None)


def test_a_chat_edited_on_disk_is_found_by_its_new_text_only(store, index):
    chat = saved(store, "Pets", "I have a cat named Tom.")
    assert found(index, "named tom") == [chat.id]
    path = store.path_of("Bot", chat.id)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["messages"][0]["content"] = "I have a parrot called Kesha, who talks."
    path.write_text(json.dumps(data), encoding="utf-8")  # by hand: the store is not told
    assert found(index, "named tom") == []
    assert found(index, "kesha") == [chat.id]


def test_saves_renames_and_deletes_through_the_store_update_the_index_without_reading_files(tmp_path):
    store = CountingStore(tmp_path / "chats")
    index = ChatIndex(store.folder / ".index.sqlite", store)
    chat = saved(store, "Draft", "first words")
    assert found(index, "first") == [chat.id] and store.loads == 0  # indexed from the saved chat
    chat.messages.append(Message("assistant", "second thoughts"))
    store.save(chat)
    assert found(index, "second") == [chat.id] and store.loads == 0
    store.rename("Bot", chat.id, "Final version")
    assert found(index, "final") == [chat.id] and found(index, "draft") == []
    assert store.loads == 1  # rename reads the chat once itself; the index reads nothing
    store.delete("Bot", chat.id)
    assert found(index, "") == [] and found(index, "second") == []


def test_a_deleted_chat_file_disappears(store, index):
    keep = saved(store, "Keep", "alpha beta")
    gone = saved(store, "Gone", "alpha gamma")
    assert set(found(index, "alpha")) == {keep.id, gone.id}
    store.path_of("Bot", gone.id).unlink()  # removed by hand
    assert found(index, "alpha") == [keep.id]
    assert found(index, "") == [keep.id]


def test_a_removed_character_folder_empties_its_results(store, index):
    chat = saved(store, "Solo", "lonely words")
    assert found(index, "lonely") == [chat.id]
    store.path_of("Bot", chat.id).unlink()
    store.character_folder("Bot").rmdir()
    assert found(index, "") == []


def test_deleting_or_breaking_the_index_file_rebuilds_it(tmp_path):
    store = CountingStore(tmp_path / "chats")
    index = ChatIndex(store.folder / ".index.sqlite", store)
    chats = [saved(store, f"Note {n}", f"remember item {n}") for n in range(5)]
    assert len(found(index, "remember")) == 5 and store.loads == 0
    index.db_path.unlink()
    assert sorted(found(index, "remember item")) == sorted(c.id for c in chats)
    assert index.db_path.is_file() and store.loads == 5  # rebuilt from the files
    index.db_path.write_bytes(b"this is not a database" * 100)
    assert found(index, "item 3") == [chats[3].id]
    assert store.loads == 10
    assert found(index, "item 4") == [chats[4].id] and store.loads == 10  # and used again


def test_chats_are_searched_per_character(store, index):
    bot = saved(store, "Shared words", "same text")
    other = saved(store, "Shared words", "same text", character="Tutor")
    assert found(index, "same") == [bot.id]
    assert found(index, "same", "Tutor") == [other.id]


def test_a_broken_chat_file_is_skipped_by_search_and_listed_unreadable(store, index):
    good = saved(store, "Good", "hello world")
    folder = store.character_folder("Bot")
    (folder / "broken.json").write_text("{ not json", encoding="utf-8")
    (folder / "wrong.json").write_text('["a list, not a chat"]', encoding="utf-8")
    (folder / "notes.txt").write_text("hello world", encoding="utf-8")
    (folder / ".hidden.json").write_text('{"messages": []}', encoding="utf-8")
    assert found(index, "hello") == [good.id]
    assert found(index, "broken") == [] and found(index, "wrong") == []
    listed = index.search("Bot")
    assert [i.id for i in listed][0] == good.id and {i.id for i in listed[1:]} == {"broken", "wrong"}
    assert all(i.unreadable for i in listed[1:])
    assert {i.id: i.title for i in listed if i.unreadable}["broken"] == "⚠ unreadable chat file broken.json"
    # The same view as the store's own listing
    assert {(i.id, i.title, i.unreadable is None) for i in listed} == {
        (i.id, i.title, i.unreadable is None) for i in store.list("Bot")
    }
    # Repaired by hand: read again and found
    (folder / "broken.json").write_text(
        json.dumps({"title": "Fixed", "messages": [{"role": "user", "content": "hello again"}]}), encoding="utf-8"
    )
    assert set(found(index, "hello")) == {good.id, "broken"}


def test_a_bad_character_name_is_refused(index):
    from webui.errors import InvalidNameError

    with pytest.raises(InvalidNameError):
        index.search("../escape", "x")


def test_two_thousand_chats_are_read_once_then_searches_read_no_file(tmp_path, monkeypatch):
    store = CountingStore(tmp_path / "chats")
    folder = store.character_folder("Bot")
    folder.mkdir(parents=True)
    # Written straight to disk (as chats made before the index existed): the index must read them.
    for n in range(2000):
        chat = Chat(
            f"c{n:04d}",
            "Bot",
            title=f"Chat number {n}",
            messages=[Message("user", f"question {n} about topic{n % 7}"), Message("assistant", "answer")],
        )
        (folder / f"{chat.id}.json").write_text(json.dumps(chat.to_json()), encoding="utf-8")
    index = ChatIndex(store.folder / ".index.sqlite", store)
    assert len(found(index, "")) == 2000
    assert store.loads == 2000

    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):  # noqa: ANN001, ANN202 - a spy on builtins.open
        if str(file).endswith(".json"):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_read_text(self: Path, *args, **kwargs) -> str:  # noqa: ANN002, ANN003
        opened.append(str(self))
        return ""

    monkeypatch.setattr("builtins.open", counting_open)
    monkeypatch.setattr(Path, "read_text", counting_read_text)
    assert len(found(index, "topic3")) == len([n for n in range(2000) if n % 7 == 3])
    assert found(index, "number 1999") == ["c1999"]
    assert len(found(index, "an")) == 2000  # a short query too
    assert len(found(index, "")) == 2000
    assert store.loads == 2000 and opened == []

    # One chat changed on disk: only that one is read again.
    monkeypatch.undo()
    path = folder / "c0042.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["messages"][0]["content"] = "a completely new question here"
    path.write_text(json.dumps(data), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert found(index, "completely new") == ["c0042"]
    assert store.loads == 2001


def test_searches_from_many_threads_at_once(store, index):
    chats = [saved(store, f"Thread chat {n}", f"shared words {n}") for n in range(20)]
    errors: list[BaseException] = []
    results: list[int] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(len(found(index, "shared words")))
                saved(store, "More", "extra words")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and results == [len(chats)] * 20
    assert len(found(index, "extra")) == 20


def test_a_failing_index_never_fails_a_save(store, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the index folder should be")
    index = ChatIndex(blocked / ".index.sqlite", store)
    chat = saved(store, "Still saved", "words")  # the listener cannot open the index
    assert store.load("Bot", chat.id).title == "Still saved"
    assert "cannot be used" in caplog.text
    from webui.errors import ChatIndexError

    with pytest.raises(ChatIndexError):
        index.search("Bot", "words")


def test_the_chats_list_and_its_search_box_use_the_index(user_dir):
    from webui.services import Services
    from webui.settings import Settings
    from webui.ui.chat_history_panel import chat_choices

    services = Services.build(Settings(user_data_dir=user_dir))
    assert services.chat_index.db_path == user_dir / "logs" / "chats" / ".index.sqlite"
    older = saved(services.chats, "Weather talk", "Is it raining?", character="Assistant")
    newer = saved(services.chats, "Рецепты", "Как испечь хлеб?", character="Assistant")
    assert [v for _, v in chat_choices(services, "Assistant")] == [newer.id, older.id]
    assert [v for _, v in chat_choices(services, "Assistant", "ХЛЕБ")] == [newer.id]
    assert [v for _, v in chat_choices(services, "Assistant", "rain")] == [older.id]
    assert chat_choices(services, "Assistant", "rain")[0][0].startswith("Weather talk · ")
    assert services.chat_index.db_path.is_file()
